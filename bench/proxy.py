"""Proxy benchmark: `python -m bench.proxy --miners N`.

Runs the real proxy in a child process (so its RSS is its own), a minimal pool and N miners here,
all on loopback, and prints:
- connections held and the proxy's RSS;
- `mining.notify` fan-out: pool sends a job → the bytes are in each miner's socket (kernel receive
  timestamps; p50/p99 over N miners × rounds);
- shares validated per second (every share is a full scrypt in the proxy), against the raw
  scrypt rate of all the cores (one process per core hashing batches back to back with
  `mining.hashing.scrypt_many`, as the hashers do) measured in this run, and the CPU
  each share cost the proxy's loop, its hashers and this load generator;
- during a second such burst, how long a connected miner that is not mining waits for an answer
  (the loops stay responsive while the hashers are saturated);
- added latency of a forwarded share: miner sends → pool receives, minus one scrypt hash (p50/p99).

Miners beyond `--local` (the bench's own, which do the share phases) are bare sockets held by
`bench.crowd` processes, each from its own loopback source address, so that 100,000 fit in this
machine's file limit and ports; the proxy gets as many workers as its file limit needs.
"""

import argparse
import asyncio
import contextlib
import multiprocessing
import multiprocessing.sharedctypes
import os
import random
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import uvloop

from bench import crowd as crowd_module
from bench.report import print_results
from mining import stratum
from mining.hashing import scrypt_many, scrypt_pow
from mining.job import Job
from proxy.hashers import READ_HEADERS as RAW_BATCH

PREVHASH = bytes(range(32))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class BenchPool:
    """A pool that answers at once and timestamps what it receives (it verifies nothing, so it
    takes no CPU from the proxy)."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.seq = 0
        self.difficulty = 1e9
        self.arrivals: dict[str, float] = {}
        self.port = 0

    def job(self, clean: bool) -> bytes:
        self.seq += 1
        job = Job(f"b{self.seq}", PREVHASH, b"\x01" * 40, b"\x02" * 40, (b"\x03" * 32,) * 6, 0x20000000,
                  0x1E0FFFF0, 1_700_000_000 + self.seq, clean)
        return stratum.notify("mining.notify", job.notify_params())

    async def start(self) -> None:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    def broadcast(self, data: bytes) -> None:
        for writer in self.writers:
            writer.write(data)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        codec = stratum.StratumCodec(1 << 20)
        self.writers.append(writer)
        while data := await reader.read(65536):
            for event in codec.feed(data):
                if not isinstance(event, stratum.Request):
                    continue
                if event.method == "mining.subscribe":
                    result: object = [[], "aabbccdd", 4]
                elif event.method == "mining.submit":
                    self.arrivals[event.params[4]] = time.perf_counter()
                    result = True
                else:
                    result = True
                writer.write(stratum.encode(stratum.Response(event.id, result, None)))
                if event.method == "mining.authorize":
                    writer.write(stratum.notify("mining.set_difficulty", [self.difficulty]))
                    writer.write(self.job(clean=True))


class BenchMiner(asyncio.Protocol):
    def __init__(self, bench: "Bench") -> None:
        self.bench = bench
        self.codec = stratum.StratumCodec(1 << 20)
        self.transport: asyncio.Transport | None = None
        self.extranonce1 = b""
        self.notify_params: list[object] | None = None
        self.pending: dict[int, asyncio.Future[stratum.Response]] = {}
        self.next_id = 1
        self.notify_at: dict[str, float] = {}
        self.counting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        # Timestamp first and decode lazily: at 10,000 miners in one process, parsing every
        # notify here would make this load generator, not the proxy, the thing measured.
        now = time.perf_counter()
        if self.counting:
            self.bench.tally(data.count(b'"result":true'), data.count(b"\n"))
            return
        if b'"mining.notify"' not in data and not self.pending:
            return
        for event in self.codec.feed(data):
            if isinstance(event, stratum.Response):
                future = self.pending.pop(event.id, None)  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(event)
            elif isinstance(event, stratum.Notification) and event.method == "mining.notify":
                self.notify_params = event.params
                self.notify_at[event.params[0]] = now
                self.bench.notified(self)

    def call(self, method: str, params: list[object]) -> asyncio.Future[stratum.Response]:
        assert self.transport is not None
        future: asyncio.Future[stratum.Response] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        self.transport.write(stratum.encode(stratum.Request(self.next_id, method, params)))
        self.next_id += 1
        return future

    def share(self, nonce: int) -> list[object]:
        assert self.notify_params is not None
        job = Job.from_notify(self.notify_params)
        return ["bench", job.job_id, "0000", f"{job.ntime:08x}", f"{nonce:08x}"]


class Bench:
    def __init__(self, miners: int) -> None:
        self.count = miners
        self.miners: list[BenchMiner] = []
        self.waiting = 0
        self.all_notified = asyncio.Event()
        self.answers = 0
        self.accepted = 0
        self.expected = 0
        self.answered = asyncio.Event()

    def tally(self, accepted: int, answers: int) -> None:
        self.accepted += accepted
        self.answers += answers
        if self.answers >= self.expected:
            self.answered.set()

    def notified(self, miner: BenchMiner) -> None:
        if self.waiting > 0:
            self.waiting -= 1
            if self.waiting == 0:
                self.all_notified.set()


def _hash_for(seconds: float, done: "multiprocessing.sharedctypes.Synchronized[int]") -> None:
    # In batches of what a hasher takes per read, as the hashers do under load: several headers
    # side by side in SIMD lanes is the best these cores do.
    batch = os.urandom(80) * RAW_BATCH
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        scrypt_many(batch)
        count += RAW_BATCH
    done.value = count


async def _idle_miners(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Subscribed miners that will not mine (one per worker, placement alternating)."""
    idle = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(stratum.encode(stratum.Request(1, "mining.subscribe", ["probe/1.0"])))
        await reader.readline()
        idle.append((reader, writer))
    return idle


async def _round_trips_until(done: asyncio.Event,
                             idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> list[float]:
    """While the proxy validates a burst: every 20 ms each idle miner sends a request and the time
    to its answer is taken. An idle miner's input is never held for the hashers, so this is how
    long a busy loop makes a miner wait (a job, a handshake, a reply): the loop stays responsive
    while this stays small."""
    times: list[float] = []
    while not done.is_set():
        for reader, writer in idle:
            started = time.perf_counter()
            writer.write(stratum.encode(stratum.Request(2, "mining.extranonce.subscribe", [])))
            await reader.readline()
            times.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)
    return times


def raw_scrypt_rate(cores: int, seconds: float) -> float:
    """What the cores hash doing nothing else: one process per core, back to back (no GIL, no
    hand-offs), so the figure validation is held against is the best these cores can do."""
    spawn = multiprocessing.get_context("spawn")  # this process has an event loop and threads
    counts = [spawn.Value("q", 0) for _ in range(cores)]
    workers = [spawn.Process(target=_hash_for, args=(seconds, c)) for c in counts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(c.value for c in counts) / seconds


_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python names it only on some builds


def _socket_of(transport: asyncio.BaseTransport) -> socket.socket:
    """A socket object of our own for the transport's file descriptor (close it after use)."""
    return socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))


def _enable_rx_timestamps(transport: asyncio.BaseTransport) -> None:
    with _socket_of(transport) as sock:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)


def _kernel_arrival_ns(transport: asyncio.BaseTransport) -> int | None:
    """When the first unread bytes reached this socket, from the kernel; None when none have."""
    with _socket_of(transport) as sock:
        try:
            _, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack("qq", payload[:16])
            return seconds * 1_000_000_000 + nanoseconds
    raise RuntimeError("no receive timestamp: SO_TIMESTAMPNS is not supported here")


async def _kernel_arrivals(miners: "list[BenchMiner]") -> list[int]:
    arrivals: dict[int, int] = {}
    for _ in range(300):
        await asyncio.sleep(0.1)
        for index, miner in enumerate(miners):
            if index not in arrivals:
                stamp = _kernel_arrival_ns(miner.transport)
                if stamp is not None:
                    arrivals[index] = stamp
        if len(arrivals) == len(miners):
            return list(arrivals.values())
    raise TimeoutError(f"{len(miners) - len(arrivals)} miners never got the job")


def _fan_out_metric(port: int) -> tuple[float, float]:
    """(sum, count) of the proxy's own qscrypt_fanout_seconds: its loop writing a job to every miner."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith(("qscrypt_fanout_seconds_sum", "qscrypt_fanout_seconds_count")):
            name, value = line.split()
            values[name] = float(value)
    return values.get("qscrypt_fanout_seconds_sum", 0.0), values.get("qscrypt_fanout_seconds_count", 0.0)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the proxy's hasher processes, its workers and theirs)."""
    tree = [pid]
    for child in _children(pid):
        tree += process_tree(child)
    return tree


def rss_mib(pid: int) -> float:
    """Resident memory of the proxy and every process it started."""
    total = 0
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def pss_mib(pid: int) -> float | None:
    """Proportional memory of the proxy's tree: pages its processes share (the interpreter and
    modules forked or mapped by all) counted once in all; None where smaps_rollup is missing."""
    total = 0
    try:
        for member in process_tree(pid):
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    except OSError:
        return None
    return total / 1024


def machine_times() -> dict[str, float]:
    """Seconds all cores together spent idle, in interrupts and stolen by the hypervisor (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return {"idle": (fields[3] + fields[4]) / tick, "irq": (fields[5] + fields[6]) / tick,
            "steal": fields[7] / tick}


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of one process so far: each involuntary one is a
    hasher or loop preempted, its caches refilled when it comes back."""
    counts = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.endswith("ctxt_switches") or "ctxt_switches:" in line:
            name, value = line.split(":")
            counts[name] = int(value)
    return counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]


def _is_hasher(pid: int) -> bool:
    return b"proxy.hashers" in Path(f"/proc/{pid}/cmdline").read_bytes()


PROXY_CONFIG = """
[logging]
level = "warning"
format = "json"
[proxy]
metrics_port = {metrics_port}
workers = {workers}
hash_processes = {hash_processes}
[proxy.listen]
host = "127.0.0.1"
port = {port}
[proxy.limits]
max_connections = 200000
max_connections_per_ip = 200000
connect_burst_per_ip = 200000
connects_per_ip_per_s = 100000.0
messages_per_second = 100000.0
message_burst = 100000
handshake_timeout_s = 600.0
ban_min_shares = 1000000000
[proxy.vardiff]
initial = 0.000001
minimum = 0.000000001
[[proxy.upstreams]]
name = "bench-pool"
url = "stratum+tcp://127.0.0.1:{pool_port}"
user = "bench"
"""


_FILES_SPARE = 1000
"""Descriptors a process keeps for everything but miners (pipes, hashers, listeners, logs)."""


def _raise_file_limit() -> int:
    """Soft file limit up to the hard one (raising the hard one needs privileges)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Crowds:
    """The `bench.crowd` processes and their pipes."""

    def __init__(self, port: int, miners: int, per_process: int, burst: int, first_source: int = 0) -> None:
        spawn = multiprocessing.get_context("spawn")
        count = -(-miners // per_process) if miners else 0
        self.pipes: list[Connection] = []
        self.processes = []
        self.sizes: list[int] = []
        for index in range(count):
            size = min(per_process, miners - index * per_process)
            ours, theirs = spawn.Pipe()
            # 127.0.0.2 up: ~28,000 ports each to one destination; this process uses 127.0.0.1.
            source = 2 + first_source + index
            sources = [f"127.0.{source // 250}.{source % 250}"]
            process = spawn.Process(target=crowd_module.serve, daemon=True,
                                    args=(theirs, port, sources, size, max(10, burst // count),
                                          index * per_process))
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)
            self.sizes.append(size)

    async def ask(self, *command: object) -> list[object]:
        for pipe in self.pipes:
            pipe.send(command)
        return [await asyncio.to_thread(pipe.recv) for pipe in self.pipes]

    async def stamps(self, seconds: float) -> list[int]:
        for pipe in self.pipes:
            pipe.send(("stamps", seconds))
        stamps: list[int] = []
        for pipe in self.pipes:
            data = await asyncio.to_thread(pipe.recv_bytes)
            stamps += struct.unpack(f"{len(data) // 8}q", data)
        return stamps

    def cpu_pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ask("close")
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()


async def _probe_while(idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], stop: asyncio.Event,
                       interval: float) -> list[tuple[int, float]]:
    """(wall-clock ns sent, seconds to the answer) of requests sent by idle miners, one after the
    other, every `interval`, until `stop`; a job line arriving first is skipped."""
    samples: list[tuple[int, float]] = []
    while not stop.is_set():
        for reader, writer in idle:
            sent_ns = time.time_ns()
            started = time.perf_counter()
            writer.write(stratum.encode(stratum.Request(2, "mining.extranonce.subscribe", [])))
            while b'"result"' not in await reader.readline():
                pass
            samples.append((sent_ns, time.perf_counter() - started))
        await asyncio.sleep(interval)
    return samples


async def run(args: argparse.Namespace) -> dict[str, object]:
    hard = _raise_file_limit()
    cores = os.cpu_count() or 1
    results: dict[str, object] = {"miners": args.miners, "cores": cores, "file_limit": hard}
    per_process = hard - _FILES_SPARE
    if per_process < 1000:
        raise SystemExit(f"the hard file limit ({hard}) is too low for this bench: raise it (ulimit -Hn)")
    local = min(args.miners, args.local)
    if local > per_process:
        raise SystemExit(f"--local {local} is more than one process may hold here ({per_process})")
    needed_workers = -(-args.miners // per_process)
    if args.workers < needed_workers:
        print(f"bench.proxy: the hard file limit ({hard}) holds {per_process} miners a process: "
              f"{needed_workers} proxy workers, not {args.workers}", file=sys.stderr)
        args.workers = needed_workers
    results["workers"] = args.workers

    raw = await asyncio.to_thread(raw_scrypt_rate, cores, 3.0)
    results["raw_scrypt_hs"] = round(raw)

    pool = BenchPool()
    await pool.start()
    proxy_port = args.port or _free_port_pair()
    config_path = Path(args.workdir) / "bench-proxy.toml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_port = proxy_port + 1
    config_path.write_text(PROXY_CONFIG.format(port=proxy_port, pool_port=pool.port,
                                               metrics_port=metrics_port, workers=args.workers,
                                               hash_processes=args.hash_processes))
    child = _spawn_proxy(config_path, Path(args.workdir) / "bench-proxy.log", hard)
    try:
        await _wait_port(proxy_port, child)
        for _ in range(600):  # every worker has its own upstream session
            if len(pool.writers) >= args.workers:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the upstream handshake
        bench = Bench(local)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        for start in range(0, local, 500):
            batch = []
            for _ in range(min(500, local - start)):
                batch.append(loop.create_connection(lambda: BenchMiner(bench), "127.0.0.1", proxy_port))
            for transport, miner in await asyncio.gather(*batch):
                miner.transport = transport  # uvloop may run connection_made after this returns
                bench.miners.append(miner)
            handshakes = []
            for miner in bench.miners[start:]:
                handshakes.append(miner.call("mining.subscribe", ["bench/1.0"]))
            for miner, response in zip(bench.miners[start:], await asyncio.gather(*handshakes), strict=True):
                miner.extranonce1 = bytes.fromhex(response.result[1])
            await asyncio.gather(*(m.call("mining.authorize", ["bench", "d=0.000001"])
                                   for m in bench.miners[start:]))
        crowds = Crowds(proxy_port, args.miners - local, per_process, args.burst)
        connected: list[tuple[int, int]] = await crowds.ask("connect")  # type: ignore[assignment]
        held_crowd = sum(held for held, _ in connected)
        results["crowd_connect_failures"] = sum(failed for _, failed in connected)
        results["crowd_processes"] = len(crowds.pipes)
        results["connect_s"] = round(time.perf_counter() - started, 2)
        await asyncio.sleep(1.0)
        held_local = sum(1 for m in bench.miners if m.transport is not None and not m.transport.is_closing())
        results["connections_held"] = held_crowd + held_local
        results["proxy_rss_mib"] = round(rss_mib(child.pid), 1)
        pss = pss_mib(child.pid)
        results["proxy_pss_mib"] = None if pss is None else round(pss, 1)
        results["proxy_processes"] = len(process_tree(child.pid))
        results["proxy_bytes_per_miner_rss"] = round(rss_mib(child.pid) * 1048576 / max(1, args.miners))

        # fan-out: repeat a few times, one sample per miner per round. Miners stop reading while
        # the job goes out, and each arrival is the kernel's receive timestamp (SO_TIMESTAMPNS),
        # read afterwards with MSG_PEEK: on a real farm the miners are other machines, so the time
        # this process would take to read 10,000 sockets on the proxy's own two cores is not the
        # proxy's fan-out.
        # The crowds' miners likewise read nothing until every one has the job (bench.crowd).
        # Meanwhile one idle miner per worker sends a request every few ms: the wait for its
        # answer while a job goes out is how long the fan-out holds up everything else.
        for miner in bench.miners:
            _enable_rx_timestamps(miner.transport)
        fanout: list[float] = []
        rounds_all: list[float] = []
        spreads: list[float] = []
        probes: list[float] = []
        missing = 0
        idle = await _idle_miners(proxy_port, args.workers)
        client_pids = [os.getpid(), *crowds.cpu_pids()]
        client_cpu_before = sum(cpu_seconds(p) for p in client_pids)
        fan_started = time.perf_counter()
        for _ in range(args.rounds):
            await crowds.ask("drain")
            for miner in bench.miners:
                miner.transport.pause_reading()
            bench.waiting = len(bench.miners)
            bench.all_notified.clear()
            data = pool.job(clean=True)
            stop = asyncio.Event()
            prober = asyncio.ensure_future(_probe_while(idle, stop, args.probe_interval))
            await asyncio.sleep(0.05)  # probes before the job too: the window starts at the send
            sent_ns = time.time_ns()
            pool.broadcast(data)
            crowd_stamps, local_stamps = await asyncio.gather(crowds.stamps(60.0),
                                                              _kernel_arrivals(bench.miners))
            stop.set()
            samples = await prober
            arrivals = [ns for ns in (*crowd_stamps, *local_stamps) if ns]
            missing += len(crowd_stamps) + len(local_stamps) - len(arrivals)
            times = [(ns - sent_ns) / 1e9 for ns in arrivals]
            fanout += times
            rounds_all.append(max(times))
            spreads.append((max(arrivals) - min(arrivals)) / 1e9)
            last = max(arrivals)
            probes += [seconds for at, seconds in samples if sent_ns <= at <= last]
            for miner in bench.miners:
                miner.transport.resume_reading()
            await asyncio.wait_for(bench.all_notified.wait(), 30)
            await asyncio.sleep(0.3)
        fan_elapsed = time.perf_counter() - fan_started
        for _, writer in idle:
            writer.close()
        results["fanout_missing"] = missing
        results["fanout_ms_p50"] = round(1000 * statistics.median(fanout), 2)
        results["fanout_ms_p99"] = round(1000 * _percentile(fanout, 0.99), 2)
        results["fanout_ms_all_median_round"] = round(1000 * statistics.median(rounds_all), 2)
        results["fanout_first_to_last_ms_median"] = round(1000 * statistics.median(spreads), 2)
        results["fanout_first_to_last_ms_max"] = round(1000 * max(spreads), 2)
        results["idle_during_fanout_requests"] = len(probes)
        if probes:
            results["idle_during_fanout_ms_p50"] = round(1000 * statistics.median(probes), 2)
            results["idle_during_fanout_ms_p99"] = round(1000 * _percentile(probes, 0.99), 2)
            results["idle_during_fanout_ms_max"] = round(1000 * max(probes), 2)
        client_cpu = sum(cpu_seconds(p) for p in client_pids) - client_cpu_before
        results["client_cpu_pct_of_one_core_during_fanout"] = round(100 * client_cpu / fan_elapsed, 1)
        total, count = await asyncio.to_thread(_fan_out_metric, metrics_port)
        results["proxy_write_all_ms_mean"] = round(1000 * total / max(count, 1), 2)

        # validation throughput: many miners submit at once; every share costs the proxy a scrypt.
        # Lines are built before the clock starts and answers are counted, not parsed, so the
        # load generator spends as little as possible of the two cores the proxy also needs.
        # At most 128 shares pipelined per miner: the proxy closes a miner with 256 in flight.
        senders = bench.miners[: min(len(bench.miners), max(200, -(-args.shares // 128)))]
        per_miner = max(1, args.shares // len(senders))
        lines = {m: b"".join(stratum.encode(stratum.Request(10_000 + i, "mining.submit", m.share(i)))
                             for i in range(per_miner)) for m in senders}
        bench.answers = 0
        bench.expected = per_miner * len(senders)
        bench.answered.clear()
        tree = process_tree(child.pid)
        cpu_before = {member: cpu_seconds(member) for member in [*tree, os.getpid()]}
        switches_before = {member: context_switches(member) for member in tree}
        times_before = machine_times()
        started = time.perf_counter()
        for miner, data in lines.items():
            miner.counting = True
            miner.transport.write(data)
        await asyncio.wait_for(bench.answered.wait(), 120)
        elapsed = time.perf_counter() - started
        cpu_used = {member: cpu_seconds(member) - before for member, before in cpu_before.items()}
        switches = {member: [b - a for a, b in zip(before, context_switches(member), strict=True)]
                    for member, before in switches_before.items()}
        for name, seconds in machine_times().items():
            results[f"cores_{name}_pct"] = round(100 * (seconds - times_before[name]) / (elapsed * cores), 1)
        per_share = 1e6 / bench.expected
        hashers = [m for m in tree if _is_hasher(m)]
        loops = [m for m in tree if m not in hashers]
        results["cpu_us_per_share_proxy_loops"] = round(sum(cpu_used[m] for m in loops) * per_share, 1)
        results["cpu_us_per_share_hashers"] = round(sum(cpu_used[m] for m in hashers) * per_share, 1)
        results["cpu_us_per_share_load_generator"] = round(cpu_used[os.getpid()] * per_share, 1)
        for group, members in (("loops", loops), ("hashers", hashers)):
            for index, kind in enumerate(("voluntary", "preempted")):
                count = sum(switches[m][index] for m in members)
                results[f"switches_per_s_{group}_{kind}"] = round(count / elapsed)
        results["shares_validated"] = bench.expected
        results["shares_accepted"] = bench.accepted
        results["validated_per_s"] = round(bench.expected / elapsed)
        results["validated_per_s_per_core"] = round(bench.expected / elapsed / cores)
        # Other processes on this machine come and go: take the better raw figure of two.
        raw = max(raw, await asyncio.to_thread(raw_scrypt_rate, cores, 3.0))
        results["raw_scrypt_hs"] = round(raw)
        results["validation_vs_raw_scrypt"] = round(bench.expected / elapsed / raw, 3)

        # responsiveness: a second burst like the first, not timed (the probes cost this process
        # CPU that the proxy would otherwise have), while idle miners send requests.
        idle = await _idle_miners(proxy_port, args.workers)
        again = max(1, per_miner // 2)
        bench.answers = 0
        bench.expected = again * len(senders)
        bench.answered.clear()
        for miner in senders:
            miner.transport.write(b"".join(
                stratum.encode(stratum.Request(10_000 + i, "mining.submit", miner.share(i)))
                for i in range(per_miner, per_miner + again)))
        round_trips = await _round_trips_until(bench.answered, idle)
        for _, writer in idle:
            writer.close()
        results["idle_miner_requests"] = len(round_trips)
        results["idle_miner_reply_ms_p50"] = round(1000 * statistics.median(round_trips), 2)
        results["idle_miner_reply_ms_p99"] = round(1000 * _percentile(round_trips, 0.99), 2)
        results["idle_miner_reply_ms_max"] = round(1000 * max(round_trips), 2)
        for miner in senders:
            miner.counting = False

        # forwarded-share latency: make every share meet the pool target, one at a time
        pool.difficulty = 1e-9
        pool.broadcast(stratum.notify("mining.set_difficulty", [pool.difficulty]))
        bench.waiting = len(bench.miners)
        bench.all_notified.clear()
        pool.broadcast(pool.job(clean=True))
        await asyncio.wait_for(bench.all_notified.wait(), 30)
        single = []
        for _ in range(50):
            header = os.urandom(80)
            t = time.perf_counter()
            scrypt_pow(header)
            single.append(time.perf_counter() - t)
        hash_s = statistics.median(single)
        added: list[float] = []
        miner = bench.miners[0]
        for nonce in range(1000, 1000 + args.forwarded):
            params = miner.share(nonce)
            sent = time.perf_counter()
            await miner.call("mining.submit", params)
            for _ in range(200):
                if params[4] in pool.arrivals:
                    break
                await asyncio.sleep(0.001)
            added.append(pool.arrivals[params[4]] - sent - hash_s)
        results["scrypt_hash_ms"] = round(1000 * hash_s, 3)
        results["forward_added_ms_p50"] = round(1000 * statistics.median(added), 2)
        results["forward_added_ms_p99"] = round(1000 * _percentile(added, 0.99), 2)
        results["proxy_rss_mib_end"] = round(rss_mib(child.pid), 1)
        for m in bench.miners:
            m.transport.close()
        await crowds.close()
    finally:
        child.terminate()
        child.wait(10)
    return results


def _spawn_proxy(config_path: Path, log_path: Path, max_files: int) -> subprocess.Popen[bytes]:
    """The proxy as `qscrypt proxy` runs it, in its own process, its log kept in `log_path`."""
    with log_path.open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "-c", str(config_path), "proxy", "--no-database"],
            stdout=subprocess.DEVNULL, stderr=log,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files)),
        )


def _free_port_pair() -> int:
    """A port P with P + 1 (the metrics port) free too, just now, below the ephemeral range: the
    bench's own 100,000 connections take ephemeral ports, and one of them could take P + 1
    between this check and the proxy's bind."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low - 1)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two adjacent free ports")


async def _wait_port(port: int, child: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if child.poll() is not None:
            raise RuntimeError(f"the proxy exited ({child.returncode}): see its log in --workdir")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"proxy did not listen on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="fan-out rounds")
    parser.add_argument("--shares", type=int, default=4000, help="shares for the throughput phase")
    parser.add_argument("--forwarded", type=int, default=200, help="shares for the latency phase")
    parser.add_argument("--port", type=int, default=33333,
                        help="the proxy's port (0: a free one); its metrics on the next")
    parser.add_argument("--workers", type=int, default=1, help="proxy event-loop processes (proxy.workers)")
    parser.add_argument("--hash-processes", type=int, default=0,
                        help="hasher processes per worker (proxy.hash_processes; 0: one per core)")
    parser.add_argument("--workdir", default="var/bench")
    parser.add_argument("--local", type=int, default=1000,
                        help="miners held by this process (the share phases use them); the rest: bench.crowd")
    parser.add_argument("--burst", type=int, default=1000,
                        help="crowd connections being opened at once, all crowds together")
    parser.add_argument("--probe-interval", type=float, default=0.005,
                        help="seconds between an idle miner's requests during the fan-out")
    args = parser.parse_args()
    results = uvloop.run(run(args))
    print_results(results)


if __name__ == "__main__":
    main()

"""PROXY protocol cost: `python -m bench.proxy_protocol --connections 3000`.

Runs the real proxy (`qscrypt proxy`, one process, on uvloop) in a child process against a minimal
pool, once as a plain listener and once with `proxy_protocol_from` set (it then accepts by itself
and reads each header off the socket before handing it to the loop), alternating, and prints per
run:
- new connections per second that get their `mining.subscribe` answered (`--concurrency` open at
  once: connect, [PROXY v2 header,] subscribe, answer, close), and p50/p99 of that round trip;
- the header parser alone, µs per v1 and per v2 header (`proxy.proxy_protocol.HeaderParser`).
With PROXY protocol on, every connection's header names another address (198.18.x.y), as behind a
balancer; the connect-rate limits are lifted in both so that no run is throttled.
"""

import argparse
import asyncio
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import uvloop

from bench.proxy import BenchPool
from bench.report import print_results
from mining import stratum
from proxy.proxy_protocol import V2_SIGNATURE, HeaderParser

SUBSCRIBE = stratum.encode(stratum.Request(1, "mining.subscribe", ["bench/1.0"]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _v2_header(n: int, port: int) -> bytes:
    src = bytes([198, 18, (n >> 8) & 0xFF, n & 0xFF])
    body = src + bytes([127, 0, 0, 1]) + struct.pack(">HH", 10000 + n % 50000, port)
    return V2_SIGNATURE + b"\x21\x11" + struct.pack(">H", len(body)) + body


def parser_us(rounds: int = 20000) -> dict[str, float]:
    v1 = b"PROXY TCP4 198.18.3.4 127.0.0.1 51234 3333\r\n" + SUBSCRIBE
    v2 = _v2_header(1234, 3333) + SUBSCRIBE
    figures = {}
    for name, data in (("v1", v1), ("v2", v2)):
        began = time.perf_counter()
        for _ in range(rounds):
            HeaderParser().feed(data)
        figures[f"parse_{name}_us"] = round((time.perf_counter() - began) / rounds * 1e6, 2)
    return figures


def _config(workdir: Path, pool_port: int, port: int, proxied: bool) -> Path:
    path = workdir / f"bench-{'proxied' if proxied else 'plain'}.toml"
    path.write_text(f"""
[logging]
level = "warning"
[proxy]
hash_processes = 1
metrics_port = 0
spill_dir = "{workdir / 'spill'}"
[proxy.listen]
host = "127.0.0.1"
port = {port}
{'proxy_protocol_from = ["127.0.0.1"]' if proxied else ''}
[proxy.limits]
max_connections_per_ip = 1000000
connects_per_ip_per_s = 1000000.0
connect_burst_per_ip = 1000000
[[proxy.upstreams]]
name = "bench"
url = "stratum+tcp://127.0.0.1:{pool_port}"
user = "bench"
""")
    return path


async def _one(port: int, header: bytes) -> float:
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(header + SUBSCRIBE)
    line = await reader.readline()
    elapsed = time.perf_counter() - began
    writer.close()
    if b'"result"' not in line:
        raise RuntimeError(f"no subscribe answer: {line[:200]!r}")
    return elapsed


async def _load(port: int, connections: int, concurrency: int, proxied: bool) -> dict[str, float]:
    latencies: list[float] = []
    next_n = 0

    async def client() -> None:
        nonlocal next_n
        while next_n < connections:
            n = next_n
            next_n += 1
            latencies.append(await _one(port, _v2_header(n, port) if proxied else b""))

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {"connections_per_s": round(connections / elapsed),
            "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2)}


def _spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, "-m", "cli", "-c", str(config), "proxy", "--no-database"],
                                stdout=out, stderr=subprocess.STDOUT)


async def _run_one(workdir: Path, pool: BenchPool, proxied: bool, connections: int,
                   concurrency: int) -> dict[str, float]:
    port = _free_port()
    config = _config(workdir, pool.port, port, proxied)
    log = workdir / f"proxy-{'proxied' if proxied else 'plain'}.log"
    process = _spawn(config, log)
    try:
        deadline = time.monotonic() + 60
        while True:  # listening, with upstream work (a subscribe is answered)
            try:
                await _one(port, _v2_header(0, port) if proxied else b"")
                break
            except (OSError, RuntimeError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the proxy did not start: see {log}") from None
                await asyncio.sleep(0.2)
        return await _load(port, connections, concurrency, proxied)
    finally:
        process.terminate()
        process.wait(30)


async def run(args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pool = BenchPool()
    await pool.start()
    results: dict[str, list[dict[str, float]]] = {"plain": [], "proxy_v2": []}
    for _ in range(args.runs):
        results["plain"].append(await _run_one(workdir, pool, False, args.connections, args.concurrency))
        results["proxy_v2"].append(await _run_one(workdir, pool, True, args.connections, args.concurrency))
    summary: dict[str, object] = {}
    for name, runs in results.items():
        for key in runs[0]:
            values = [r[key] for r in runs]
            summary[f"{name}_{key}"] = f"{statistics.median(values)} ({min(values)}–{max(values)})"
    summary.update(parser_us())
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--workdir", default="var/bench")
    args = parser.parse_args()
    results = uvloop.run(run(args))
    print_results(results)


if __name__ == "__main__":
    main()

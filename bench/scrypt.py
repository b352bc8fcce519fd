"""Scrypt hashrate of every hasher on this machine, beside cpuminer's:
`python -m bench.scrypt [--seconds S] [--repeats R] [--cpuminer-seconds C]`.

Correctness first: every hasher must reproduce the real vectors (and every engine find each
vector's nonce) before any figure is printed. Then R rounds; each round runs every hasher once for S
seconds, one after the other, and cpuminer's `--benchmark` (built from ../shared/peers, cached in
~/.cache/qscrypt-peers) for C seconds on 1 thread and on every core, so load from other programs
falls on all alike; each figure is the median of its R runs. "kH/s per core" divides by the cores
the hasher used; "kH/CPU-s" divides by the CPU time it spent, which stays honest when other
programs share the machine.

Our scrypt (mining/_scrypt.c) is measured per implementation this CPU runs (scalar, AVX2,
AVX-512), hashing batches of 48 headers as the CPU engine does (the proxy's hashers take up to 64),
on 1 thread and on one thread per core (it releases the GIL).
"""

import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import scrypt as scrypt_package

from backends.cpu import CpuEngine, available_cores
from backends.engine import CancelToken, Engine, SearchWork, timed_search
from backends.opencl import OpenClEngine, OpenClUnavailable
from mining.hashing import hash_to_int, scrypt_impls, scrypt_many, scrypt_pow

SHARED = Path(__file__).resolve().parents[2] / "shared"
VECTORS = SHARED / "vectors" / "scrypt_headers.json"
BUILD_CPUMINER = SHARED / "peers" / "build-cpuminer.sh"
BATCH = 48


@dataclass(slots=True)
class Figure:
    name: str
    cores: int
    measure: Callable[[], tuple[float, float]]  # one run: (H/s, H per CPU-second)
    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu_rate(self) -> float:
        return statistics.median(self.cpu_rates)

    def row(self) -> str:
        runs = " ".join(f"{rate / 1000:.2f}" for rate in self.rates)
        per_core = self.rate / self.cores
        return (f"{self.name:<44} {self.cores:>5} {self.rate / 1000:>9.2f} {per_core / 1000:>9.2f} "
                f"{self.cpu_rate / 1000:>9.2f}   {runs}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_seconds() -> float:
    return time.process_time()


def _timed(run: Callable[[], int]) -> Callable[[], tuple[float, float]]:
    def measure() -> tuple[float, float]:
        cpu, wall = _cpu_seconds(), time.perf_counter()
        hashes = run()
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        return hashes / wall, hashes / cpu if cpu > 0 else 0.0

    return measure


def _threads(hash_batch: Callable[[bytes], object], per_call: int, threads: int,
             seconds: float) -> Callable[[], int]:
    """`threads` threads each hashing batches of `per_call` headers (nonces counting up) for `seconds`."""

    def one(counts: list[int], index: int) -> None:
        prefix = os.urandom(76)
        nonce = 0
        done = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            hash_batch(b"".join(prefix + struct.pack("<I", nonce + i) for i in range(per_call)))
            nonce += per_call
            done += per_call
        counts[index] = done

    def run() -> int:
        counts = [0] * threads
        workers = [threading.Thread(target=one, args=(counts, i)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return sum(counts)

    return run


def _engine_run(engine: Engine, seconds: float) -> Callable[[], int]:
    def run() -> int:
        return timed_search(engine, seconds, os.urandom(76)).hashes_done

    return run


def _hashlib_scrypt(header: bytes) -> bytes:
    return hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32)


def _package_scrypt(header: bytes) -> bytes:
    return scrypt_package.hash(header, header, 1024, 1, 1, 32)


def _ours(impl: str) -> Callable[[bytes], object]:
    def hash_batch(headers: bytes) -> bytes:
        return scrypt_many(headers, impl=impl)

    return hash_batch


def find_cpuminer() -> tuple[str | None, str]:
    """(path of minerd, "") or (None, why not)."""
    if not BUILD_CPUMINER.exists():
        return None, f"{BUILD_CPUMINER} not found"
    try:
        built = subprocess.run(["bash", str(BUILD_CPUMINER)], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return None, "building it took over 15 minutes"
    lines = built.stdout.strip().splitlines()
    if built.returncode != 0 or not lines or not os.access(lines[-1], os.X_OK):
        return None, f"build failed: {(built.stderr or built.stdout).strip()[-300:]}"
    return lines[-1], ""


_REPORT = re.compile(r"thread \d+: (\d+) hashes")
_TOTAL = re.compile(r"Total: ([0-9.]+) khash/s")


def _process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a running process (Linux /proc), None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpuminer(minerd: str, threads: int, seconds: float) -> Callable[[], tuple[float, float]]:
    """One `minerd --benchmark` run: the mean of its "Total:" lines, and the hashes it reported per
    CPU-second of it, both counted from its first "Total:" line on (the first report covers only
    start-up: its first few thousand hashes). Its CPU time is read as each report arrives, so the
    unreported hashes of its last seconds do not count against it."""

    def measure() -> tuple[float, float]:
        process = subprocess.Popen([minerd, "-a", "scrypt", "--benchmark", "-t", str(threads)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        timer = threading.Timer(seconds, process.terminate)
        timer.start()
        totals: list[float] = []
        hashes = 0
        cpu_first: float | None = None
        cpu_last: float | None = None
        tail: list[str] = []
        assert process.stdout is not None
        for line in process.stdout:
            tail = [*tail[-5:], line]
            if (report := _REPORT.search(line)) and totals:
                hashes += int(report.group(1))
            elif total := _TOTAL.search(line):
                totals.append(float(total.group(1)))
                cpu = _process_cpu_seconds(process.pid)
                if len(totals) == 1:
                    cpu_first = cpu
                else:
                    cpu_last = cpu
        process.wait()
        timer.cancel()
        if len(totals) < 2:
            raise RuntimeError(f"cpuminer gave fewer than two 'Total:' lines: {''.join(tail)!r}")
        cpu_rate = 0.0
        if cpu_first is not None and cpu_last is not None and cpu_last > cpu_first:
            cpu_rate = hashes / (cpu_last - cpu_first)
        return 1000 * statistics.mean(totals[1:]), cpu_rate

    return measure


def check_vectors(engines: list[Engine]) -> list[str]:
    """Problems found; empty when every hasher reproduces every vector."""
    problems = []
    vectors = json.loads(VECTORS.read_text())["vectors"]
    for vector in vectors:
        header = bytes.fromhex(vector["header"])
        label = vector.get("name", vector["header"][:16])
        if _hashlib_scrypt(header)[::-1].hex() != vector["scrypt"]:
            problems.append(f"hashlib.scrypt disagrees on {label}")
        if _package_scrypt(header)[::-1].hex() != vector["scrypt"]:
            problems.append(f"scrypt package disagrees on {label}")
        nonce = struct.unpack("<I", header[76:])[0]
        work = SearchWork(header[:76], max(0, nonce - 20), 64, hash_to_int(scrypt_pow(header)))
        for engine in engines:
            if engine.search(work, CancelToken()).found != [nonce]:
                problems.append(f"{engine.name} engine misses the nonce of {label}")
    headers = [bytes.fromhex(vector["header"]) for vector in vectors]
    expected = b"".join(_hashlib_scrypt(header) for header in headers)
    for impl in scrypt_impls():
        if scrypt_many(b"".join(headers), impl=impl) != expected:
            problems.append(f"our scrypt ({impl}) disagrees with hashlib.scrypt on the vectors")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scrypt", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one run")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds (each figure is the median of its runs)")
    parser.add_argument("--cpuminer-seconds", type=float, default=21.0,
                        help="length of one cpuminer --benchmark run (it reports every 5 s); 0 leaves it out")
    args = parser.parse_args(argv)

    cores = available_cores()
    print(f"machine: {_cpu_model()}, {cores} cores, Python {platform.python_version()}")
    impls = scrypt_impls()
    print(f"our scrypt implementations on this CPU: {', '.join(impls)} (default {impls[0]})")
    cpu = CpuEngine()
    engines: list[Engine] = [cpu]
    opencl: OpenClEngine | None = None
    try:
        opencl = OpenClEngine()
        engines.append(opencl)
        print(f"opencl device: {opencl.device}")
        for params, rate in opencl.tuning:
            print(f"  self-benchmark {params.describe():<40} {rate / 1000:8.2f} kH/s")
        print(f"  chosen: {opencl.params.describe()}")
    except OpenClUnavailable as error:
        print(f"opencl: unavailable ({error})")

    problems = check_vectors(engines)
    if problems:
        print("VECTORS FAILED:\n  " + "\n  ".join(problems))
        return 1
    names = ", ".join(engine.name for engine in engines)
    print(f"vectors: all match (hashlib.scrypt, scrypt package, our scrypt: {', '.join(impls)}; "
          f"{names} engines)")

    seconds, repeats = args.seconds, args.repeats
    figures = [
        Figure("hashlib.scrypt (OpenSSL), 1 thread", 1, _timed(_threads(_hashlib_scrypt, 1, 1, seconds))),
        Figure(f"hashlib.scrypt (OpenSSL), {cores} threads", cores,
               _timed(_threads(_hashlib_scrypt, 1, cores, seconds))),
        Figure("scrypt package (PyPI), 1 thread", 1, _timed(_threads(_package_scrypt, 1, 1, seconds))),
    ]
    ours: dict[tuple[str, int], Figure] = {}
    for impl in reversed(impls):
        for threads in (1, cores):
            name = f"ours {impl}, batches of {BATCH}, {threads} thread{'s' * (threads > 1)}"
            run = _threads(_ours(impl), BATCH, threads, seconds)
            ours[impl, threads] = Figure(name, threads, _timed(run))
    figures += ours.values()
    figures.append(Figure(f"cpu engine, {cpu.threads} threads", cpu.threads,
                          _timed(_engine_run(cpu, seconds))))
    if opencl is not None:
        units = opencl.cl_device.max_compute_units
        figures.append(Figure(f"opencl {opencl.params.describe()}", units,
                              _timed(_engine_run(opencl, seconds))))
    reference: dict[int, Figure] = {}
    if args.cpuminer_seconds > 0:
        minerd, problem = find_cpuminer()
        if minerd is None:
            print(f"cpuminer: unavailable ({problem})")
        else:
            for threads in (1, cores):
                reference[threads] = Figure(f"cpuminer 2.5.1 --benchmark -t {threads}", threads,
                                            _cpuminer(minerd, threads, args.cpuminer_seconds))
            figures += reference.values()

    for round_ in range(repeats):
        print(f"round {round_ + 1} of {repeats} ...", file=sys.stderr, flush=True)
        for figure in figures:
            rate, cpu_rate = figure.measure()
            figure.rates.append(rate)
            figure.cpu_rates.append(cpu_rate)
    print(f"\n{'hasher':<44} {'cores':>5} {'kH/s':>9} {'kH/s/core':>9} {'kH/CPU-s':>9}   "
          f"runs (kH/s; {repeats} rounds, {seconds:g} s each, cpuminer {args.cpuminer_seconds:g} s)")
    for figure in figures:
        print(figure.row())

    best = impls[0]
    hashlib_figures = {1: figures[0], cores: figures[1]}
    print()
    for threads in sorted({1, cores}):
        mine = ours[best, threads]
        line = (f"ours ({best}) on {threads} core{'s' * (threads > 1)}: "
                f"{mine.rate / hashlib_figures[threads].rate:.2f} x hashlib.scrypt")
        if threads in reference:
            line += f", {mine.rate / reference[threads].rate:.2f} x cpuminer"
        cpu_line = f"{mine.cpu_rate / hashlib_figures[threads].cpu_rate:.2f} x hashlib.scrypt"
        if threads in reference:
            cpu_line += f", {mine.cpu_rate / reference[threads].cpu_rate:.2f} x cpuminer"
        print(f"{line}; per CPU-second {cpu_line}")
    for engine in engines:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

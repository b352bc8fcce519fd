"""Scrypt hashrate of every engine on this machine: `python -m bench.scrypt [--seconds S] [--repeats R]`.

Correctness first: every hasher must reproduce the real vectors (and every engine find each
vector's nonce) before any figure is printed. Figures are medians of R runs of S seconds each.
"kH/s per core" divides by the cores the hasher used; "kH/CPU-s" divides by the CPU time the process
spent, which stays honest when other programs share the machine.
"""

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import scrypt as scrypt_package

from backends.cpu import CpuEngine, available_cores
from backends.engine import CancelToken, Engine, SearchWork, timed_search
from backends.opencl import OpenClEngine, OpenClUnavailable
from mining.hashing import hash_to_int, scrypt_pow

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "scrypt_headers.json"


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    cores: int
    rates: list[float]  # H/s per run
    cpu_rates: list[float]  # H per CPU-second per run

    def row(self) -> str:
        median = statistics.median(self.rates)
        runs = " ".join(f"{rate / 1000:.2f}" for rate in self.rates)
        return (f"{self.name:<44} {self.cores:>5} {median / 1000:>9.2f} {median / self.cores / 1000:>9.2f} "
                f"{statistics.median(self.cpu_rates) / 1000:>9.2f}   {runs}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(run: Callable[[], int], repeats: int) -> tuple[list[float], list[float]]:
    rates, cpu_rates = [], []
    for _ in range(repeats):
        cpu, wall = _cpu_seconds(), time.perf_counter()
        hashes = run()
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        rates.append(hashes / wall)
        cpu_rates.append(hashes / cpu if cpu > 0 else 0.0)
    return rates, cpu_rates


def _loop(hash_one: Callable[[bytes], bytes], seconds: float) -> Callable[[], int]:
    def run() -> int:
        header = bytearray(os.urandom(80))
        done = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            header[76:80] = struct.pack("<I", done)
            hash_one(bytes(header))
            done += 1
        return done

    return run


def _engine_run(engine: Engine, seconds: float) -> Callable[[], int]:
    def run() -> int:
        return timed_search(engine, seconds, os.urandom(76)).hashes_done

    return run


def _hashlib_scrypt(header: bytes) -> bytes:
    return hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32)


def _package_scrypt(header: bytes) -> bytes:
    return scrypt_package.hash(header, header, 1024, 1, 1, 32)


def check_vectors(engines: list[Engine]) -> list[str]:
    """Problems found; empty when every hasher reproduces every vector."""
    problems = []
    for vector in json.loads(VECTORS.read_text())["vectors"]:
        header = bytes.fromhex(vector["header"])
        label = vector.get("name", vector["header"][:16])
        if scrypt_pow(header)[::-1].hex() != vector["scrypt"]:
            problems.append(f"hashlib.scrypt disagrees on {label}")
        if _package_scrypt(header)[::-1].hex() != vector["scrypt"]:
            problems.append(f"scrypt package disagrees on {label}")
        nonce = struct.unpack("<I", header[76:])[0]
        work = SearchWork(header[:76], max(0, nonce - 20), 64, hash_to_int(scrypt_pow(header)))
        for engine in engines:
            if engine.search(work, CancelToken()).found != [nonce]:
                problems.append(f"{engine.name} engine misses the nonce of {label}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scrypt", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is shown)")
    args = parser.parse_args(argv)

    cores = available_cores()
    print(f"machine: {_cpu_model()}, {cores} cores, Python {platform.python_version()}")
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
    print(f"vectors: all match (hashlib.scrypt, scrypt package, {names} engines)")

    seconds, repeats = args.seconds, args.repeats
    figures = [
        Figure("hashlib.scrypt (OpenSSL), 1 thread", 1, *_timed(_loop(_hashlib_scrypt, seconds), repeats)),
        Figure("scrypt package (PyPI), 1 thread", 1, *_timed(_loop(_package_scrypt, seconds), repeats)),
        Figure(f"cpu engine, {cpu.threads} threads", cpu.threads,
               *_timed(_engine_run(cpu, seconds), repeats)),
    ]
    if opencl is not None:
        units = opencl.cl_device.max_compute_units
        figures.append(Figure(f"opencl {opencl.params.describe()}", units,
                              *_timed(_engine_run(opencl, seconds), repeats)))
    print(f"\n{'hasher':<44} {'cores':>5} {'kH/s':>9} {'kH/s/core':>9} {'kH/CPU-s':>9}   "
          f"runs (kH/s, {repeats} x {seconds:g} s)")
    for figure in figures:
        print(figure.row())
    for engine in engines:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

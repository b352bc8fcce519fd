"""Bytes per miner in one proxy process: `python -m bench.miner_memory --miners 10000`.

Runs the real proxy (one process, no database) in this process, a bench pool as its upstream and
idle miners held by `bench.crowd` processes (subscribed and authorized, reading nothing but what
is drained between jobs). After N miners and again after 2N, each time once `--jobs` jobs have
gone out to all (so each miner's remembered jobs are at their steady state), it takes the
process's RSS and, with `--trace`, a tracemalloc snapshot; it prints what the second N miners
added, per miner: RSS (allocator and interpreter overhead included) and Python allocations by the
line that made them. Tracing costs memory of its own: take RSS from a run without `--trace`.
"""

import argparse
import asyncio
import tempfile
import tracemalloc
from pathlib import Path

import uvloop

from bench.proxy import PROXY_CONFIG, BenchPool, Crowds, _raise_file_limit
from proxy.app import Proxy
from proxy.config import ProxyConfig
from qscrypt.log import configure_logging
from qscrypt.settings import load_section, read_toml


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def _jobs(pool: BenchPool, crowds: list[Crowds], count: int) -> None:
    for _ in range(count):
        pool.broadcast(pool.job(clean=True))
        await asyncio.sleep(0.2)
        for crowd in crowds:
            await crowd.ask("drain")


async def run(args: argparse.Namespace) -> None:
    configure_logging("warning")
    hard = _raise_file_limit()
    if 2 * args.miners > hard - 1000:
        raise SystemExit(f"2 x {args.miners} miners do not fit this process's file limit ({hard})")
    pool = BenchPool()
    await pool.start()
    workdir = Path(tempfile.mkdtemp(prefix="qscrypt-miner-memory-"))
    config_path = workdir / "proxy.toml"
    config_path.write_text(PROXY_CONFIG.format(port=0, pool_port=pool.port, metrics_port=0, workers=1,
                                               hash_processes=1))
    proxy = Proxy(load_section(ProxyConfig, read_toml(config_path)["proxy"], "proxy"), None, None)
    await proxy.start()
    crowds: list[Crowds] = []
    try:
        for _ in range(100):
            if proxy.router.has_work:
                break
            await asyncio.sleep(0.1)
        port = proxy.ports["tcp"]
        figures: list[tuple[int, int, tracemalloc.Snapshot | None]] = []
        for step in range(3):
            if step:
                crowd = Crowds(port, args.miners, args.miners, 500, first_source=step)
                crowds.append(crowd)
                connected: list[tuple[int, int]] = await crowd.ask("connect")  # type: ignore[assignment]
                held = sum(h for h, _ in connected)
                if held != args.miners:
                    raise SystemExit(f"only {held} of {args.miners} miners held")
            await _jobs(pool, crowds, args.jobs)
            if step == 1 and args.trace:
                tracemalloc.start(1)
            snapshot = tracemalloc.take_snapshot() if args.trace and step else None
            figures.append((len(proxy.server.connections), _rss_bytes(), snapshot))
        (n1, rss1, snap1), (n2, rss2, snap2) = figures[1], figures[2]
        added = n2 - n1
        print(f"miners {n1} -> {n2}; RSS {rss1 / 2**20:.1f} -> {rss2 / 2**20:.1f} MiB; "
              f"RSS per miner {(rss2 - rss1) / added:.0f} B{' (tracing on)' if args.trace else ''}")
        if snap1 is not None and snap2 is not None:
            stats = snap2.compare_to(snap1, "lineno")
            total = sum(s.size_diff for s in stats)
            print(f"python allocations per miner {total / added:.0f} B, by line:")
            for stat in stats[: args.top]:
                frame = stat.traceback[0]
                print(f"  {stat.size_diff / added:8.1f} B  {stat.count_diff / added:6.2f} blocks  "
                      f"{frame.filename.split('/site-packages/')[-1]}:{frame.lineno}")
    finally:
        for crowd in crowds:
            await crowd.close()
        await proxy.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=5000, help="N: miners added at each step")
    parser.add_argument("--jobs", type=int, default=20, help="jobs sent out before each measure")
    parser.add_argument("--trace", action="store_true", help="tracemalloc: bytes by allocating line")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    uvloop.run(run(args))


if __name__ == "__main__":
    main()

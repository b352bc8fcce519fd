"""Qubic idle-phase start and stop: `python -m bench.qubic [--rounds N]`.

What a Qubic client's idle phase costs at its edges: `qscrypt miner` started against a local pool
(bench.proxy's BenchPool: it answers at once and checks nothing), timed from spawn to the miner's
first search (its `miner.hashing` log line), then stopped with SIGINT at once, timed to its exit.
The CPU the child used for the whole start-and-stop comes from its rusage: unlike the wall times it
does not depend on what else the machine runs. Variants, alternating round by round so load drifts
hit them alike:
- `full`: through `cli.main` (every package loaded), as the `qscrypt` launcher did before;
- `lean`: through `cli.entry`, the launcher now (the miner's package only);
- `lean auto cached`: `--engine auto` with this machine's tuning cache (filled by a first run);
- `lean auto retune`: `--engine auto --retune`, the full self-benchmark every time.
"""

import argparse
import asyncio
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.proxy import BenchPool

REPO = Path(__file__).resolve().parents[1]
FULL = "import sys; from cli.main import main; sys.exit(main())"
LEAN = "import sys; from cli.entry import main; main()"  # the console script's own call


async def _once(pool: BenchPool, launcher: str, extra: list[str],
                env: dict[str, str]) -> tuple[float, float, float]:
    """(spawn -> first search s, SIGINT -> exit s, child CPU s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", launcher, "miner", "-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", "bench",
        *extra, cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    async for line in process.stderr:
        if b"miner.hashing" in line:
            break
    else:
        raise RuntimeError(f"the miner exited ({await process.wait()}) without hashing")
    first = time.monotonic() - began
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    await process.stderr.read()
    code = await process.wait()
    stop = time.monotonic() - sent
    if code != 0:
        raise RuntimeError(f"the miner exited {code} on SIGINT")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return first, stop, cpu


async def main(rounds: int) -> None:
    pool = BenchPool()
    pool.difficulty = 1e9  # nothing to submit: the edges alone are measured
    await pool.start()
    cache = tempfile.mkdtemp(prefix="qscrypt-bench-qubic-")
    env = dict(os.environ, PYTHONPATH=str(REPO), QSCRYPT_CACHE_DIR=cache)
    variants = {
        "full (cli.main), cpu": (FULL, ["--engine", "cpu", "--threads", "1"]),
        "lean (cli.entry), cpu": (LEAN, ["--engine", "cpu", "--threads", "1"]),
        "lean, auto, tuning cached": (LEAN, ["--engine", "auto"]),
        "lean, auto, --retune": (LEAN, ["--engine", "auto", "--retune"]),
    }
    await _once(pool, LEAN, ["--engine", "auto"], env)  # fills the tuning cache (and PoCL's kernel cache)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (launcher, extra) in variants.items():
            results[name].append(await _once(pool, launcher, extra, env))
    load = os.getloadavg()
    print(f"qscrypt miner start and stop, {rounds} alternating rounds, medians "
          f"(load average {load[0]:.1f}, {os.cpu_count()} CPUs):")
    print(f"{'variant':<28} {'first hash s':>12} {'stop ms':>8} {'CPU s':>6}")
    for name, runs in results.items():
        first, stop, cpu = (statistics.median(column) for column in zip(*runs, strict=True))
        print(f"{name:<28} {first:>12.2f} {stop * 1000:>8.0f} {cpu:>6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))

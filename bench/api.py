"""Load the decision API: requests/s and latency of GET /v1/decisions/{profile} and /v1/profitability.

    python -m bench.api [--duration S] [--connections N] [--tool wrk|aiohttp] [--days D]

A fresh embedded PostgreSQL (non-durable) is migrated and filled with a realistic market: ten
scrypt coins, merged-mining pools, 50 profiles, 2000 workers and D days (default 30) of history
at one aggregator run every 5 minutes (about 200 000 profitability rows). The API runs in its
own process (uvloop, rate limit off unless --rate-limit), the load comes from another: `wrk`
when it is installed (Debian: apt-get install wrk), else an aiohttp client in a subprocess.
Each endpoint gets a warm-up, then `--duration` seconds over `--connections` keep-alive
connections. Target for decisions: >= 3000 requests/s with p99 <= 20 ms on two cores. Also
printed: the CPU the server and the load generator used, which says what limits the figure.
"""

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from mining.target import expected_coins_per_day
from qscrypt.db.embedded import EmbeddedPostgres, free_port
from qscrypt.db.migrate import migrate

TARGET_RPS = 3000.0
TARGET_P99_MS = 20.0
RUN_EVERY = timedelta(minutes=5)
REFERENCE_HS = 1e9
PROFILE = "bench-000"

# symbol: (name, price USD, network difficulty, block reward, block time s)
COINS = {
    "LTC": ("Litecoin", 84.10, 9.0e7, 6.25, 150.0),
    "DOGE": ("Dogecoin", 0.38, 3.6e7, 10000.0, 60.0),
    "BELLS": ("Bellscoin", 0.62, 2.1e4, 2500.0, 60.0),
    "PEP": ("Pepecoin", 0.00021, 1.5e5, 2.5e6, 60.0),
    "LKY": ("Luckycoin", 1.90, 1.1e4, 88.0, 60.0),
    "JKC": ("Junkcoin", 0.31, 9.5e3, 100.0, 60.0),
    "DINGO": ("Dingocoin", 0.00009, 2.7e5, 1.0e6, 60.0),
    "FTC": ("Feathercoin", 0.0042, 4.0e3, 200.0, 60.0),
    "DGB": ("DigiByte", 0.011, 9.0e3, 277.0, 75.0),
    "VTC": ("Vertcoin", 0.09, 1.2e4, 12.5, 150.0),
}
# name: (coins paid, the mined one first; fee %; pool hashrate H/s)
POOLS = {
    "merged-ltc-doge": (("LTC", "DOGE"), 2.0, 4.1e14),
    "merged-ltc-doge-bells-pep": (("LTC", "DOGE", "BELLS", "PEP"), 2.5, 9.0e13),
    "merged-ltc-all": (("LTC", "DOGE", "BELLS", "PEP", "LKY", "JKC", "DINGO"), 3.0, 2.2e13),
    "ltc-pplns": (("LTC",), 1.0, 3.1e14),
    "ltc-pps": (("LTC",), 4.0, 1.5e14),
    "doge-pplns": (("DOGE",), 1.0, 2.0e13),
    "doge-solo-pool": (("DOGE",), 0.5, 3.0e12),
    **{
        f"{s.lower()}-pool": ((s,), 1.0 + i * 0.25, 1e11 * (i + 1))
        for i, s in enumerate(COINS)
        if s not in ("LTC", "DOGE")
    },
}
HARDWARE = [
    ("antminer-l7", "Antminer L7", 9.5e9, 3425.0),
    ("antminer-l9", "Antminer L9", 16.0e9, 3360.0),
    ("elphapex-dg1", "ElphaPex DG1+", 14.0e9, 3920.0),
    ("goldshell-lt6", "Goldshell LT6", 3.35e9, 3200.0),
    ("volcminer-d1", "VolcMiner D1", 15.2e9, 3900.0),
    ("goldshell-mini-doge-3", "Goldshell Mini-DOGE III", 0.65e9, 400.0),
]


# --- data -----------------------------------------------------------------------------------------


def _drift(rng: random.Random, n: int, scale: float) -> Iterator[float]:
    """A slow random walk around 1 (prices and difficulties move a few percent a day)."""
    value = 1.0
    for _ in range(n):
        value = min(1.5, max(0.6, value * math.exp(rng.gauss(0.0, scale))))
        yield value


async def fill(dsn: str, days: float, profiles: int, workers: int, seed: int = 7) -> dict[str, int]:
    """A market like the aggregator's after `days` days of runs, ending now."""
    rng = random.Random(seed)
    runs = int(days * 86400 / RUN_EVERY.total_seconds())
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - RUN_EVERY * (runs - 1 - i) for i in range(runs)]
    walks = {s: (list(_drift(rng, runs, 0.004)), list(_drift(rng, runs, 0.002))) for s in COINS}
    conn = await asyncpg.connect(dsn)
    try:
        coin_ids: dict[str, int] = {}
        for symbol, (name, price, difficulty, reward, block_time) in COINS.items():
            coin_ids[symbol] = await conn.fetchval(
                """
                INSERT INTO coins (symbol, algorithm, name, price_usd, difficulty, block_reward, block_time_s,
                                   network_hashrate, height, updated_at)
                VALUES ($1, 'scrypt', $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id
                """,
                symbol,
                name,
                price * walks[symbol][0][-1],
                difficulty * walks[symbol][1][-1],
                reward,
                block_time,
                difficulty * 2**32 / block_time,
                rng.randrange(10**5, 10**7),
                now,
            )
        pool_ids: dict[str, int] = {}
        for name, (paid, fee, hashrate) in POOLS.items():
            pool_ids[name] = await conn.fetchval(
                """
                INSERT INTO pools (name, coin_id, endpoints, fee_pct, hashrate, miners, merged_coins, source,
                                   updated_at)
                VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, 'bench', $8) RETURNING id
                """,
                name,
                coin_ids[paid[0]],
                json.dumps([{"url": f"stratum+tcp://{name}.example:3333"}]),
                fee,
                hashrate,
                int(hashrate / 5e9),
                list(paid[1:]),
                now,
            )
        for slug, name, hashrate, watts in HARDWARE:
            hardware_id = await conn.fetchval(
                "INSERT INTO hardware (name, slug, vendor, kind) VALUES ($1, $2, $3, 'asic') RETURNING id",
                name,
                slug,
                slug.split("-")[0],
            )
            await conn.execute(
                "INSERT INTO hardware_mining (hardware_id, algorithm, hashrate_hs, power_w, source)"
                " VALUES ($1, 'scrypt', $2, $3, 'bench')",
                hardware_id,
                hashrate,
                watts,
            )

        history, profit, pool_history = [], [], []
        for i, ts in enumerate(times):
            inputs = {}
            for symbol, (_, price, difficulty, reward, _) in COINS.items():
                p, d = price * walks[symbol][0][i], difficulty * walks[symbol][1][i]
                per_day = expected_coins_per_day(REFERENCE_HS, reward, d)
                inputs[symbol] = {
                    "difficulty": d,
                    "block_reward": reward,
                    "price_usd": p,
                    "coins_per_day": per_day,
                    "usd_per_day": per_day * p,
                }
                for source in ("coingecko", "whattomine", "consensus"):
                    history.append((coin_ids[symbol], ts, source, p, d, reward, d * 2**32 / 150.0, 10**6 + i))
            for symbol in COINS:
                row = inputs[symbol]
                profit.append(
                    (
                        ts,
                        coin_ids[symbol],
                        None,
                        "scrypt",
                        REFERENCE_HS,
                        row["coins_per_day"],
                        row["usd_per_day"],
                        0.0,
                        row["usd_per_day"],
                        json.dumps({"coins": {symbol: row}, "missing": []}),
                    )
                )
            for name, (paid, fee, hashrate) in POOLS.items():
                gross = sum(inputs[s]["usd_per_day"] for s in paid)
                profit.append(
                    (
                        ts,
                        coin_ids[paid[0]],
                        pool_ids[name],
                        "scrypt",
                        REFERENCE_HS,
                        inputs[paid[0]]["coins_per_day"],
                        gross,
                        fee,
                        gross * (1 - fee / 100),
                        json.dumps({"coins": {s: inputs[s] for s in paid}, "missing": []}),
                    )
                )
                pool_history.append((pool_ids[name], ts, hashrate * (0.9 + 0.2 * rng.random()), 1000, fee))
        await conn.copy_records_to_table(
            "coin_history",
            records=history,
            columns=[
                "coin_id",
                "ts",
                "source",
                "price_usd",
                "difficulty",
                "block_reward",
                "network_hashrate",
                "height",
            ],
        )
        await conn.copy_records_to_table(
            "profitability",
            records=profit,
            columns=[
                "computed_at",
                "coin_id",
                "pool_id",
                "algorithm",
                "hashrate_hs",
                "coins_per_day",
                "usd_per_day",
                "fee_pct",
                "usd_per_day_net",
                "inputs",
            ],
        )
        await conn.copy_records_to_table(
            "pool_history", records=pool_history, columns=["pool_id", "ts", "hashrate", "miners", "fee_pct"]
        )

        pool_names, symbols = list(POOLS), list(COINS)
        for i in range(profiles):
            _, _, hashrate, watts = HARDWARE[i % len(HARDWARE)]
            params: dict[str, Any] = {"hashrate_hs": hashrate, "power_w": watts}
            strategy = ("max_usd", "max_usd", "max_coin", "fixed")[i % 4]
            if strategy == "max_coin":
                params["coin"] = ("LTC", "DOGE")[i % 2]
            elif strategy == "fixed":
                params["pool"] = pool_names[i % len(pool_names)]
                params["coin"] = POOLS[params["pool"]][0][0]
            await conn.execute(
                """
                INSERT INTO profiles (name, strategy, params, deny_coins, max_fee_pct, power_cost_kwh)
                VALUES ($1, $2, $3::jsonb, $4, $5, $6)
                """,
                f"bench-{i:03d}",
                strategy,
                json.dumps(params),
                [symbols[-1 - i % 3]] if i % 5 == 4 else [],
                3.5 if i % 3 == 0 else None,
                0.03 + 0.01 * (i % 8),
            )
        await conn.copy_records_to_table(
            "workers",
            columns=["name", "profile", "accepted", "hashrate_hs", "last_share_at"],
            records=[
                (
                    f"rig{i:05d}",
                    f"bench-{i % profiles:03d}",
                    rng.randrange(10**6),
                    rng.uniform(1e8, 2e10),
                    now,
                )
                for i in range(workers)
            ],
        )
        await conn.execute("ANALYZE")
        return {"coin_history": len(history), "profitability": len(profit), "pool_history": len(pool_history)}
    finally:
        await conn.close()


# --- the server ------------------------------------------------------------------------------------


def serve(dsn: str, port: int, rate_limit: float) -> None:
    """The API as `qscrypt api` runs it, minus the logging of every decision at start."""
    import logging

    import structlog
    import uvloop
    from aiohttp import web

    from api.app import create_app
    from api.config import ApiConfig

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    config = ApiConfig(host="127.0.0.1", port=port, rate_limit_per_s=rate_limit)

    async def run() -> None:
        runner = web.AppRunner(create_app(config, dsn), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, config.host, config.port).start()
        await asyncio.Event().wait()

    uvloop.run(run())


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    client_cpu_s: float | None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def _aiohttp_load(url: str, connections: int, seconds: float, pipe: Connection) -> None:
    import uvloop

    async def run() -> tuple[bytes, int, float]:
        latencies = array("d")
        errors = 0
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal errors
                while (began := time.perf_counter()) < deadline:
                    async with session.get(url) as response:
                        await response.read()
                        if response.status != 200:
                            errors += 1
                    latencies.append(time.perf_counter() - began)

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            return latencies.tobytes(), errors, time.perf_counter() - began

    latencies, errors, elapsed = uvloop.run(run())
    pipe.send((latencies, errors, elapsed, time.process_time()))


def load_aiohttp(url: str, connections: int, seconds: float) -> Result:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=_aiohttp_load, args=(url, connections, seconds, theirs))
    process.start()
    raw, errors, elapsed, cpu = ours.recv()
    process.join()
    latencies = array("d")
    latencies.frombytes(raw)
    ms = sorted(x * 1000 for x in latencies)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return Result(len(ms), errors, elapsed, pick(0.5), pick(0.9), pick(0.99), cpu)


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def load_wrk(url: str, connections: int, seconds: float) -> Result:
    """wrk, one thread: it needs a fraction of a core, and the server needs the other."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url]
    before = os.times()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = os.times()

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert match, out
        return float(match[1]) * _WRK_UNITS[match[2]]

    total = re.search(r"(\d+) requests in ([\d.]+)(s|m)", out)
    assert total, out
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    elapsed = float(total[2]) * (60 if total[3] == "m" else 1)
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return Result(
        int(total[1]),
        int(non_2xx[1]) if non_2xx else 0,
        elapsed,
        latency("50"),
        latency("90"),
        latency("99"),
        cpu,
    )


# --- main -------------------------------------------------------------------------------------------


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    async def poll() -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the API exited with status {process.returncode}")
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"the API did not answer {url} within {timeout:.0f} s")
                await asyncio.sleep(0.1)

    asyncio.run(poll())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per endpoint (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument(
        "--tool", choices=["wrk", "aiohttp"], help="load generator (default: wrk if installed)"
    )
    parser.add_argument("--days", type=float, default=30.0, help="days of history to fill (default 30)")
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=0.0,
        help="per-client requests/s in the API (default 0: off, so it does not cap the figure)",
    )
    parser.add_argument("--serve", nargs=2, metavar=("DSN", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.rate_limit)
        return 0
    tool = args.tool or ("wrk" if shutil.which("wrk") else "aiohttp")
    load = load_wrk if tool == "wrk" else load_aiohttp

    with tempfile.TemporaryDirectory(prefix="qscrypt-bench-api-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", durable=False)
        pg.start()
        server: subprocess.Popen[bytes] | None = None
        try:
            dsn = pg.create_database("bench")
            asyncio.run(migrate(dsn))
            began = time.perf_counter()
            counts = asyncio.run(fill(dsn, args.days, profiles=50, workers=2000))
            print(
                f"filled in {time.perf_counter() - began:.1f} s: "
                + ", ".join(f"{v} {k} rows" for k, v in counts.items())
            )
            port = free_port()
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.api",
                    "--rate-limit",
                    str(args.rate_limit),
                    "--serve",
                    dsn,
                    str(port),
                ]
            )
            base = f"http://127.0.0.1:{port}"
            _wait_ready(f"{base}/readyz", server)
            print(
                f"load: {tool}, {args.connections} connections, {args.duration:g} s per endpoint, "
                f"{os.cpu_count()} CPUs"
            )
            endpoints = {
                "decisions": f"{base}/v1/decisions/{PROFILE}",
                "profitability": f"{base}/v1/profitability?hashrate=9.5e9&watts=3425&power_cost=0.05",
            }
            ok = True
            for name, url in endpoints.items():
                load(url, args.connections, min(2.0, args.duration))  # warm-up
                cpu_before = _cpu_s(server.pid)
                result = load(url, args.connections, args.duration)
                server_cpu = (_cpu_s(server.pid) - cpu_before) / result.seconds
                client_cpu = (result.client_cpu_s or 0.0) / result.seconds
                print(
                    f"{name:<14} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p90 {result.p90_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}  "
                    f"CPU: server {server_cpu:4.0%} of a core, load {client_cpu:4.0%}"
                )
                if name == "decisions":
                    met = result.rps >= TARGET_RPS and result.p99_ms <= TARGET_P99_MS and not result.errors
                    ok = ok and met
                    print(
                        f"{'':<14} target >= {TARGET_RPS:.0f} req/s, p99 <= {TARGET_P99_MS:.0f} ms: "
                        f"{'met' if met else 'NOT met'}"
                    )
            return 0 if ok else 1
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())

"""What a job costs the event loop before any byte is written: `python -m bench.notify_pass`.

The router's pass over an upstream's miners when a job comes, and each miner's notify bytes made
as a fan-out slice makes them (`FanOut.data_for`), for N authorized sessions on one upstream; no
sockets. Median over J jobs, ms per job and µs per miner. `bench.proxy` gives the fan-out with its
writes; this is the Python part alone.
"""

import argparse
import gc
import statistics
import time
from dataclasses import replace

from bench.report import print_results
from bench.share_path import JOB
from mining import stratum
from mining.target import share_difficulty_to_target
from proxy.router import FanOut, Router
from proxy.session import MinerSession
from proxy.upstream.base import UpstreamWork
from proxy.vardiff import Vardiff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--miners", type=int, default=10000)
    parser.add_argument("--jobs", type=int, default=40)
    args = parser.parse_args()
    now = 1000.0
    router = Router(2, grace_s=5.0, fallback_to_preferred=True, authorize=lambda user, password: True)
    router.add_group("pool", 0, "pool", "LTC")

    def publish(n: int) -> list[FanOut]:
        work = UpstreamWork(replace(JOB, job_id=f"j{n}", clean_jobs=n == 0), bytes.fromhex("aabbccdd"), 4,
                            share_difficulty_to_target(0.001))
        actions = router.upstream_job("pool", work, now)
        router.upstream_state("pool", True, True, None, now)
        return [a for a in actions if isinstance(a, FanOut)]

    publish(0)
    sessions: dict[int, MinerSession] = {}
    for conn_id in range(1, args.miners + 1):
        session = MinerSession(conn_id, "10.0.0.1", router, Vardiff(0.001, 0.0001, 1000.0, 10, 30, 0.3))
        router.miner_joined(session)
        session.handle(stratum.Request(1, "mining.subscribe", ["bench/1"]), now)
        session.handle(stratum.Request(2, "mining.extranonce.subscribe", []), now)
        session.handle(stratum.Request(3, "mining.authorize", [f"w{conn_id}", "x"]), now)
        sessions[conn_id] = session
    gc.disable()  # as during a real fan-out (proxy.dispatch)
    per_job = []
    for n in range(1, args.jobs + 1):
        started = time.perf_counter()
        made = 0
        for fan_out in publish(n):
            for conn_id in fan_out.conn_ids:
                made += bool(fan_out.data_for(sessions[conn_id]))
        per_job.append(time.perf_counter() - started)
        assert made == args.miners
    gc.enable()
    median = statistics.median(per_job)
    print_results({"miners": args.miners, "jobs": args.jobs, "ms_per_job": round(median * 1e3, 2),
                   "us_per_miner": round(median / args.miners * 1e6, 3)})


if __name__ == "__main__":
    main()

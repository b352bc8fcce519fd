"""The event loop's Python per share, piece by piece: `python -m bench.share_path`.

`bench.proxy` gives the loop's whole CPU per share under load; this splits the in-process part
into the steps a `mining.submit` goes through (no sockets, no hashers): decoding the line, the
session's checks and header, and the verdict once the hash is back. It also builds the same header
with hashlib's sha256d, the reason for the sha256d in `mining/_hashes.c`. Medians of R repeats,
µs per share.
"""

import argparse
import gc
import hashlib
import statistics
import time

from bench.report import print_results
from mining import stratum
from mining.job import Job
from proxy.jobs import JobBook, ProxyJob
from proxy.session import Assignment, Check, MinerSession
from proxy.upstream.base import UpstreamWork
from proxy.vardiff import Vardiff

# The bench pool's job shape (bench.proxy): 40-byte coinbase halves, a 6-step merkle branch.
JOB = Job("b1", bytes(range(32)), b"\x01" * 40, b"\x02" * 40, (b"\x03" * 32,) * 6, 0x20000000,
          0x1E0FFFF0, 1_700_000_000, True)


class OneUpstream:
    """The session's `Hub` with one upstream and its current job: routing is not measured here."""

    def __init__(self) -> None:
        self.book = JobBook()
        self.job = self.book.add("pool", UpstreamWork(JOB, bytes.fromhex("aabbccdd"), 4, 1 << 200), 0.0)

    def subscribe(self, session: MinerSession, resume_id: str | None, now: float) -> Assignment:
        return Assignment("pool", bytes.fromhex("aabbccdd0001"), 2, b"\x00\x01", "s1")

    def authorize(self, session: MinerSession, username: str, password: str) -> bool:
        return True

    def known_profile(self, profile: str) -> bool:
        return False

    def profile_chosen(self, session: MinerSession, now: float) -> None:
        return None

    def find_job(self, job_id: str) -> ProxyJob | None:
        return self.book.get(job_id)

    def retired_job(self, job_id: str) -> tuple[str, int] | None:
        return self.book.retired(job_id)

    def is_current(self, job: ProxyJob, now: float) -> bool:
        return True

    def current_job(self, upstream: str) -> ProxyJob | None:
        return self.job

    def known_difficulty(self, worker: str) -> float | None:
        return None


def _hashlib_sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _header_with_hashlib(job: Job, extranonce1: bytes, extranonce2: bytes, ntime: int, nonce: int) -> bytes:
    root = _hashlib_sha256d(job.coinbase(extranonce1, extranonce2))
    for sibling in job.merkle_branch:
        root = _hashlib_sha256d(root + sibling)
    return job.header_prefix(root, ntime) + nonce.to_bytes(4, "little")


def one_round(hub: OneUpstream, shares: int) -> dict[str, float]:
    """µs per share of each step, over `shares` shares from one fresh session."""
    session = MinerSession(1, "127.0.0.1", hub, Vardiff(1e-6, 1e-9, 1e9, 10.0, 30.0, 0.3))
    codec = stratum.StratumCodec()
    for event in codec.feed(b'{"id":1,"method":"mining.subscribe","params":["bench/1"]}\n'
                            b'{"id":2,"method":"mining.authorize","params":["bench","d=0.000001"]}\n'):
        session.handle(event, 1.0)
    lines = [stratum.encode(stratum.Request(10 + i, "mining.submit",
                                            ["bench", hub.job.id, "0000", f"{JOB.ntime:08x}", f"{i:08x}"]))
             for i in range(shares)]
    work = hub.job.work
    extranonce2 = b"\x00\x01\x00\x00"  # the session's prefix and the miner's "0000"
    pow_hash = bytes(32)
    marks = [time.perf_counter()]
    events = [codec.feed(line)[0] for line in lines]
    marks.append(time.perf_counter())
    checks = [session.handle(event, 2.0)[0] for event in events]
    marks.append(time.perf_counter())
    for nonce in range(shares):
        work.job.header(work.extranonce1, extranonce2, JOB.ntime, nonce)
    marks.append(time.perf_counter())
    for nonce in range(shares):
        _header_with_hashlib(work.job, work.extranonce1, extranonce2, JOB.ntime, nonce)
    marks.append(time.perf_counter())
    for check in checks:
        assert isinstance(check, Check), f"a bench share was refused: {check}"
        session.share_hashed(check.request_id, check.candidate, pow_hash, 3.0)
    marks.append(time.perf_counter())
    names = ("decode_us", "submit_us", "header_us", "header_hashlib_us", "verdict_us")
    return {name: (marks[i + 1] - marks[i]) / shares * 1e6 for i, name in enumerate(names)}


def run(shares: int, repeats: int) -> dict[str, float]:
    hub = OneUpstream()
    work = hub.job.work
    if work.job.header(work.extranonce1, b"\0" * 4, JOB.ntime, 7) != \
            _header_with_hashlib(work.job, work.extranonce1, b"\0" * 4, JOB.ntime, 7):
        raise RuntimeError("the C sha256d and hashlib disagree")
    gc.disable()  # the proxy freezes its start-up heap and rarely collects; so does this
    try:
        rounds = [one_round(hub, shares) for _ in range(repeats)]
    finally:
        gc.enable()
    return {name: round(statistics.median(r[name] for r in rounds), 2) for name in rounds[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    results = run(args.shares, args.repeats)
    print_results(results, 20)


if __name__ == "__main__":
    main()

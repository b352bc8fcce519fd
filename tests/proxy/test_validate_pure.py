"""Share validation, pure: each check on its own, against real vectors and at its boundaries."""

import json
from pathlib import Path

from mining import stratum
from mining.hashing import hash_to_int, scrypt_pow
from mining.target import hash_share_difficulty, share_difficulty_to_target
from proxy import validate
from proxy.jobs import JobBook
from proxy.upstream.base import UpstreamWork
from tests.stratum_peers import regtest_job

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"


def _candidate(difficulty: float, upstream_difficulty: float) -> validate.ShareCandidate:
    job = JobBook().add("pool", UpstreamWork(regtest_job(1), bytes(4), 4,
                                             share_difficulty_to_target(upstream_difficulty)), 0.0)
    header = job.job.header(bytes(4), bytes(4), job.job.ntime, 0)
    return validate.ShareCandidate("w", job, bytes(4), job.job.ntime, 0, header,
                                   share_difficulty_to_target(difficulty), difficulty)


def test_parse_submit_reads_hex_and_refuses_wrong_sizes() -> None:
    assert validate.parse_submit(["w", "1a", "0001", "5f5e1000", "000000ff"]) == \
        ("w", "1a", b"\x00\x01", 0x5F5E1000, 255)
    for ntime, nonce in (("5f5e100", "000000ff"), ("5f5e1000", "ff"), ("5f5e10000", "000000ff")):
        refused = validate.parse_submit(["w", "1a", "0001", ntime, nonce])
        assert isinstance(refused, validate.Rejection)
        assert (refused.code, refused.reason) == (stratum.OTHER, validate.MALFORMED)


def test_ntime_window_and_extranonce2_size() -> None:
    job = JobBook().add("pool", UpstreamWork(regtest_job(1), bytes(4), 4, 1), 0.0)
    t = job.job.ntime
    assert validate.check_ntime(job, t) is None
    assert validate.check_ntime(job, t + validate.NTIME_MAX_AHEAD_S) is None
    for bad in (t - 1, t + validate.NTIME_MAX_AHEAD_S + 1):
        rejection = validate.check_ntime(job, bad)
        assert rejection is not None and rejection.reason == validate.BAD_NTIME
    assert validate.check_extranonce2(bytes(2), 2) is None
    for wrong in (bytes(1), bytes(3)):
        rejection = validate.check_extranonce2(wrong, 2)
        assert rejection is not None and rejection.reason == validate.BAD_EXTRANONCE2
        assert "2 bytes" in rejection.message


def test_judge_against_the_real_scrypt_of_a_real_header() -> None:
    # A real chain header and its scrypt hash from the shared vectors: the judge reads the hash
    # as a little-endian number, as miners and pools do.
    vector = json.loads((VECTORS / "scrypt_headers.json").read_text())["vectors"][0]
    header = bytes.fromhex(vector["header"])
    pow_hash = scrypt_pow(header)
    assert pow_hash[::-1].hex() == vector["scrypt"]
    reached = hash_share_difficulty(hash_to_int(pow_hash))
    assert reached > 1.0  # a real block's hash: far past share difficulty 1
    accepted = validate.judge(_candidate(1.0, reached * 2), pow_hash)
    assert accepted.accepted and not accepted.meets_upstream and accepted.share_difficulty == reached
    forwarded = validate.judge(_candidate(1.0, reached / 2), pow_hash)
    assert forwarded.accepted and forwarded.meets_upstream
    low = validate.judge(_candidate(reached * 2, reached * 4), pow_hash)
    assert not low.accepted and low.rejection is not None
    assert (low.rejection.code, low.rejection.reason) == (stratum.LOW_DIFFICULTY, validate.LOW_DIFFICULTY)
    assert low.share_difficulty == reached  # what it reached is known either way

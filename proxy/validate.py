"""Share validation, pure: the checks every share passes before and after its scrypt hash.

Order matters and follows the issue: malformed params, unauthorized worker, not subscribed,
unknown or stale job, ntime window, extranonce2 length, duplicate — all cheap and done first —
then the scrypt hash against the miner's target.
"""

from dataclasses import dataclass

from mining import stratum
from mining.hashing import hash_to_hex, hash_to_int, sha256d
from mining.target import bits_to_target, hash_share_difficulty
from proxy.jobs import ProxyJob

NTIME_MAX_AHEAD_S = 7200


@dataclass(frozen=True, slots=True)
class Rejection:
    code: int
    reason: str
    """Short machine-friendly label, used in metrics and the shares table."""
    message: str


# ShareCandidate and Verdict are made per share: not frozen, since frozen construction costs ~1 µs
# more each (measured). Treat them as immutable all the same.
@dataclass(slots=True)
class ShareCandidate:
    """A share that passed every cheap check; its header awaits the scrypt hash."""

    worker: str
    job: ProxyJob
    extranonce2: bytes
    """Full upstream extranonce2: the miner's prefix followed by the miner's own extranonce2."""
    ntime: int
    nonce: int
    header: bytes
    target: int
    difficulty: float


@dataclass(slots=True)
class Verdict:
    accepted: bool
    share_difficulty: float
    """The difficulty the hash actually reached."""
    meets_upstream: bool
    rejection: Rejection | None = None


MALFORMED = "malformed"
UNAUTHORIZED = "unauthorized"
NOT_SUBSCRIBED = "not-subscribed"
STALE = "stale"
UNKNOWN_JOB = "unknown-job"
"""A job id never sent to the miner: counted as invalid, unlike a stale one."""
BAD_NTIME = "bad-ntime"
BAD_EXTRANONCE2 = "bad-extranonce2"
DUPLICATE = "duplicate"
LOW_DIFFICULTY = "low-difficulty"


def reject(code: int, reason: str, message: str) -> Rejection:
    return Rejection(code, reason, message)


def parse_submit(params: list[object]) -> tuple[str, str, bytes, int, int] | Rejection:
    """The codec has checked the count and types (strings, hex); what is left is the sizes."""
    worker, job_id, extranonce2_hex, ntime_hex, nonce_hex = params[:5]
    assert isinstance(worker, str) and isinstance(job_id, str) and isinstance(extranonce2_hex, str)
    assert isinstance(ntime_hex, str) and isinstance(nonce_hex, str)
    try:
        if len(ntime_hex) != 8 or len(nonce_hex) != 8:
            raise ValueError
        # The codec let only hex through (bytes.fromhex accepts it), so int(…, 16) reads exactly
        # these digits; one with spaces in it raises here.
        return worker, job_id, bytes.fromhex(extranonce2_hex), int(ntime_hex, 16), int(nonce_hex, 16)
    except ValueError:
        return reject(stratum.OTHER, MALFORMED, "malformed share: ntime and nonce must be 8 hex digits")


def check_ntime(job: ProxyJob, ntime: int) -> Rejection | None:
    if not job.job.ntime <= ntime <= job.job.ntime + NTIME_MAX_AHEAD_S:
        return reject(stratum.OTHER, BAD_NTIME, "ntime out of range")
    return None


def check_extranonce2(extranonce2: bytes, size: int) -> Rejection | None:
    if len(extranonce2) != size:
        return reject(stratum.OTHER, BAD_EXTRANONCE2, f"extranonce2 must be {size} bytes")
    return None


def judge(candidate: ShareCandidate, pow_hash: bytes) -> Verdict:
    value = hash_to_int(pow_hash)
    reached = hash_share_difficulty(value)
    if value > candidate.target:
        return Verdict(False, reached, False,
                       reject(stratum.LOW_DIFFICULTY, LOW_DIFFICULTY, "low difficulty share"))
    return Verdict(True, reached, value <= candidate.job.work.target)


def block_hash(candidate: ShareCandidate, pow_hash: bytes) -> str | None:
    """The block id when the share also meets the network target of its job's nbits (a block on
    whichever chain the job builds on), else None."""
    if hash_to_int(pow_hash) > bits_to_target(candidate.job.job.bits):
        return None
    return hash_to_hex(sha256d(candidate.header))


@dataclass(slots=True)
class JudgedShare:
    """A share's verdict, once, as every consumer of it gets it (the upstream it goes on to, the
    accounting, the miner's reply, the metrics and the ban policy): refused before its hash
    (`candidate` None) or judged by it."""

    ip: str
    worker: str
    upstream: str
    job_id: str
    """The proxy's job id (as the miner sent it: a refused share's may be made up)."""
    difficulty: float
    """The miner's difficulty for it."""
    verdict: Verdict
    now: float
    candidate: ShareCandidate | None = None
    coin: str | None = None
    block_hash: str | None = None
    """Set when the share also meets its job's network target: a block."""

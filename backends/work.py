"""What the miner hashes: a template (job + extranonce + target) cut into non-overlapping work units.

Pure and clock-free: callers pass `now`. Within one template, extranonce2 stays fixed while the
nonce range advances chunk by chunk, then extranonce2 steps to the next value; ntime follows the
clock from the job's ntime but never runs past ntime + 7200 (Litecoin Core's limit on future times).
"""

from dataclasses import dataclass

from mining.job import Job

NONCE_SPACE = 1 << 32
MAX_NTIME_ROLL_S = 7200


@dataclass(frozen=True, slots=True)
class WorkTemplate:
    job: Job
    extranonce1: bytes
    extranonce2_size: int
    difficulty: float
    target: int
    received_at: float  # the clock reading when the job arrived, for ntime rolling


@dataclass(frozen=True, slots=True)
class WorkUnit:
    template: WorkTemplate
    extranonce2: bytes
    ntime: int
    nonce_start: int
    nonce_count: int

    def header_prefix(self) -> bytes:
        job = self.template.job
        return job.header_prefix(job.merkle_root(self.template.extranonce1, self.extranonce2), self.ntime)


class Extranonce2Counter:
    """A counter of `size` bytes (little-endian on the wire, as cpuminer writes it), one per connection."""

    def __init__(self, size: int, start: int = 0) -> None:
        if size < 0:
            raise ValueError("extranonce2 size cannot be negative")
        self.size = size
        self._modulus = 1 << (8 * size)
        self._value = start % self._modulus

    def take(self) -> bytes:
        value = self._value
        self._value = (value + 1) % self._modulus
        return value.to_bytes(self.size, "little")


class WorkCursor:
    """Hands out the units of one template, each nonce of each extranonce2 once."""

    def __init__(self, template: WorkTemplate, counter: Extranonce2Counter) -> None:
        if counter.size != template.extranonce2_size:
            raise ValueError("counter size does not match the template's extranonce2 size")
        self.template = template
        self._counter = counter
        self._first = counter.take()
        self._extranonce2 = self._first
        self._next_nonce = 0

    def ntime_at(self, now: float) -> int:
        rolled = int(max(0.0, now - self.template.received_at))
        return self.template.job.ntime + min(rolled, MAX_NTIME_ROLL_S)

    def next_unit(self, count: int, now: float) -> WorkUnit | None:
        """The next `count` nonces (fewer at a nonce space's end); None once every extranonce2 is spent."""
        if count < 1:
            raise ValueError("count must be positive")
        if self._next_nonce >= NONCE_SPACE:
            extranonce2 = self._counter.take()
            if extranonce2 == self._first:  # the counter went all the way round
                return None
            self._extranonce2 = extranonce2
            self._next_nonce = 0
        start = self._next_nonce
        count = min(count, NONCE_SPACE - start)
        self._next_nonce = start + count
        return WorkUnit(self.template, self._extranonce2, self.ntime_at(now), start, count)

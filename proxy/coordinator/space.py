"""The nonce space one coordinator owns on one upstream job, cut into ranges that cannot overlap.

A position names one (extranonce2, nonce) pair: counter = position >> 32, nonce = position & 2^32-1,
and extranonce2 = coordinator id (the high `id_bytes`, big-endian) followed by the counter. A cursor
only moves forward, so every range starts where the previous one ended: two ranges of one
coordinator never overlap, and two coordinators never meet because their extranonce2 prefixes differ.
A range never crosses from one extranonce2 into the next, so it is one header prefix.
"""

from dataclasses import dataclass

NONCES_PER_EXTRANONCE2 = 1 << 32
_MAX_COUNTER_BITS = 32  # 2^64 positions per job: more than any fleet hashes before the job changes


@dataclass(frozen=True, slots=True)
class Range:
    position: int
    extranonce2: bytes
    nonce_start: int
    nonce_count: int

    @property
    def end(self) -> int:
        return self.position + self.nonce_count


class NonceSpace:
    def __init__(self, extranonce2_size: int, coordinator_id: int, id_bytes: int, position: int = 0) -> None:
        counter_bytes = extranonce2_size - id_bytes
        if counter_bytes < 1:
            raise ValueError(f"extranonce2 of {extranonce2_size} bytes leaves no counter after a "
                             f"{id_bytes}-byte coordinator id")
        self.prefix = coordinator_id.to_bytes(id_bytes, "big")
        self.counter_bytes = counter_bytes
        self.limit = 1 << (min(8 * counter_bytes, _MAX_COUNTER_BITS) + 32)
        if not 0 <= position <= self.limit:
            raise ValueError(f"position {position} outside this space")
        self.position = position  # everything below has been issued (or reserved before a restart)

    def extranonce2(self, counter: int) -> bytes:
        return self.prefix + counter.to_bytes(self.counter_bytes, "big")

    def take(self, count: int) -> Range | None:
        """The next `count` nonces (fewer at an extranonce2's end); None once the space is spent."""
        if count < 1:
            raise ValueError("count must be positive")
        if self.position >= self.limit:
            return None
        counter, nonce = divmod(self.position, NONCES_PER_EXTRANONCE2)
        count = min(count, NONCES_PER_EXTRANONCE2 - nonce)
        taken = Range(self.position, self.extranonce2(counter), nonce, count)
        self.position += count
        return taken

    def position_of(self, extranonce2: bytes, nonce: int) -> int | None:
        """The position of a share, or None when the extranonce2 is not from this space."""
        size = len(self.prefix) + self.counter_bytes
        if len(extranonce2) != size or not extranonce2.startswith(self.prefix):
            return None
        counter = int.from_bytes(extranonce2[len(self.prefix):], "big")
        return counter * NONCES_PER_EXTRANONCE2 + nonce

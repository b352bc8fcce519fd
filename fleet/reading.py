"""What one poll of a device says, in Qscrypt's units (H/s, °C, RPM), whatever the firmware."""

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Chain:
    """One hash board (a chain of chips)."""

    index: int
    hashrate_hs: float | None = None
    temp_board_c: float | None = None
    temp_chip_c: float | None = None
    hw_errors: int | None = None
    chips: int | None = None
    chips_bad: int | None = None
    frequency_mhz: float | None = None


@dataclass(frozen=True)
class PoolStat:
    index: int
    url: str
    user: str
    status: str
    active: bool
    accepted: int | None = None
    rejected: int | None = None
    stale: int | None = None
    difficulty_accepted: float | None = None
    difficulty_rejected: float | None = None


@dataclass(frozen=True)
class Reading:
    family: str
    """cgminer, bmminer (Bitmain's layout, whatever the binary is called) or bfgminer."""
    firmware: str
    model: str
    elapsed_s: float | None = None
    hashrate_hs: float | None = None
    """The device's current figure (its shortest window: 5 s, 20 s)."""
    hashrate_avg_hs: float | None = None
    """Since it started."""
    total_hashes: float | None = None
    """Hashes since it started (`Total MH`), for rates over any window between two polls."""
    hw_errors: int | None = None
    accepted: int | None = None
    rejected: int | None = None
    stale: int | None = None
    difficulty_accepted: float | None = None
    difficulty_rejected: float | None = None
    temp_max_c: float | None = None
    fans_rpm: tuple[int, ...] = ()
    chains: tuple[Chain, ...] = ()
    pools: tuple[PoolStat, ...] = ()
    rate_unit: str = "H"
    """What the device's rate fields were read as (a firmware's label is not always right)."""
    problems: tuple[str, ...] = ()
    """Fields that were missing or unreadable: the rest of the reading stands."""

    @property
    def chips_bad(self) -> int | None:
        counts = [c.chips_bad for c in self.chains if c.chips_bad is not None]
        return sum(counts) if counts else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["chips_bad"] = self.chips_bad
        data["fans_rpm"] = list(self.fans_rpm)
        data["chains"] = [asdict(c) for c in self.chains]
        data["pools"] = [asdict(p) for p in self.pools]
        data["problems"] = list(self.problems)
        return data

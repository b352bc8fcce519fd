"""The one check no firmware can fake: a device's own hashrate beside the hashrate the proxy
measures from the shares it accepted from the device's worker, over the same window. Pure.

A device says how many hashes it did (`Total MH`, cumulative) and how fast it hashes now; the
proxy knows the difficulty of every share it accepted, and a share of difficulty d takes d·65536
hashes on average (scrypt share difficulty, DESIGN.md), so Σd·65536 / window is the hashrate the
proxy saw. The proxy's figure is a count of random events: with n shares in the window its
relative error is about 1/√n, so the number of shares is reported with it."""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

HASHES_PER_DIFFICULTY = 65536.0


@dataclass(frozen=True)
class Sample:
    at: float  # unix time of the poll
    total_hashes: float | None
    hashrate_hs: float | None
    elapsed_s: float | None


@dataclass(frozen=True)
class DeviceWindow:
    start: float
    end: float
    hashrate_hs: float
    from_counter: bool
    """True when from the device's hash counter; False when the mean of its reported rates."""


def device_window(samples: Sequence[Sample], start: float, end: float) -> DeviceWindow | None:
    """The device's own hashrate between the first sample at or after `start` and the last at or
    before `end` (samples oldest first); None with fewer than two samples there. A restart between
    them (the counter or the uptime went back) leaves only the mean of the reported rates."""
    inside = [s for s in samples if start <= s.at <= end]
    if len(inside) < 2 or inside[-1].at <= inside[0].at:
        return None
    first, last = inside[0], inside[-1]
    span = last.at - first.at
    restarted = any(b.elapsed_s is not None and a.elapsed_s is not None and b.elapsed_s < a.elapsed_s
                    for a, b in pairwise(inside))
    if first.total_hashes is not None and last.total_hashes is not None and not restarted \
            and last.total_hashes >= first.total_hashes:
        return DeviceWindow(first.at, last.at, (last.total_hashes - first.total_hashes) / span, True)
    rates = [s.hashrate_hs for s in inside if s.hashrate_hs is not None]
    if not rates:
        return None
    return DeviceWindow(first.at, last.at, sum(rates) / len(rates), False)


def proxy_hashrate(difficulty_sum: float, seconds: float) -> float:
    return difficulty_sum * HASHES_PER_DIFFICULTY / seconds if seconds > 0 else 0.0


def disagreement(device_hs: float, proxy_hs: float) -> float | None:
    """(device − proxy) / device: 0.2 means the device claims 20 % more than its shares show
    (a firmware that over-reports, shares lost or refused); negative, the proxy sees more (another
    machine mining under the same worker name). None when the device reports nothing."""
    if device_hs <= 0:
        return None
    return (device_hs - proxy_hs) / device_hs

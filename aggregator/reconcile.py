"""Many sources' observations → one value per quantity, with the reason it was chosen.

The rule, per (subject, quantity):
1. Observations older than `stale_after_s` (by the source's own timestamp) are stale: left out.
2. If an authoritative source (the coin's own daemon) reported it, its value is used; other
   sources further than `band` from it are reported as outliers.
3. Otherwise the median of the sources is the reference; a value further than `band` (a fraction
   of the reference) from it is an outlier and is dropped, and the value is the median of the
   rest. Two sources that disagree by more than that leave nothing to trust: neither is used and
   the quantity is reported as a conflict (its old value stays, marked stale).
"""

import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from aggregator.model import HardwareInfo, Observation, SourceData, SubjectKind

Rule = Literal["authoritative", "median", "single"]
Key = tuple[SubjectKind, str, str]
"""(subject kind, subject, quantity)"""


@dataclass(frozen=True)
class Resolved:
    value: float
    rule: Rule
    used: tuple[Observation, ...]
    """The observations the value came from; their newest observed_at is the value's time."""

    @property
    def observed_at(self) -> datetime:
        return max(o.observed_at for o in self.used)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(sorted({o.source for o in self.used}))


@dataclass(frozen=True)
class Outlier:
    observation: Observation
    reference: float
    deviation: float
    """|value − reference| / reference"""


@dataclass(frozen=True)
class Conflict:
    key: Key
    observations: tuple[Observation, ...]


@dataclass
class Reconciliation:
    values: dict[Key, Resolved] = field(default_factory=dict)
    outliers: list[Outlier] = field(default_factory=list)
    stale: list[Observation] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    hardware: dict[str, HardwareInfo] = field(default_factory=dict)

    def of(self, kind: SubjectKind, subject: str) -> dict[str, Resolved]:
        """Quantity → resolved value for one subject."""
        return {q: r for (k, s, q), r in self.values.items() if k == kind and s == subject}

    def subjects(self, kind: SubjectKind) -> list[str]:
        return sorted({s for (k, s, _q) in self.values if k == kind})


def resolve(
    observations: list[Observation], authoritative: Collection[str], band: float
) -> tuple[Resolved | None, list[Outlier]]:
    """One quantity's value from fresh observations of it (see the module's rule)."""
    auth = [o for o in observations if o.source in authoritative]
    if auth:
        chosen = max(auth, key=lambda o: o.observed_at)
        outliers = [_outlier(o, chosen.value) for o in observations if o not in auth]
        return Resolved(chosen.value, "authoritative", (chosen,)), [o for o in outliers if o.deviation > band]
    if len(observations) == 1:
        return Resolved(observations[0].value, "single", (observations[0],)), []
    reference = statistics.median(o.value for o in observations)
    scored = [_outlier(o, reference) for o in observations]
    kept = tuple(s.observation for s in scored if s.deviation <= band)
    rejected = [s for s in scored if s.deviation > band]
    if not kept:
        return None, rejected
    return Resolved(statistics.median(o.value for o in kept), "median", kept), rejected


def _outlier(observation: Observation, reference: float) -> Outlier:
    deviation = abs(observation.value - reference) / reference if reference else float("inf")
    return Outlier(observation, reference, deviation)


def reconcile(
    data: Iterable[SourceData],
    *,
    now: datetime,
    stale_after_s: float,
    band: float,
    authoritative: Collection[str] = (),
) -> Reconciliation:
    result = Reconciliation()
    oldest = now - timedelta(seconds=stale_after_s)
    grouped: dict[Key, list[Observation]] = defaultdict(list)
    for source_data in data:
        for device in source_data.hardware:
            # The first source's spelling of a device's name wins; later ones only fill gaps.
            result.hardware.setdefault(device.key, device)
        for obs in source_data.observations:
            if obs.observed_at < oldest:
                result.stale.append(obs)
            else:
                grouped[(obs.subject_kind, obs.subject, obs.quantity)].append(obs)
    for key in sorted(grouped):
        resolved, outliers = resolve(grouped[key], authoritative, band)
        result.outliers.extend(outliers)
        if resolved is None:
            result.conflicts.append(Conflict(key, tuple(grouped[key])))
        else:
            result.values[key] = resolved
    return result

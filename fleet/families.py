"""One parser per firmware family, from the cgminer API's sections to a `Reading` in H/s.

The families share SUMMARY and POOLS (cgminer's layout, which bmminer and BFGMiner kept) and differ
in STATS:
- `bmminer`: Bitmain's firmwares (Antminer L3+, L7, S9; the binary is cgminer or bmminer). Its
  second STATS section has per-chain `chain_rate<i>`, `temp<i>` (board), `temp2_<i>` (chip),
  `chain_hw<i>`, `chain_acn<i>` (chips), `chain_acs<i>` (chip states: `o` good, `x` bad),
  `frequency<i>`, `fan<i>` (RPM) and `temp_max`. The scrypt Antminers label their rates `GHS` but
  report MH/s (../shared/vectors/asic/README.md).
- `cgminer`: stock cgminer; STATS has one section per device with driver-specific keys, read for
  whatever temperatures and fans it names.
- `bfgminer`: BFGMiner; SUMMARY has `MHS av`, `MHS 20s` (its log interval) and `MHS rolling`.

Rate fields are `<prefix>HS <window>` (`MHS av`, `GHS 5s`, `KHS 5s`…). A label is checked against
the device's own counters: `Total MH` / `Elapsed` is its average rate in MH/s, so an average rate
field a power of 1000 away from it was mislabelled, whatever the model. Without `Total MH` the
model decides (the scrypt Antminers' `GHS` is MH/s), and a configured `rate_unit` wins over both.

Nothing here raises for a missing or unreadable field: it is left None and named in `problems`.
Only an answer with no SUMMARY at all (or a failed STATUS) is unusable: `ReadingError`.
"""

import math
import re
from collections.abc import Mapping
from typing import Any

from fleet.cgminer import Reply, Section
from fleet.reading import Chain, PoolStat, Reading

UNITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
UNIT_NAMES = {"H": "", "kH": "K", "MH": "M", "GH": "G", "TH": "T", "PH": "P"}
_RATE = re.compile(r"^([KMGTP]?)HS (.+)$")
_CURRENT_WINDOWS = ("5s", "1m", "20s", "rolling", "30s", "5m", "15m")
_SCRYPT_ANTMINER = re.compile(r"antminer\s+l\d", re.IGNORECASE)
FAMILIES = ("cgminer", "bmminer", "bfgminer")


class ReadingError(ValueError):
    """The answers hold no usable reading."""


def family_of(description: str, stats: list[Section]) -> str:
    text = description.lower()
    if "bfgminer" in text:
        return "bfgminer"
    if "bmminer" in text:
        return "bmminer"
    for section in stats:
        if str(section.get("Type", "")).lower().startswith("antminer") or \
                any(k.startswith("chain_rate") for k in section):
            return "bmminer"
    return "cgminer"


def model_of(stats: list[Section], hint: str) -> str:
    for section in stats:
        if section.get("Type"):
            return str(section["Type"])
    return hint


class _Fields:
    """Reads typed values from sections, noting every field it could not read."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def number(self, section: Mapping[str, Any] | None, key: str, where: str,
               required: bool = False) -> float | None:
        if section is None or key not in section:
            if required:
                self.problems.append(f"{where}: no {key!r}")
            return None
        value = section[key]
        if isinstance(value, bool):
            value = int(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.problems.append(f"{where}: {key}={str(value)[:40]!r} is not a number")
            return None
        if not math.isfinite(number):
            self.problems.append(f"{where}: {key}={value!r} is not finite")
            return None
        return number

    def integer(self, section: Mapping[str, Any] | None, key: str, where: str,
                required: bool = False) -> int | None:
        number = self.number(section, key, where, required)
        return None if number is None else int(number)


def _rate_fields(section: Section) -> dict[str, tuple[str, Any]]:
    """window → (unit prefix, raw value) of every rate field."""
    found = {}
    for key, value in section.items():
        if match := _RATE.match(key):
            found[match.group(2)] = (match.group(1), value)
    return found


def _scale(prefix: str, family: str, model: str, override: str, summary: Section,
           fields: _Fields) -> tuple[float, str]:
    """H/s per unit of the device's rate fields, and the unit's name."""
    if override != "auto":
        return UNITS[UNIT_NAMES[override]], override
    labelled = UNITS[prefix]
    total_mh = fields.number(summary, "Total MH", "summary")
    elapsed = fields.number(summary, "Elapsed", "summary")
    average = None
    for key, value in summary.items():
        if (match := _RATE.match(key)) and match.group(2) == "av":
            try:
                average = float(value)
            except (TypeError, ValueError):
                average = None
    if total_mh and elapsed and average:
        implied = total_mh * 1e6 / elapsed  # H/s by the device's own hash counter
        ratio = average * labelled / implied
        if not 0.5 <= ratio <= 2:
            steps = round(math.log(ratio, 1000))
            if steps and 0.5 <= ratio / 1000.0**steps <= 2:
                scale = labelled / 1000.0**steps
                name = _unit_name(scale)
                fields.problems.append(f"rates labelled {prefix}HS are {name}/s (Total MH / Elapsed says so)")
                return scale, name
            fields.problems.append(
                f"rates labelled {prefix}HS disagree with Total MH / Elapsed by {ratio:.3g}x")
    elif family == "bmminer" and prefix == "G" and _SCRYPT_ANTMINER.search(model):
        fields.problems.append(f"rates labelled GHS are MH/s on {model}")
        return 1e6, "MH"
    return labelled, _unit_name(labelled)


def _unit_name(scale: float) -> str:
    for name, prefix in UNIT_NAMES.items():
        if UNITS[prefix] == scale:
            return name
    return f"{scale:g}H"


def _pools(reply: Reply | None, fields: _Fields) -> tuple[PoolStat, ...]:
    if reply is None:
        return ()
    items = reply.all("POOLS")
    pools = []
    alive = [p for p in items if str(p.get("Status", "")) == "Alive"]
    # The pool it mines on: the stratum-active one; without that flag, the alive one first by priority.
    active_flags = [str(p.get("Stratum Active", "")).lower() == "true" for p in items]
    fallback = min(alive, key=lambda p: fields.number(p, "Priority", "pools") or 0.0) if alive else None
    for i, p in enumerate(items):
        where = f"pool {p.get('POOL', i)}"
        index = fields.integer(p, "POOL", where)
        pools.append(PoolStat(
            index=i if index is None else index,
            url=str(p.get("URL", "")), user=str(p.get("User", "")), status=str(p.get("Status", "")),
            active=active_flags[i] if any(active_flags) else p is fallback,
            accepted=fields.integer(p, "Accepted", where), rejected=fields.integer(p, "Rejected", where),
            stale=fields.integer(p, "Stale", where),
            difficulty_accepted=fields.number(p, "Difficulty Accepted", where),
            difficulty_rejected=fields.number(p, "Difficulty Rejected", where)))
    return tuple(pools)


def _chip_states(value: Any) -> tuple[int, int] | None:
    """(chips, bad chips) from `chain_acs`: `o` a good chip, `x` (or `-`) a bad or missing one."""
    if not isinstance(value, str):
        return None
    good = value.count("o")
    bad = value.count("x") + value.count("-")
    return (good + bad, bad) if good + bad else None


def _bitmain_chains(stats: Section, scale: float, fields: _Fields) -> tuple[Chain, ...]:
    indices = sorted({int(m.group(1)) for k in stats
                      if (m := re.match(r"^chain_(?:rate|acn|acs|hw)(\d+)$", k))})
    chains = []
    for i in indices:
        where = f"chain {i}"
        rate = fields.number(stats, f"chain_rate{i}", where)
        states = _chip_states(stats.get(f"chain_acs{i}"))
        chips = fields.integer(stats, f"chain_acn{i}", where)
        board = fields.number(stats, f"temp{i}", where)
        chip = fields.number(stats, f"temp2_{i}", where)
        chains.append(Chain(
            index=i, hashrate_hs=None if rate is None else rate * scale,
            # A board that is not there reads 0 °C.
            temp_board_c=board or None, temp_chip_c=chip or None,
            hw_errors=fields.integer(stats, f"chain_hw{i}", where),
            chips=chips if chips is not None else (states[0] if states else None),
            chips_bad=states[1] if states else None,
            frequency_mhz=fields.number(stats, f"frequency{i}", where)))
    return tuple(chains)


def _fans(stats: list[Section], fields: _Fields) -> tuple[int, ...]:
    fans = []
    for section in stats:
        for key in section:
            if re.fullmatch(r"(?i)fan\d*", key):
                rpm = fields.integer(section, key, "stats")
                if rpm:  # 0: no fan on that header
                    fans.append(rpm)
    return tuple(fans)


def _temperatures(stats: list[Section], fields: _Fields) -> list[float]:
    temps = []
    for section in stats:
        for key in section:
            if re.fullmatch(r"(?i)(temp\w*|temperature)", key) and not key.lower().startswith("temp_num"):
                value = fields.number(section, key, "stats")
                if value:
                    temps.append(value)
    return temps


def read(replies: Mapping[str, Reply], *, model_hint: str = "", rate_unit: str = "auto") -> Reading:
    """The reading in `replies` (summary, and pools and stats where they were asked and answered)."""
    summary_reply = replies.get("summary")
    if summary_reply is None:
        raise ReadingError("no summary answer")
    if summary_reply.status.failed:
        s = summary_reply.status
        raise ReadingError(f"summary answered STATUS={s.code} (code {s.number}): {s.message or 'no message'}")
    summary = summary_reply.first("SUMMARY")
    if summary is None:
        raise ReadingError("summary answer has no SUMMARY section")
    fields = _Fields()
    problems = fields.problems
    stats_reply, pools_reply = replies.get("stats"), replies.get("pools")
    for name, reply in (("stats", stats_reply), ("pools", pools_reply)):
        if reply is not None and reply.status.failed:
            problems.append(f"{name} answered STATUS={reply.status.code}: {reply.status.message}")
    stats = stats_reply.all("STATS") if stats_reply and not stats_reply.status.failed else []
    pools_reply = pools_reply if pools_reply and not pools_reply.status.failed else None

    family = family_of(summary_reply.status.description, stats)
    model = model_of(stats, model_hint)
    rates = _rate_fields(summary)
    if not rates:
        problems.append("summary: no hashrate field (e.g. 'MHS av')")
    prefixes = {prefix for prefix, _ in rates.values()}
    if len(prefixes) > 1:
        units = ", ".join(sorted(p + "HS" for p in prefixes))
        problems.append(f"summary: rate fields in several units ({units})")
    prefix = next(iter(rates.values()))[0] if rates else "M"
    scale, unit = _scale(prefix, family, model, rate_unit, summary, fields)

    def rate(window: str) -> float | None:
        if window not in rates:
            return None
        p, raw = rates[window]
        value = fields.number({window: raw}, window, f"summary {p}HS")
        # Each field in its own label's unit, corrected by the same factor as the others.
        return None if value is None else value * scale * UNITS[p] / UNITS[prefix]

    current = next((r for w in _CURRENT_WINDOWS if (r := rate(w)) is not None), None)
    total_mh = fields.number(summary, "Total MH", "summary")

    bitmain = next((s for s in stats if any(k.startswith("chain_") for k in s)), None)
    chains = _bitmain_chains(bitmain, scale, fields) if family == "bmminer" and bitmain else ()
    temps = _temperatures(stats, fields)
    temp_max = None
    if bitmain is not None and (t := fields.number(bitmain, "temp_max", "stats")):
        temp_max = t
    chain_temps = [t for c in chains for t in (c.temp_chip_c, c.temp_board_c) if t]
    if chain_temps or temps:
        temp_max = max([*chain_temps, *temps, *([temp_max] if temp_max else [])])
    return Reading(
        family=family, firmware=summary_reply.status.description, model=model,
        elapsed_s=fields.number(summary, "Elapsed", "summary", required=True),
        hashrate_hs=current, hashrate_avg_hs=rate("av"),
        total_hashes=None if total_mh is None else total_mh * 1e6,
        hw_errors=fields.integer(summary, "Hardware Errors", "summary", required=True),
        accepted=fields.integer(summary, "Accepted", "summary", required=True),
        rejected=fields.integer(summary, "Rejected", "summary", required=True),
        stale=fields.integer(summary, "Stale", "summary"),
        difficulty_accepted=fields.number(summary, "Difficulty Accepted", "summary"),
        difficulty_rejected=fields.number(summary, "Difficulty Rejected", "summary"),
        temp_max_c=temp_max, fans_rpm=_fans(stats, fields), chains=chains,
        pools=_pools(pools_reply, fields), rate_unit=unit, problems=tuple(problems))

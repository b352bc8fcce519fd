"""hashrate.no device estimates: GET /v1/asicEstimates?apiKey=KEY&powerCost=0.1.

The answer is keyed by device, as public clients of /v1/gpuEstimates read it:
{"l7": {"device": {"name": "Antminer L7", "brand": "bitmain"},
        "revenue": {"coin": "LTC", "revenueUSD": 11.2, "profitUSD": 2.98, ...},
        "profit": {...}, "revenue24": {...}, "profit24": {...}}, ...};
errors are {"title": "...", "detail": "..."}. The free plan allows 100 calls a month.

Each block names the coin it estimates; a tracked coin gives the block's device figures for that
coin's algorithm: `hashrate` in H/s and `power` in W. Those two field names are not in the public
client code this parser was checked against (the fixture is ours); when `power` is absent it is
derived from what is documented: revenueUSD − profitUSD is the day's power cost at `powerCost`
USD/kWh, so power_w = (revenueUSD − profitUSD) / (powerCost · 24) · 1000.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregator.config import CoinConfig, SourceConfig
from aggregator.http import HttpClient
from aggregator.model import (
    HardwareInfo,
    Observation,
    ParseError,
    SourceData,
    SourceKind,
    hardware_key,
    normalize_algorithm,
)
from aggregator.parsing import expect_dict, number, positive
from aggregator.sources.base import utcnow

DEFAULT_BASE_URL = "https://api.hashrate.no"
POWER_COST_USD_PER_KWH = 0.1
"""Asked for so that revenue − profit measures power; any positive price would do."""
_BLOCKS = ("revenue", "profit", "revenue24", "profit24")


def _power_w(block: dict[str, Any], power_cost: float) -> float | None:
    power = positive(block.get("power"))
    if power is not None:
        return power
    revenue, profit = number(block.get("revenueUSD")), number(block.get("profitUSD"))
    if revenue is None or profit is None or revenue < profit or power_cost <= 0:
        return None
    return (revenue - profit) / (power_cost * 24.0) * 1000.0 or None


def parse_estimates(
    payload: Any,
    coins: Iterable[CoinConfig],
    observed_at: datetime,
    power_cost: float = POWER_COST_USD_PER_KWH,
    source: str = "hashrate_no",
) -> SourceData:
    body = expect_dict(payload, "hashrate.no estimates")
    if "title" in body and "detail" in body:
        raise ParseError(f"hashrate.no error: {body['title']}: {body['detail']}")
    algorithm_of = {c.symbol.upper(): normalize_algorithm(c.algorithm) for c in coins}
    observations: list[Observation] = []
    devices: list[HardwareInfo] = []
    warnings: list[str] = []
    for device_id, entry in body.items():
        device = entry.get("device") if isinstance(entry, dict) else None
        name = device.get("name") if isinstance(device, dict) else None
        if not isinstance(name, str) or not name.strip():
            warnings.append(f"{device_id}: no device name")
            continue
        key = hardware_key(name)
        seen: set[str] = set()
        for block_name in _BLOCKS:
            block = entry.get(block_name)
            if not isinstance(block, dict) or not isinstance(block.get("coin"), str):
                continue
            # A merged-mining estimate names "LTC+DOGE"; the algorithm is the first coin's.
            algorithm = algorithm_of.get(block["coin"].split("+")[0].strip().upper())
            if algorithm is None or algorithm in seen:
                continue
            hashrate = positive(block.get("hashrate"))
            if hashrate is None:
                warnings.append(f"{name} {block_name}: no usable hashrate ({block.get('hashrate')!r})")
                continue
            seen.add(algorithm)
            subject = f"{key}/{algorithm}"
            observations.append(
                Observation(source, "hardware", subject, "hashrate_hs", hashrate, observed_at)
            )
            power = _power_w(block, power_cost)
            if power is not None:
                observations.append(Observation(source, "hardware", subject, "power_w", power, observed_at))
        if seen:
            devices.append(HardwareInfo(key, name.strip(), str(device.get("brand") or ""), "asic"))
    if not observations:
        raise ParseError(f"hashrate.no: no device mines a tracked coin ({'; '.join(warnings) or 'none'})")
    return SourceData(source, "hardware", tuple(observations), tuple(devices), tuple(warnings))


@dataclass
class HashrateNo:
    config: SourceConfig
    coins: tuple[CoinConfig, ...]
    api_key: str = ""
    name: str = "hashrate_no"
    kind: SourceKind = "hardware"
    authoritative: bool = False

    async def fetch(self, http: HttpClient) -> SourceData:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        params = {"powerCost": str(POWER_COST_USD_PER_KWH)}
        if self.api_key:
            params["apiKey"] = self.api_key
        payload = await http.get_json(f"{base}/v1/asicEstimates", params=params)
        return parse_estimates(payload, self.coins, utcnow(), POWER_COST_USD_PER_KWH, self.name)

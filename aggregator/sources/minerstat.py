"""Minerstat: coins (GET /v2/coins?list=LTC,DOGE) and hardware (GET /v2/hardware?type=asic).

Both need an API key in the X-API-Key header (401 without; 402 once the monthly quota is spent).

Coins answer: [{"coin": "LTC", "type": "coin", "algorithm": "Scrypt", "network_hashrate": 2.55e15,
"difficulty": 89123456.1, "reward": 2.2e-13, "reward_unit": "LTC", "reward_block": 6.25,
"price": 84.1, "updated": 1732400000}, ...]: hashrate in H/s, price in USD, -1 for "no data";
`reward` is coins per H/s per hour, not used (difficulty and reward_block say the same).

Hardware answer: [{"name": "Antminer L7", "type": "asic", "brand": "antminer",
"algorithms": {"Scrypt": {"hashrate": 9500000000, "power": 3425}}}, ...]: H/s and W.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregator.config import CoinConfig, SourceConfig
from aggregator.http import HttpClient
from aggregator.model import (
    CoinId,
    HardwareInfo,
    Observation,
    ParseError,
    SourceData,
    SourceKind,
    hardware_key,
    normalize_algorithm,
)
from aggregator.parsing import expect_list, positive
from aggregator.sources.base import coin_fields, from_unix, utcnow

DEFAULT_BASE_URL = "https://api.minerstat.com"

_COIN_FIELDS = {
    "price": "price_usd",
    "difficulty": "difficulty",
    "reward_block": "block_reward",
    "network_hashrate": "network_hashrate_hs",
}


def _check_error(payload: Any, what: str) -> None:
    if isinstance(payload, dict):
        message = payload.get("error") or payload.get("message") or payload
        raise ParseError(f"{what} error: {message}")


def parse_coins(
    payload: Any, coins: Iterable[CoinConfig], observed_at: datetime, source: str = "minerstat"
) -> SourceData:
    _check_error(payload, "minerstat coins")
    entries = expect_list(payload, "minerstat coins")
    wanted = {CoinId.of(c.symbol, c.algorithm) for c in coins}
    observations: list[Observation] = []
    warnings: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("coin"), str):
            warnings.append(f"entry without a coin: {str(entry)[:60]}")
            continue
        if entry.get("type", "coin") != "coin":  # multipools (NiceHash…) share the list
            continue
        coin_id = CoinId.of(entry["coin"], str(entry.get("algorithm", "")))
        if coin_id not in wanted:
            continue
        at = from_unix(positive(entry.get("updated"))) or observed_at
        coin_fields(source, coin_id, entry, _COIN_FIELDS, at, observations, warnings)
    if not observations:
        raise ParseError(
            f"minerstat coins: nothing usable for the tracked coins ({'; '.join(warnings) or 'none'})"
        )
    return SourceData(source, "network", tuple(observations), warnings=tuple(warnings))


def parse_hardware(
    payload: Any, algorithms: Iterable[str], observed_at: datetime, source: str = "minerstat_hardware"
) -> SourceData:
    """Hashrate and power of every device that mines one of `algorithms`."""
    _check_error(payload, "minerstat hardware")
    entries = expect_list(payload, "minerstat hardware")
    wanted = {normalize_algorithm(a) for a in algorithms}
    observations: list[Observation] = []
    devices: list[HardwareInfo] = []
    warnings: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            warnings.append(f"entry without a name: {str(entry)[:60]}")
            continue
        algos = entry.get("algorithms")
        if not isinstance(algos, dict):
            warnings.append(f"{entry['name']}: no algorithms table")
            continue
        key = hardware_key(entry["name"])
        found = False
        for algo_name, figures in algos.items():
            algorithm = normalize_algorithm(algo_name)
            if algorithm not in wanted:
                continue
            hashrate = positive(figures.get("hashrate")) if isinstance(figures, dict) else None
            if hashrate is None:
                warnings.append(f"{entry['name']} {algo_name}: no usable hashrate")
                continue
            subject = f"{key}/{algorithm}"
            observations.append(
                Observation(source, "hardware", subject, "hashrate_hs", hashrate, observed_at)
            )
            power = positive(figures.get("power"))
            if power is not None:
                observations.append(Observation(source, "hardware", subject, "power_w", power, observed_at))
            found = True
        if found:
            kind = str(entry.get("type") or "asic").lower()
            devices.append(HardwareInfo(key, entry["name"].strip(), str(entry.get("brand") or ""), kind))
    if not observations:
        raise ParseError(
            f"minerstat hardware: no device for {sorted(wanted)} ({'; '.join(warnings) or 'none'})"
        )
    return SourceData(source, "hardware", tuple(observations), tuple(devices), tuple(warnings))


def _headers(api_key: str) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


@dataclass
class Minerstat:
    config: SourceConfig
    coins: tuple[CoinConfig, ...]
    api_key: str = ""
    name: str = "minerstat"
    kind: SourceKind = "network"
    authoritative: bool = False

    async def fetch(self, http: HttpClient) -> SourceData:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        params = {"list": ",".join(c.symbol for c in self.coins)}
        payload = await http.get_json(f"{base}/v2/coins", params=params, headers=_headers(self.api_key))
        return parse_coins(payload, self.coins, utcnow(), self.name)


@dataclass
class MinerstatHardware:
    config: SourceConfig
    algorithms: tuple[str, ...]
    hardware_type: str = "asic"
    api_key: str = ""
    name: str = "minerstat_hardware"
    kind: SourceKind = "hardware"
    authoritative: bool = False

    async def fetch(self, http: HttpClient) -> SourceData:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        params = {"type": self.hardware_type} if self.hardware_type else None
        payload = await http.get_json(f"{base}/v2/hardware", params=params, headers=_headers(self.api_key))
        return parse_hardware(payload, self.algorithms, utcnow(), self.name)

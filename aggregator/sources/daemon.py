"""A coin's own node over JSON-RPC: the authoritative source for its network values.

`getmininginfo` gives {"blocks", "difficulty", "networkhashps", ...}; `getblocktemplate` with the
coin's rules (Litecoin Core: {"rules": ["mweb", "segwit"]}) gives `coinbasevalue`, the next
block's subsidy plus fees in satoshis, and its `height`. The block time is the coin's protocol
target from the configuration: no RPC reports it. A node that cannot make a template (no peer:
-9, initial sync: -10) still yields difficulty and hashrate.

RPC errors come back as HTTP 500 (404 for an unknown method) with {"result": null, "error":
{"code": -10, "message": "..."}}.
"""

from dataclasses import dataclass
from datetime import datetime
from itertools import count
from typing import Any

import aiohttp

from aggregator.config import CoinConfig, SourceConfig
from aggregator.http import HttpClient
from aggregator.model import CoinId, Observation, ParseError, SourceData, SourceKind
from aggregator.parsing import expect_dict, number, positive
from aggregator.sources.base import utcnow

SATOSHIS_PER_COIN = 100_000_000
_RPC_ERROR_STATUS = (400, 404, 500)


class RpcError(Exception):
    def __init__(self, method: str, code: int | None, message: str) -> None:
        super().__init__(f"{method}: RPC error {code}: {message}")
        self.code = code


def rpc_result(payload: Any, method: str) -> Any:
    body = expect_dict(payload, f"{method} reply")
    error = body.get("error")
    if error:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise RpcError(method, code, str(message))
    if "result" not in body:
        raise ParseError(f"{method}: reply has neither result nor error")
    return body["result"]


def parse_mining_info(
    info: Any, template: Any, coin: CoinConfig, observed_at: datetime, source: str
) -> SourceData:
    """Observations from a getmininginfo result and a getblocktemplate result (None if it failed)."""
    info = expect_dict(info, "getmininginfo result")
    subject = str(CoinId.of(coin.symbol, coin.algorithm))
    values: dict[str, float | None] = {
        "difficulty": positive(info.get("difficulty")),
        "network_hashrate_hs": positive(info.get("networkhashps")),
        "height": number(info.get("blocks")),
        "block_time_s": positive(coin.block_time_s),
    }
    if values["difficulty"] is None:
        raise ParseError(f"getmininginfo: no usable difficulty ({info.get('difficulty')!r})")
    if template is not None:
        template = expect_dict(template, "getblocktemplate result")
        coinbase = positive(template.get("coinbasevalue"))
        if coinbase is None:
            raise ParseError(f"getblocktemplate: no usable coinbasevalue ({template.get('coinbasevalue')!r})")
        values["block_reward"] = coinbase / SATOSHIS_PER_COIN
        # The template is for the next block; the chain's height is one less.
        height = number(template.get("height"))
        if height is not None:
            values["height"] = height - 1
    observations = tuple(
        Observation(source, "coin", subject, quantity, value, observed_at)
        for quantity, value in values.items()
        if value is not None and value >= 0
    )
    return SourceData(source, "network", observations)


@dataclass
class Daemon:
    config: SourceConfig
    coin: CoinConfig
    name: str = ""
    kind: SourceKind = "network"
    authoritative: bool = True

    def __post_init__(self) -> None:
        self.name = self.name or f"daemon:{self.coin.symbol}"
        self._ids = count(1)

    async def fetch(self, http: HttpClient) -> SourceData:
        info = await self._call(http, "getmininginfo")
        warnings: tuple[str, ...] = ()
        template: Any = None
        try:
            params: list[Any] = [{"rules": list(self.coin.daemon_rules)}] if self.coin.daemon_rules else []
            template = await self._call(http, "getblocktemplate", *params)
        except RpcError as exc:
            warnings = (f"no block reward: {exc}",)
        data = parse_mining_info(info, template, self.coin, utcnow(), self.name)
        return SourceData(data.source, data.kind, data.observations, warnings=warnings)

    async def _call(self, http: HttpClient, method: str, *params: Any) -> Any:
        coin = self.coin
        headers = (
            {"Authorization": aiohttp.encode_basic_auth(coin.daemon_user, coin.daemon_password)}
            if coin.daemon_user
            else {}
        )
        payload = {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)}
        response = await http.request(
            "POST", self.coin.daemon_url, headers=headers, json_body=payload, pass_status=_RPC_ERROR_STATUS
        )
        return rpc_result(response.json(), method)

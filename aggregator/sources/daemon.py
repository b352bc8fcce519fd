"""A coin's own node over JSON-RPC: the authoritative source for its network values.

`getmininginfo` gives {"blocks", "difficulty", "networkhashps", ...}; `getblocktemplate` with the
coin's rules (Litecoin Core: {"rules": ["mweb", "segwit"]}) gives `coinbasevalue`, the next
block's subsidy plus fees in satoshis, and its `height`. The block time is the coin's protocol
target from the configuration: no RPC reports it. A node that cannot make a template (no peer:
-9, initial sync: -10) still yields difficulty and hashrate.

The JSON-RPC itself (request, credentials, typed errors) is `qscrypt.jsonrpc`'s; the requests go
through the aggregator's HTTP path like every other source's, for its timeout, retries and rate
limit. RPC errors come back as HTTP 500 (404 for an unknown method) with a JSON body.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregator.config import CoinConfig, SourceConfig
from aggregator.http import HttpClient
from aggregator.model import CoinId, Observation, ParseError, SourceData, SourceKind
from aggregator.parsing import expect_dict, number, positive
from aggregator.sources.base import utcnow
from qscrypt import jsonrpc

SATOSHIS_PER_COIN = 100_000_000
_RPC_ERROR_STATUS = (400, 404, 500)


def rpc_result(payload: Any, method: str) -> Any:
    """The result of a decoded reply; an error object raises `jsonrpc.RpcCallError`, and a reply
    that is not JSON-RPC is this source's ParseError, like any other source's unexpected answer."""
    try:
        return jsonrpc.result_of(method, payload)
    except jsonrpc.RpcTransportError as exc:
        raise ParseError(str(exc)) from None


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

    async def fetch(self, http: HttpClient) -> SourceData:
        info = await self._call(http, "getmininginfo")
        warnings: tuple[str, ...] = ()
        template: Any = None
        try:
            params: list[Any] = [{"rules": list(self.coin.daemon_rules)}] if self.coin.daemon_rules else []
            template = await self._call(http, "getblocktemplate", *params)
        except jsonrpc.RpcCallError as exc:
            warnings = (f"no block reward: {exc}",)
        data = parse_mining_info(info, template, self.coin, utcnow(), self.name)
        return SourceData(data.source, data.kind, data.observations, warnings=warnings)

    async def _call(self, http: HttpClient, method: str, *params: Any) -> Any:
        coin = self.coin
        headers = (
            {"Authorization": jsonrpc.basic_auth(coin.daemon_user, coin.daemon_password)}
            if coin.daemon_user
            else {}
        )
        response = await http.request(
            "POST", coin.daemon_url, headers=headers, json_body=jsonrpc.request(method, params),
            pass_status=_RPC_ERROR_STATUS,
        )
        return rpc_result(response.json(), method)

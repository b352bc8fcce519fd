"""The one JSON-RPC client (qscrypt.jsonrpc) against a real Litecoin Core regtest node, sync and async."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qscrypt.devnet.litecoind import WALLET, RegtestPair, free_ports
from qscrypt.jsonrpc import JsonRpcClient, RpcAuthError, RpcCallError, RpcTransportError

_METHOD_NOT_FOUND = -32601
_INVALID_ADDRESS = -5


def _sync(client: JsonRpcClient) -> Callable[..., Any]:
    async def call(method: str, *params: Any, timeout_s: float | None = None) -> Any:
        return client.call(method, *params, timeout_s=timeout_s)
    return call


def _async(client: JsonRpcClient) -> Callable[..., Any]:
    return client.acall


@pytest.fixture(params=["sync", "async"])
def way(request: pytest.FixtureRequest) -> Callable[[JsonRpcClient], Callable[..., Any]]:
    """Each test runs once through `call` (http.client) and once through `acall` (aiohttp)."""
    return _sync if request.param == "sync" else _async


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


async def test_results_and_typed_call_errors(litecoin_pair: RegtestPair, way: Callable[..., Any]) -> None:
    client = JsonRpcClient(litecoin_pair.rpc_url(0), litecoin_pair.user, litecoin_pair.password)
    wallet_client = client.for_wallet(WALLET)
    call, wallet = way(client), way(wallet_client)
    try:
        assert await call("getblockcount") == litecoin_pair.height(0)
        with pytest.raises(RpcCallError, match="nosuchmethod: RPC error -32601: Method not found") as err:
            await call("nosuchmethod")
        assert (err.value.method, err.value.code) == ("nosuchmethod", _METHOD_NOT_FOUND)
        address = await wallet("getnewaddress")
        assert (await wallet("getaddressinfo", address))["ismine"] is True
        with pytest.raises(RpcCallError) as err:
            await wallet("getaddressinfo", "not-an-address")
        assert err.value.code == _INVALID_ADDRESS
    finally:
        await client.close()
        await wallet_client.close()


async def test_refused_credentials_are_an_auth_error(
    litecoin_pair: RegtestPair, way: Callable[..., Any]
) -> None:
    client = JsonRpcClient(litecoin_pair.rpc_url(0), litecoin_pair.user, "wrong")
    try:
        with pytest.raises(RpcAuthError, match=r"getblockcount: .* refused the RPC credentials \(HTTP 401\)"):
            await way(client)("getblockcount")
    finally:
        await client.close()


async def test_a_new_cookie_is_read_again_after_a_401(
    litecoin_pair: RegtestPair, tmp_path: Path, way: Callable[..., Any]
) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text(f"{litecoin_pair.user}:stale\n")
    client = JsonRpcClient(litecoin_pair.rpc_url(0), cookie_file=cookie)
    call = way(client)
    try:
        with pytest.raises(RpcAuthError, match="HTTP 401"):
            await call("getblockcount")
        # What a daemon restart does: a new secret in the same file, the client still holding the old.
        cookie.write_text(f"{litecoin_pair.user}:{litecoin_pair.password}\n")
        assert await call("getblockcount") == litecoin_pair.height(0)
    finally:
        await client.close()


async def test_an_unusable_cookie_file_is_an_auth_error(tmp_path: Path, way: Callable[..., Any]) -> None:
    # Nothing is sent before the credentials are known, so no daemon is needed here.
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    with pytest.raises(RpcAuthError, match=f"cannot read RPC cookie file {tmp_path / 'absent'}"):
        await way(JsonRpcClient(url, cookie_file=tmp_path / "absent"))("getblockcount")
    cookie = tmp_path / ".cookie"
    cookie.write_text("no separator")
    with pytest.raises(RpcAuthError, match=f"RPC cookie file {cookie} does not hold user:password"):
        await way(JsonRpcClient(url, cookie_file=cookie))("getblockcount")


async def test_no_usable_answer_is_a_transport_error(
    litecoin_pair: RegtestPair, silent_port: int, way: Callable[..., Any]
) -> None:
    closed = JsonRpcClient(f"http://127.0.0.1:{free_ports(1)[0]}")
    silent = JsonRpcClient(f"http://127.0.0.1:{silent_port}")
    # Litecoin Core answers a path it does not serve with an empty 404: HTTP, but not JSON-RPC.
    elsewhere = JsonRpcClient(f"{litecoin_pair.rpc_url(0)}/nothing-here", litecoin_pair.user,
                              litecoin_pair.password)
    try:
        with pytest.raises(RpcTransportError, match=f"getblockcount: {re.escape(closed.url)}: "):
            await way(closed)("getblockcount")
        with pytest.raises(RpcTransportError, match=r"getblockcount: no answer from .* within 0\.2 s"):
            await way(silent)("getblockcount", timeout_s=0.2)
        with pytest.raises(RpcTransportError, match="getblockcount: HTTP 404, not JSON-RPC"):
            await way(elsewhere)("getblockcount")
    finally:
        for client in (closed, silent, elsewhere):
            await client.close()

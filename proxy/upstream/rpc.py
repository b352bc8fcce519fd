"""A small async JSON-RPC client for coin daemons (Litecoin Core, Dogecoin Core and their kin).

Bitcoin-family daemons speak JSON-RPC 1.0 over HTTP with Basic auth: user/password from their
config, or the `__cookie__:secret` line they write to a cookie file on every start. RPC errors
come back as HTTP 500 (404 for an unknown method) with a JSON body, so the body decides, not the
status. The errors raised tell the three cases apart, because the caller reacts differently:
`RpcTransportError` (unreachable, timed out, overloaded: retry), `RpcAuthError` (wrong
credentials: retrying will not help until someone fixes them) and `RpcCallError` (the daemon
answered with an error object).
"""

import base64
import itertools
import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp


class RpcError(Exception):
    """Any failure of a call; see the subclasses."""


class RpcTransportError(RpcError):
    """No usable answer: connection refused or reset, timeout, an HTTP error without JSON-RPC."""


class RpcAuthError(RpcError):
    """The daemon refused the credentials (HTTP 401) or this client's address (HTTP 403)."""


class RpcCallError(RpcError):
    """The daemon answered with a JSON-RPC error object."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: RPC error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


class JsonRpcClient:
    """One keep-alive HTTP session to one daemon; safe to use from concurrent tasks."""

    def __init__(self, url: str, user: str = "", password: str = "", cookie_file: Path | None = None,
                 timeout_s: float = 15.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._cookie_file = cookie_file
        # The Authorization header; from a cookie file, read at the first call.
        self._auth = None if cookie_file is not None else _basic_auth(user, password)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def call(self, method: str, *params: Any, timeout_s: float | None = None) -> Any:
        body = json.dumps({"jsonrpc": "1.0", "id": next(self._ids), "method": method,
                           "params": list(params)}).encode()
        status, payload = await self._post(method, body, timeout_s or self.timeout_s, fresh_auth=False)
        if status == HTTPStatus.UNAUTHORIZED and self._cookie_file is not None:
            # The daemon writes a new cookie on every start: read it again before giving up.
            status, payload = await self._post(method, body, timeout_s or self.timeout_s, fresh_auth=True)
        return _result(method, status, payload)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, method: str, body: bytes, timeout_s: float, fresh_auth: bool) -> tuple[int, bytes]:
        auth = self._credentials(fresh_auth)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self.url, data=body, headers={"Authorization": auth, "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                return response.status, await response.read()
        except TimeoutError:
            raise RpcTransportError(f"{method}: no answer from {self.url} within {timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise RpcTransportError(f"{method}: {self.url}: {exc or type(exc).__name__}") from None

    def _credentials(self, fresh: bool) -> str:
        if self._cookie_file is not None and (self._auth is None or fresh):
            try:
                text = self._cookie_file.read_text().strip()
            except OSError as exc:
                raise RpcAuthError(
                    f"cannot read RPC cookie file {self._cookie_file}: {exc.strerror}") from None
            user, separator, password = text.partition(":")
            if not separator:
                raise RpcAuthError(f"RPC cookie file {self._cookie_file} does not hold user:password")
            self._auth = _basic_auth(user, password)
        assert self._auth is not None
        return self._auth


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _result(method: str, status: int, payload: bytes) -> Any:
    if status == HTTPStatus.UNAUTHORIZED:
        raise RpcAuthError(f"{method}: the daemon refused the RPC credentials (HTTP 401)")
    if status == HTTPStatus.FORBIDDEN:
        raise RpcAuthError(f"{method}: the daemon refused this client's address (HTTP 403, see rpcallowip)")
    try:
        reply = json.loads(payload)
    except ValueError:
        # e.g. 503 "Work queue depth exceeded" from a daemon under load: worth retrying.
        text = payload[:200].decode("utf-8", "replace").strip()
        raise RpcTransportError(f"{method}: HTTP {status}, not JSON-RPC: {text!r}") from None
    if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
        raise RpcTransportError(f"{method}: HTTP {status}, not a JSON-RPC reply")
    error = reply.get("error")
    if error:
        if isinstance(error, dict):
            code = error.get("code")
            raise RpcCallError(method, code if isinstance(code, int) else 0, str(error.get("message", "")))
        raise RpcCallError(method, 0, str(error))
    return reply.get("result")


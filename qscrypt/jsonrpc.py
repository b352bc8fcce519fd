"""JSON-RPC over HTTP to coin daemons (Litecoin Core, Dogecoin Core and their kin): the one client.

Bitcoin-family daemons speak JSON-RPC 1.0 over HTTP with Basic auth: user/password from their
config, or the `__cookie__:secret` line they write to a cookie file on every start. RPC errors
come back as HTTP 500 (404 for an unknown method) with a JSON body, so the body decides, not the
status. The errors raised tell three cases apart, because callers react differently:
`RpcTransportError` (unreachable, timed out, overloaded, an answer that is not JSON-RPC: retry),
`RpcAuthError` (wrong credentials: retrying will not help until someone fixes them) and
`RpcCallError` (the daemon answered with an error object: its code and message).

Two layers. The protocol (`request`, `basic_auth`, `result_of`, `decode_reply`) does no I/O, so a
caller with an HTTP path of its own (the aggregator's, which owns retries and rate limits for
every source) speaks the same JSON-RPC. `JsonRpcClient` carries it over HTTP: `acall` from async
code (the proxy's daemon upstream), `call` from sync code (tests, the local stack's setup) — the
same pair of names as the devnet's `rpc` and `arpc`.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

_ids = itertools.count(1)
_HEADERS = {"Content-Type": "application/json"}


class RpcError(Exception):
    """Any failure of a call; see the subclasses."""


class RpcTransportError(RpcError):
    """No usable answer: connection refused or reset, timeout, an HTTP answer that is not JSON-RPC."""


class RpcAuthError(RpcError):
    """The daemon refused the credentials (HTTP 401) or this client's address (HTTP 403)."""


class RpcCallError(RpcError):
    """The daemon answered with a JSON-RPC error object."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: RPC error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


# --- the protocol --------------------------------------------------------------------------------


def request(method: str, params: Sequence[Any]) -> dict[str, Any]:
    """One JSON-RPC 1.0 request object; ids are unique in the process, so in any connection."""
    return {"jsonrpc": "1.0", "id": next(_ids), "method": method, "params": list(params)}


def basic_auth(user: str, password: str) -> str:
    """The Authorization header value for a daemon's rpcuser/rpcpassword (or cookie) pair."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def result_of(method: str, reply: Any) -> Any:
    """The result of a decoded reply: RpcCallError for an error object, RpcTransportError if
    `reply` is not a JSON-RPC reply at all."""
    if not isinstance(reply, dict):
        raise RpcTransportError(f"{method}: not a JSON-RPC reply but a JSON {type(reply).__name__}")
    if "result" not in reply and "error" not in reply:
        raise RpcTransportError(f"{method}: not a JSON-RPC reply: it has neither result nor error")
    error = reply.get("error")
    if error:
        if isinstance(error, dict):
            code = error.get("code")
            raise RpcCallError(method, code if isinstance(code, int) else 0, str(error.get("message", "")))
        raise RpcCallError(method, 0, str(error))
    return reply.get("result")


def decode_reply(method: str, status: int, payload: bytes) -> Any:
    """The result of an HTTP answer to `method`, or the error it stands for."""
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
    return result_of(method, reply)


# --- the client ----------------------------------------------------------------------------------


class JsonRpcClient:
    """JSON-RPC to one daemon endpoint, sync or async; `acall` is safe from concurrent tasks.

    `keep_alive`: `acall` reuses one aiohttp session until `close`. Off, each `acall` opens and
    closes its own, for an owner that cannot close the client from the loop that used it (the
    devnet's nodes, driven from sync code, threads and tests' loops alike).
    """

    def __init__(self, url: str, user: str = "", password: str = "", *, cookie_file: Path | None = None,
                 timeout_s: float = 15.0, keep_alive: bool = True) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._user = user
        self._password = password
        self._cookie_file = cookie_file
        self._keep_alive = keep_alive
        # The Authorization header; from a cookie file, read at the first call.
        self._auth = None if cookie_file is not None else basic_auth(user, password)
        self._session: aiohttp.ClientSession | None = None

    def for_wallet(self, wallet: str) -> JsonRpcClient:
        """A client for one of the daemon's wallets (its `/wallet/<name>` endpoint), same credentials."""
        return JsonRpcClient(f"{self.url.rstrip('/')}/wallet/{quote(wallet, safe='')}", self._user,
                             self._password, cookie_file=self._cookie_file, timeout_s=self.timeout_s,
                             keep_alive=self._keep_alive)

    def call(self, method: str, *params: Any, timeout_s: float | None = None) -> Any:
        """Call from sync code: blocks the thread (never call it on an event loop; see `acall`)."""
        body = json.dumps(request(method, params)).encode()
        timeout = timeout_s or self.timeout_s
        status, payload = self._post_sync(method, body, timeout, fresh_auth=False)
        if self._cookie_stale(status):
            status, payload = self._post_sync(method, body, timeout, fresh_auth=True)
        return decode_reply(method, status, payload)

    async def acall(self, method: str, *params: Any, timeout_s: float | None = None) -> Any:
        body = json.dumps(request(method, params)).encode()
        timeout = timeout_s or self.timeout_s
        status, payload = await self._post(method, body, timeout, fresh_auth=False)
        if self._cookie_stale(status):
            status, payload = await self._post(method, body, timeout, fresh_auth=True)
        return decode_reply(method, status, payload)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _cookie_stale(self, status: int) -> bool:
        # The daemon writes a new cookie on every start: read it again before giving up.
        return status == HTTPStatus.UNAUTHORIZED and self._cookie_file is not None

    async def _post(self, method: str, body: bytes, timeout_s: float, fresh_auth: bool) -> tuple[int, bytes]:
        headers = {**_HEADERS, "Authorization": self._credentials(fresh_auth)}
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            if not self._keep_alive:
                async with aiohttp.ClientSession() as session:
                    return await _send(session, self.url, body, headers, timeout)
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession()
            return await _send(self._session, self.url, body, headers, timeout)
        except TimeoutError:
            raise RpcTransportError(f"{method}: no answer from {self.url} within {timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise RpcTransportError(f"{method}: {self.url}: {exc or type(exc).__name__}") from None

    def _post_sync(self, method: str, body: bytes, timeout_s: float, fresh_auth: bool) -> tuple[int, bytes]:
        headers = {**_HEADERS, "Authorization": self._credentials(fresh_auth)}
        parts = urlsplit(self.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "", parts.port, timeout=timeout_s)
        try:
            conn.request("POST", parts.path or "/", body, headers)
            response = conn.getresponse()
            return response.status, response.read()
        except TimeoutError:
            raise RpcTransportError(f"{method}: no answer from {self.url} within {timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RpcTransportError(f"{method}: {self.url}: {exc or type(exc).__name__}") from None
        finally:
            conn.close()

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
            self._auth = basic_auth(user, password)
        assert self._auth is not None
        return self._auth


async def _send(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                timeout: aiohttp.ClientTimeout) -> tuple[int, bytes]:
    async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
        return response.status, await response.read()

"""Decisions from the decision API, applied to the router's per-profile routes.

Two channels, one code path. The feed polls `GET /v1/decisions` with its ETag every `poll_s`
(a 304 costs next to nothing), and LISTENs on PostgreSQL channel `qscrypt_decisions`, where the
API notifies each change: a notification just triggers the same poll at once. Polling alone
would add up to `poll_s` of latency to every switch; NOTIFY alone would miss changes made while
the listening connection was down. When the API is unreachable the last decisions stay in force,
and each failure is counted and logged.
"""

import asyncio
import contextlib
from typing import Any

import aiohttp

from proxy import db
from proxy.config import SwitchingConfig, UpstreamConfig
from proxy.dispatch import Dispatcher
from qscrypt.log import get_logger


def match_group(choice: dict[str, Any], upstreams: list[UpstreamConfig]) -> str | None:
    """The configured upstream a decision names: by pool name, then by Stratum endpoint; a
    decision with no pool means solo mining, so the coin's daemon upstream."""
    coin, pool, url = choice.get("coin"), choice.get("pool"), choice.get("stratum_url")
    endpoints = set(choice.get("endpoints") or []) | ({url} if url else set())
    for upstream in upstreams:
        if upstream.coin != coin:
            continue
        if pool is not None and (upstream.name == pool or upstream.url in endpoints):
            return upstream.name
        if pool is None and upstream.kind == "daemon":
            return upstream.name
    return None


class DecisionFeed:
    def __init__(self, dispatch: Dispatcher, config: SwitchingConfig, upstreams: list[UpstreamConfig],
                 dsn: str | None) -> None:
        self.dispatch = dispatch
        self.config = config
        self.upstreams = upstreams
        self.dsn = dsn
        self.failures = 0
        self.applied = 0
        self._etag: str | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._log = get_logger(component="decisions")

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="decision-poll"))
        if self.dsn:
            self._tasks.append(asyncio.create_task(self._listen_loop(), name="decision-listen"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def _poll_loop(self) -> None:
        while True:
            await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_s)
            self._wake.clear()

    async def poll(self) -> bool:
        """One poll; True when new decisions were applied."""
        assert self._session is not None
        headers = {"If-None-Match": self._etag} if self._etag else {}
        try:
            async with self._session.get(f"{self.config.api_url.rstrip('/')}/v1/decisions",
                                         headers=headers) as response:
                if response.status == 304:
                    return False
                if response.status != 200:
                    raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
                body = await response.json()
                etag = response.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.failures += 1
            self._log.warning("decisions.unreachable", error=str(exc) or type(exc).__name__,
                              failures=self.failures, keeping="last decisions")
            return False
        self.apply(body.get("items", []) if isinstance(body, dict) else [])
        self._etag = etag
        return True

    def apply(self, items: list[Any]) -> None:
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("profile"), str):
                continue
            choice = item.get("choice")
            if not isinstance(choice, dict) or not isinstance(choice.get("coin"), str):
                continue  # no decision yet for this profile: its miners stay where they are
            group = match_group(choice, self.upstreams)
            if group is None:
                self._log.warning("decisions.no_upstream", profile=item["profile"], coin=choice.get("coin"),
                                  pool=choice.get("pool"))
            gain = item.get("margin_pct")
            self.dispatch.set_decision(item["profile"], choice["coin"], group, str(item.get("reason", "")),
                                       gain if isinstance(gain, int | float) else None)
            self.applied += 1

    async def _listen_loop(self) -> None:
        import asyncpg

        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
                try:
                    await db.listen_decisions(conn, lambda *_: self._wake.set())
                    self._wake.set()  # catch up on whatever changed while not listening
                    while not conn.is_closed():
                        await asyncio.sleep(5)
                        await db.ping(conn)  # notices a dead connection
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._log.warning("decisions.listen_failed", error=str(exc))
            await asyncio.sleep(5)

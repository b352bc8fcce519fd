"""The HTTP path every source shares: per-request timeout, retries with backoff and jitter,
`Retry-After` honoured on 429/503, a per-source rate limit, and JSON decoding with clear errors.
"""

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog

from aggregator.config import SourceConfig
from aggregator.parsing import decode_json

log = structlog.get_logger("aggregator.http")

# Worth another attempt: the server or the path to it may recover within seconds.
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class FetchError(Exception):
    """A source answered with an error, or not at all, after every allowed attempt."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return decode_json(self.body, self.content_type)


class RateLimiter:
    """Spaces the starts of requests at least `min_interval_s` apart, across concurrent callers."""

    def __init__(self, min_interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = min_interval_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._next_at = 0.0

    async def wait(self) -> None:
        if self._interval <= 0:
            return
        async with self._lock:
            delay = self._next_at - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next_at = self._clock() + self._interval


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpClient:
    """Requests for one source, under that source's timeout, retry and rate-limit settings."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        source: str,
        config: SourceConfig,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._session = session
        self.source = source
        self._config = config
        self._limiter = RateLimiter(config.min_interval_s or 0.0)
        self._rng = rng

    async def get_json(
        self, url: str, *, params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
    ) -> Any:
        response = await self.request("GET", url, params=params, headers=headers)
        return response.json()

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        pass_status: Collection[int] = (),
    ) -> Response:
        """The first 2xx answer (or one whose status is in `pass_status`); FetchError otherwise."""
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        attempts = self._config.retries + 1
        last_error = ""
        last_status: int | None = None
        for attempt in range(1, attempts + 1):
            await self._limiter.wait()
            wait_s = self._backoff(attempt)
            try:
                async with self._session.request(
                    method, url, params=params, headers=headers, json=json_body, timeout=timeout
                ) as resp:
                    body = await resp.read()
                    status = resp.status
                    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
                    content_type = resp.headers.get("Content-Type", "")
            except TimeoutError:
                last_error, last_status = f"timed out after {self._config.timeout_s:g} s", None
            except aiohttp.ClientError as exc:
                last_error, last_status = f"{type(exc).__name__}: {exc}", None
            else:
                if 200 <= status < 300 or status in pass_status:
                    return Response(status, body, content_type)
                last_error, last_status = f"HTTP {status}{_reason(body)}", status
                if status not in _RETRYABLE_STATUS:
                    raise FetchError(f"{method} {_path(url)}: {last_error}", status=status, attempts=attempt)
                if retry_after is not None:
                    if retry_after > self._config.max_retry_after_s:
                        raise FetchError(
                            f"{method} {_path(url)}: {last_error}, Retry-After {retry_after:g} s is longer "
                            f"than max_retry_after_s ({self._config.max_retry_after_s:g} s)",
                            status=status, attempts=attempt,
                        )  # fmt: skip
                    wait_s = max(wait_s, retry_after)
            if attempt < attempts:
                log.info("retrying", source=self.source, url=_path(url), attempt=attempt, error=last_error,
                         wait_s=round(wait_s, 3))  # fmt: skip
                await asyncio.sleep(wait_s)
        raise FetchError(
            f"{method} {_path(url)}: {last_error} (after {attempts} attempts)",
            status=last_status,
            attempts=attempts,
        )

    def _backoff(self, attempt: int) -> float:
        # Full doubling with ±50 % jitter, so clients that failed together do not retry together.
        return self._config.backoff_s * 2 ** (attempt - 1) * (0.5 + self._rng())


def _path(url: str) -> str:
    # Query strings can carry API keys (hashrate.no's apiKey=): never put them in errors or logs.
    return url.split("?", 1)[0]


def _reason(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip().replace("\n", " ")
    return f" ({text})" if text and not text.startswith("<") else ""

"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real stack:
embedded PostgreSQL, the proxy mining solo on a Litecoin Core regtest pair for two cpuminers
(every share a block), and the API serving the pages. Each page is opened at desktop and phone
size, and what it shows is compared with what the database holds; screenshots are kept.

Chromium is Debian's (/usr/bin/chromium, `make system-deps`), never a downloaded one, started
with a fresh profile and no network but loopback use.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from playwright.async_api import Page, async_playwright

from api.app import create_app
from api.config import ApiConfig
from proxy import db as proxy_db
from proxy.app import Proxy
from qscrypt.devnet.litecoind import RegtestPair
from tests.peers.support import solo_upstream
from tests.proxy.conftest import proxy_config
from tests.services.peers import PeerFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "dashboard-token-0123456789"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
WORKERS = ("alice.rig1", "alice.rig2")
MINER_DIFFICULTY = 0.5  # above regtest's network difficulty: every share is a block


@dataclass
class Stack:
    url: str
    dsn: str


async def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)


@pytest.fixture
async def stack(
    pg_dsn: str, litecoin_pair: RegtestPair, peers: PeerFactory, tmp_path: Path
) -> AsyncIterator[Stack]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)")
    upstream, _address = solo_upstream(litecoin_pair, name="solo")
    proxy = Proxy(proxy_config([upstream], tmp_path / "spill", share_flush_s=0.2, hash_processes=1), pg_dsn)
    await proxy.start()
    app = create_app(ApiConfig(token=TOKEN, rate_limit_per_s=0), pg_dsn)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    conn = await asyncpg.connect(pg_dsn)
    try:
        await _history(conn)
        began = datetime.now(UTC)
        for worker in WORKERS:
            await peers.start_cpuminer(
                f"stratum+tcp://127.0.0.1:{proxy.ports['tcp']}", worker, f"x,d={MINER_DIFFICULTY}"
            )

        async def mined() -> bool:
            counts = await conn.fetch(
                "SELECT worker, count(*) FROM shares WHERE result = 'accepted' AND ts >= $1 GROUP BY 1", began
            )
            blocks = await conn.fetchval("SELECT count(*) FROM blocks")
            return len(counts) == 2 and all(c[1] >= 2 for c in counts) and blocks >= 2

        await _wait(mined, 180, "both workers' shares and blocks in PostgreSQL")
        await peers.stop_all()
        last = -1

        async def settled() -> bool:  # the writer has written what the proxy counted
            nonlocal last
            now = await conn.fetchval("SELECT count(*) FROM shares")
            done, last = now == last and proxy.accounting.rows_waiting == 0, now
            return done

        await _wait(settled, 30, "the share writer to catch up")
        yield Stack(f"http://127.0.0.1:{port}", pg_dsn)
    finally:
        await conn.close()
        await runner.cleanup()
        await proxy.close()


async def _history(conn: asyncpg.Connection) -> None:
    """A day of earlier shares of the same workers, written as the proxy writes them (COPY into
    `shares`: the rollup trigger fills the buckets), so the charts have a day to draw."""
    now = datetime.now(UTC)
    await proxy_db.ensure_share_partitions(conn, (now - timedelta(days=1)).date(), 2)
    rows = []
    for step in range(3, 280):  # every 5 minutes from 23 h 20 min ago to 15 minutes ago
        at = now - timedelta(minutes=5 * step)
        for n, worker in enumerate(WORKERS):
            shares = 4 + round(3 * math.sin(step / 20 + n))
            rows += [
                (at + timedelta(seconds=k), worker, "solo", "h", 0.5, 0.6, "accepted", None)
                for k in range(shares)
            ]
            if step % 17 == n:
                rows.append((at, worker, "solo", "h", 0.5, None, "rejected", "low difficulty"))
            if step % 29 == n:
                rows.append((at, worker, "solo", "h", 0.5, None, "stale", "stale job"))
    await conn.copy_records_to_table("shares", records=rows, columns=proxy_db.SHARE_COLUMNS[:-1])


async def _text(page: Page, selector: str) -> str:
    return (await page.locator(selector).inner_text()).strip()


async def _table(page: Page, cls: str) -> list[list[str]]:
    rows = await page.locator(f"table.{cls} tbody tr").all()
    return [[c.strip() for c in await row.locator("td").all_inner_texts()] for row in rows]


async def _dots(page: Page, chart: str) -> list[tuple[str, float]]:
    dots = page.locator(f'[data-chart="{chart}"] .dot')
    return [
        (await d.get_attribute("data-ts") or "", float(await d.get_attribute("data-value") or "nan"))
        for d in await dots.all()
    ]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


async def _load(page: Page, url: str, page_name: str) -> None:
    await page.goto(url)
    await page.wait_for_selector(f'main[data-page="{page_name}"][data-loaded]', timeout=20_000)


async def _check_no_horizontal_scroll(page: Page, width: int) -> None:
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll} px wide in a {width} px viewport"


async def _pool_page(page: Page, stack: Stack, conn: asyncpg.Connection) -> None:
    await _load(page, f"{stack.url}/?poll=1#/pool", "pool")
    online = await conn.fetchval(
        "SELECT count(*) FROM workers WHERE last_share_at >= now() - interval '10 minutes'"
    )
    assert await _text(page, '[data-stat="workers_online"] .value') == str(online) == "2"
    assert await _text(page, '[data-stat="miners_online"] .value') == "1"
    blocks = dict(await conn.fetch("SELECT status, count(*) FROM blocks GROUP BY 1"))
    assert await _text(page, '[data-stat="blocks_pending"] .value') == str(blocks.get("pending", 0))
    assert await _text(page, '[data-stat="blocks_confirmed"] .value') == str(blocks.get("accepted", 0))
    assert blocks.get("accepted", 0) >= 2
    shares = await conn.fetch(
        "SELECT result, reason, sum(shares) AS n FROM pool_buckets"
        " WHERE bucket >= now() - interval '1 day' GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert await _table(page, "shares") == [[r["result"], r["reason"] or "—", f"{r['n']:,}"] for r in shares]
    # The chart: one dot per 15-minute step (24 h), at the hashrate the rollups give.
    series = await conn.fetch(
        "SELECT date_bin('15 minutes', bucket, TIMESTAMPTZ 'epoch') AS bucket,"
        " sum(difficulty) * 65536 / 900 AS hs FROM pool_buckets"
        " WHERE result = 'accepted' AND bucket >= now() - interval '1 day'"
        " GROUP BY 1 ORDER BY 1"
    )
    dots = await _dots(page, "pool-hashrate")
    assert len(dots) == len(series) >= 1
    for (ts, value), row in zip(dots, series, strict=True):
        assert ts.replace("Z", "+00:00")[:19] == row["bucket"].isoformat()[:19]
        assert _close(value, row["hs"]), (value, row["hs"])
    upstreams = await _table(page, "upstreams")
    assert [r[:2] for r in upstreams] == [["solo", "up"]]
    found = await conn.fetchval("SELECT count(*) FROM blocks")
    assert len(await _table(page, "blocks")) == min(10, found)
    # Numbers update without a reload: a new block row appears at the next poll.
    await conn.execute(
        "INSERT INTO blocks (coin, height, hash, status) VALUES ('LTC', 999999, repeat('e', 64), 'orphaned')"
    )
    await page.wait_for_function(
        """() => document.querySelector('[data-stat="blocks_orphaned"] .value').textContent === '1'""",
        timeout=15_000,
    )
    await conn.execute("DELETE FROM blocks WHERE height = 999999")


async def _account_page(page: Page, stack: Stack, conn: asyncpg.Connection) -> None:
    await _load(page, f"{stack.url}/?poll=30#/account/alice", "account")
    rows = {r[0]: r for r in await _table(page, "workers")}
    assert sorted(rows) == sorted(WORKERS)
    for worker in WORKERS:
        counts = dict(
            await conn.fetch(
                "SELECT result, sum(shares) FROM share_buckets WHERE worker = $1"
                " AND bucket >= now() - interval '1 day' GROUP BY 1",
                worker,
            )
        )
        assert rows[worker][3] == f"{counts.get('accepted', 0):,}"
        assert rows[worker][4] == f"{counts.get('rejected', 0):,}"
        assert rows[worker][5] == f"{counts.get('stale', 0):,}"
        series = await conn.fetch(
            "SELECT date_bin('15 minutes', bucket, TIMESTAMPTZ 'epoch') AS bucket,"
            " sum(difficulty) * 65536 / 900 AS hs FROM share_buckets"
            " WHERE worker = $1 AND result = 'accepted' AND bucket >= now() - interval '1 day'"
            " GROUP BY 1 ORDER BY 1",
            worker,
        )
        dots = await _dots(page, f"worker-{worker}")
        assert [round(v, 6) for _, v in dots] == [round(r["hs"], 6) for r in series]
    # The other helper's ledger and payouts are not in this tree: the page says what is missing.
    assert "Balances are not available" in await _text(page, '[data-empty="balances"]')
    assert "Payout history is not available" in await _text(page, '[data-empty="payouts"]')
    await page.goto(f"{stack.url}/?poll=30#/account/nobody")
    await page.wait_for_selector("table.workers, [data-empty=workers]")
    assert "No workers for nobody" in await _text(page, "[data-empty=workers]")


async def _admin_page(page: Page, stack: Stack, conn: asyncpg.Connection) -> None:
    alerts: list[str] = []
    page.on("dialog", lambda d: (alerts.append(d.message), asyncio.ensure_future(d.dismiss())))
    await _load(page, f"{stack.url}/?poll=30#/admin", "admin")
    await page.fill('input[name="token"]', TOKEN)
    await page.click('form:has(input[name="token"]) button')
    await page.wait_for_selector('form[data-form="ban"]')
    assert "Payout approval is not available" in await _text(page, '[data-empty="approvals"]')
    assert "Fees are not available" in await _text(page, '[data-empty="fees"]')
    await page.fill('input[name="value"]', "mallory")
    await page.fill('input[name="reason"]', "browser test")
    await page.click('form[data-form="ban"] button')
    await page.wait_for_selector('button[data-unban="mallory"]')
    assert await conn.fetch("SELECT kind, value, reason FROM bans") == [("worker", "mallory", "browser test")]
    await page.click('button[data-unban="mallory"]')
    await page.wait_for_selector("[data-empty=bans]")
    assert await conn.fetchval("SELECT count(*) FROM bans") == 0
    # Edit a profile: the default one gets a power cost.
    await page.click("details summary:has-text('default')")
    editor = page.locator('textarea[data-profile="default"]')
    text = (await editor.input_value()).replace('"power_cost_kwh": null', '"power_cost_kwh": 0.07')
    await editor.fill(text)
    await page.click("details[open] button.primary")
    await _wait(
        lambda: conn.fetchval("SELECT power_cost_kwh = 0.07 FROM profiles WHERE name = 'default'"),
        10,
        "the profile edit to reach the database",
    )
    assert not alerts, alerts


async def test_pages_show_what_the_database_holds(stack: Stack, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    conn = await asyncpg.connect(stack.dsn)
    try:
        async with async_playwright() as pw:
            for size, viewport in SIZES.items():
                context = await pw.chromium.launch_persistent_context(
                    str(tmp_path / f"chromium-{size}"),  # a fresh profile for each size
                    executable_path=str(CHROMIUM),
                    args=CHROMIUM_ARGS,
                    headless=True,
                    viewport=viewport,
                    is_mobile=size == "phone",
                    has_touch=size == "phone",
                    device_scale_factor=1,
                )
                try:
                    page = await context.new_page()
                    outside: list[str] = []
                    page.on(
                        "request",
                        lambda r, seen=outside: None if r.url.startswith(stack.url) else seen.append(r.url),
                    )
                    errors: list[str] = []
                    page.on("pageerror", lambda e, seen=errors: seen.append(str(e)))
                    for name, check in (
                        ("pool", _pool_page),
                        ("account", _account_page),
                        ("admin", _admin_page),
                    ):
                        await check(page, stack, conn)
                        if name == "account":
                            await _load(page, f"{stack.url}/?poll=30#/account/alice", "account")
                        await _check_no_horizontal_scroll(page, viewport["width"])
                        await page.screenshot(path=str(shots / f"{name}-{size}.png"), full_page=True)
                    assert not outside, f"the page fetched from outside Qscrypt: {outside}"
                    assert not errors, errors
                finally:
                    await context.close()
    finally:
        await conn.close()
    print(f"\nscreenshots: {shots}")

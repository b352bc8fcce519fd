"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real stack:
embedded PostgreSQL, the proxy mining solo on a Litecoin Core regtest pair for two cpuminers
(every share a block), and the API serving the pages. Each page is opened at desktop and phone
size, and what it shows is compared with what the database holds; screenshots are kept (in
$QSCRYPT_ARTIFACTS/dashboard when that is set, else the test's tmp_path; the path is printed).

Real money: the miners' account `alice` is registered through the API with a payout address of
the pair's second node. The real payout code (`payouts.run.run_payouts`, solo scheme, 1 % fee)
credits the blocks immature, the pages show it; 100 more blocks mature them and the run makes
one payout above the approval threshold; the admin page approves it with a click, the next run
sends a real regtest transaction, and the account page shows its txid at the next poll.

Chromium is Debian's (/usr/bin/chromium, `make system-deps`), never a downloaded one, started
with a fresh profile and no network but loopback use.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, Page, Playwright, async_playwright

from api.app import create_app
from api.config import ApiConfig
from payouts.cli import wallet_of
from payouts.config import CoinPayouts, to_coins, to_units
from payouts.run import RunReport, run_payouts
from proxy import db as proxy_db
from proxy.app import Proxy
from qscrypt.devnet.litecoind import MWEB_ACTIVATION_HEIGHT, RegtestPair
from qscrypt.jsonrpc import JsonRpcClient
from tests.payouts.support import coin_config, received, receiver
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
ACCOUNT = "alice"
ZERO = "0.00000000"


@dataclass
class Stack:
    url: str
    dsn: str
    pair: RegtestPair
    address: str
    """alice's registered LTC payout address (a wallet on the pair's second node)."""
    receiver: JsonRpcClient
    payouts: CoinPayouts


async def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)


@pytest.fixture
async def stack(
    pg_dsn: str, dashboard_pair: RegtestPair, peers: PeerFactory, tmp_path: Path
) -> AsyncIterator[Stack]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)")
    pair = dashboard_pair
    assert pair.height() + 120 < MWEB_ACTIVATION_HEIGHT, "the dashboard pair is for one test run"
    upstream, _address = solo_upstream(pair, name="solo")
    proxy = Proxy(proxy_config([upstream], tmp_path / "spill", share_flush_s=0.2, hash_processes=1), pg_dsn)
    await proxy.start()
    app = create_app(ApiConfig(token=TOKEN, rate_limit_per_s=0, payout_network="regtest"), pg_dsn)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    wallet = receiver(pair)
    address = wallet.call("getnewaddress")
    async with aiohttp.ClientSession() as http:  # registered as a user would: through the API
        body = {"name": ACCOUNT, "payout_addresses": {"LTC": address}}
        async with http.post(f"{url}/v1/accounts", json=body) as answer:
            assert answer.status == 201, await answer.text()
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
        # Payouts above 1 LTC wait for an admin: a block's reward (50 LTC) does.
        yield Stack(url, pg_dsn, pair, address, wallet, coin_config(pair, approval_threshold=1.0))
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
    await conn.copy_records_to_table("shares", records=rows, columns=proxy_db.SHARE_COLUMNS[:8])


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
    # The first payout run credited the blocks immature; nothing is payable or paid yet.
    immature = await _expected_credit(conn)
    assert await _table(page, "balances") == [["LTC", to_coins(immature), ZERO, ZERO]]
    assert await _table(page, "balances") == [["LTC", *await _db_balance(conn)]]
    assert await _text(page, '[data-empty="payouts"]') == "No payouts yet."
    await page.goto(f"{stack.url}/?poll=30#/account/nobody")
    await page.wait_for_selector("table.workers, [data-empty=workers]")
    assert "No workers for nobody" in await _text(page, "[data-empty=workers]")
    assert "no account 'nobody'" in await _text(page, '[data-empty="balances"]')


async def _admin_page(page: Page, stack: Stack, conn: asyncpg.Connection) -> None:
    alerts: list[str] = []
    page.on("dialog", lambda d: (alerts.append(d.message), asyncio.ensure_future(d.dismiss())))
    await _load(page, f"{stack.url}/?poll=30#/admin", "admin")
    await page.fill('input[name="token"]', TOKEN)
    await page.click('form:has(input[name="token"]) button')
    await page.wait_for_selector('form[data-form="ban"]')
    assert await _text(page, '[data-empty="approvals"]') == "No payouts are waiting for approval."
    # The operator fee: a coin not set through the API yet is set with the form under the table.
    fee = "2" if (page.viewport_size or {}).get("width", 0) < 600 else "1"  # a new value each time
    await page.fill('input[name="fee_coin"]', "ltc")
    await page.fill('input[name="fee_percent"]', fee)
    await page.click('form[data-form="fee"] button')
    await page.wait_for_selector(f'input[aria-label="fee LTC"][value="{float(fee):g}"]')
    assert await conn.fetchval("SELECT fee_percent FROM coin_fees WHERE coin = 'LTC'") == Decimal(fee)
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


async def _expected_credit(conn: asyncpg.Connection) -> int:
    """What alice's accepted blocks earn under the solo scheme: each reward less the 1 % fee,
    rounded down to the litoshi (computed here from `blocks`, not by the payout code)."""
    rewards = await conn.fetch(
        "SELECT reward FROM blocks WHERE coin = 'LTC' AND status = 'accepted'"
        " AND split_part(worker, '.', 1) = $1",
        ACCOUNT,
    )
    assert rewards
    return sum(to_units(r["reward"]) - to_units(r["reward"]) // 100 for r in rewards)


async def _db_balance(conn: asyncpg.Connection) -> list[str]:
    """alice's LTC immature / pending / paid as the ledger and the payouts table hold them: pending
    is what is owed, payouts not handed to the wallet yet included."""
    row = await conn.fetchrow(
        "SELECT coalesce(sum(amount) FILTER (WHERE bucket = 'immature'), 0)::bigint AS immature,"
        " coalesce(sum(amount) FILTER (WHERE bucket = 'balance'), 0)::bigint AS balance,"
        " coalesce(sum(amount) FILTER (WHERE bucket = 'paid'), 0)::bigint AS paid"
        " FROM ledger_entries WHERE coin = 'LTC' AND account = $1",
        ACCOUNT,
    )
    waiting = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0)::bigint FROM payouts WHERE coin = 'LTC' AND account = $1"
        " AND status IN ('awaiting_approval', 'pending')",
        ACCOUNT,
    )
    return [to_coins(row["immature"]), to_coins(row["balance"] + waiting), to_coins(row["paid"] - waiting)]


async def _pay(stack: Stack) -> RunReport:
    """One real payout run for LTC (settle, create, send), as `qscrypt payouts run` makes it."""
    pool = await asyncpg.create_pool(stack.dsn, min_size=1, max_size=2)
    wallet = wallet_of(stack.payouts)
    try:
        return await run_payouts(pool, "LTC", stack.payouts, wallet, datetime.now(UTC))
    finally:
        await wallet.close()
        await pool.close()


async def _browser(pw: Playwright, tmp_path: Path, size: str, tag: str) -> BrowserContext:
    viewport = SIZES[size]
    return await pw.chromium.launch_persistent_context(
        str(tmp_path / f"chromium-{tag}-{size}"),  # a fresh profile each time
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        headless=True,
        viewport=viewport,
        is_mobile=size == "phone",
        has_touch=size == "phone",
        device_scale_factor=1,
    )


async def _watched_page(context: BrowserContext, stack: Stack, outside: list[str], errors: list[str]) -> Page:
    page = await context.new_page()
    page.on("request", lambda r: None if r.url.startswith(stack.url) else outside.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


async def _login(page: Page, stack: Stack) -> None:
    await _load(page, f"{stack.url}/?poll=30#/admin", "admin")
    await page.fill('input[name="token"]', TOKEN)
    await page.click('form:has(input[name="token"]) button')
    await page.wait_for_selector('form[data-form="ban"]')


async def _until_text(page: Page, selector: str, text: str, timeout_ms: float = 15_000) -> None:
    """Wait for the next polls until `selector`'s text contains `text`."""
    await page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return !!e && e.textContent.includes(t); }",
        arg=[selector, text],
        timeout=timeout_ms,
    )


async def _balances_match(page: Page, conn: asyncpg.Connection, expected: list[str]) -> None:
    assert await _db_balance(conn) == expected
    await _until_text(page, "table.balances tbody tr", expected[2])
    assert await _table(page, "balances") == [["LTC", *expected]]


_PAYOUT = (
    "SELECT p.id, p.amount, p.status, b.txid FROM payouts p LEFT JOIN payout_batches b ON b.id = p.batch_id"
    " WHERE p.account = $1"
)


async def _approve_and_pay(page: Page, stack: Stack, conn: asyncpg.Connection, shots: Path) -> str:
    """The blocks mature, one payout waits for approval, the admin page approves it with a click,
    the next run sends it; the account page shows each step. Answers the txid."""
    blocks = await conn.fetchval("SELECT count(*) FROM blocks WHERE status = 'accepted'")
    owed = await _expected_credit(conn)
    await asyncio.to_thread(stack.pair.generate, 100)  # every found block now has 100 confirmations
    report = await _pay(stack)
    assert len(report.settled.matured) == blocks and report.created == 1, report.summary()
    assert report.awaiting_approval == 1 and report.sent == [], report.summary()
    payout = await conn.fetchrow(_PAYOUT, ACCOUNT)
    assert (payout["amount"], payout["status"], payout["txid"]) == (owed, "awaiting_approval", None)
    amount = to_coins(owed)

    await _load(page, f"{stack.url}/?poll=1#/account/{ACCOUNT}", "account")
    await _balances_match(page, conn, [ZERO, amount, ZERO])
    assert [r[1:] for r in await _table(page, "payouts")] == [["LTC", amount, "awaiting_approval", "—"]]
    await page.screenshot(path=str(shots / "account-awaiting-desktop.png"), full_page=True)

    await _login(page, stack)
    button = f'button[data-approve="{payout["id"]}"]'
    await page.wait_for_selector(button)
    rows = await _table(page, "approvals")
    expected = [str(payout["id"]), ACCOUNT, "LTC", amount, "Approve"]
    assert [[r[0], r[1], r[2], r[3], r[5]] for r in rows] == [expected]
    await page.screenshot(path=str(shots / "admin-approval-desktop.png"), full_page=True)
    await page.click(button)
    await page.wait_for_selector('[data-empty="approvals"]')
    assert await conn.fetchval("SELECT status FROM payouts WHERE id = $1", payout["id"]) == "pending"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        http.get(f"{stack.url}/v1/payouts?status=pending") as answer,
    ):
        assert answer.status == 200
        items = (await answer.json())["items"]
    assert [(i["id"], i["account"], i["amount"], i["status"]) for i in items] == [
        (payout["id"], ACCOUNT, amount, "pending")
    ]

    # The next run sends it: a real transaction on the regtest pair, shown at the next poll.
    await _load(page, f"{stack.url}/?poll=1#/account/{ACCOUNT}", "account")
    report = await _pay(stack)
    assert len(report.sent) == 1 and report.failed == [], report.summary()
    (txid,) = report.sent
    await _until_text(page, "table.payouts", txid)
    assert tuple(await conn.fetchrow(_PAYOUT, ACCOUNT)) == (payout["id"], owed, "sent", txid)
    assert [r[1:] for r in await _table(page, "payouts")] == [["LTC", amount, "sent", txid]]
    await _balances_match(page, conn, [ZERO, ZERO, amount])
    await asyncio.to_thread(stack.pair.sync_mempools, [txid])
    got = [(t["txid"], Decimal(str(t["amount"]))) for t in received(stack.receiver, stack.address)]
    assert got == [(txid, Decimal(owed) / 10**8)]
    await page.screenshot(path=str(shots / "account-paid-desktop.png"), full_page=True)
    return txid


def _shots_dir(tmp_path: Path) -> Path:
    """Screenshots are test artifacts: under $QSCRYPT_ARTIFACTS/dashboard when CI sets it."""
    base = os.environ.get("QSCRYPT_ARTIFACTS")
    shots = Path(base) / "dashboard" if base else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    return shots


async def test_pages_show_what_the_database_holds(stack: Stack, tmp_path: Path) -> None:
    shots = _shots_dir(tmp_path)
    conn = await asyncpg.connect(stack.dsn)
    outside: list[str] = []
    errors: list[str] = []
    try:
        # The real payout code credits the found blocks: immature, nothing payable yet.
        first = await _pay(stack)
        found = await conn.fetchval("SELECT count(*) FROM blocks WHERE status = 'accepted'")
        assert len(first.settled.found) == found and first.created == 0, first.summary()
        async with async_playwright() as pw:
            for size, viewport in SIZES.items():
                context = await _browser(pw, tmp_path, size, "pages")
                try:
                    page = await _watched_page(context, stack, outside, errors)
                    for name, check in (
                        ("pool", _pool_page),
                        ("account", _account_page),
                        ("admin", _admin_page),
                    ):
                        await check(page, stack, conn)
                        if name == "account":
                            await _load(page, f"{stack.url}/?poll=30#/account/{ACCOUNT}", "account")
                        await _check_no_horizontal_scroll(page, viewport["width"])
                        await page.screenshot(path=str(shots / f"{name}-{size}.png"), full_page=True)
                finally:
                    await context.close()
            # Real money: maturity, approval by a click, a real transaction.
            context = await _browser(pw, tmp_path, "desktop", "money")
            try:
                page = await _watched_page(context, stack, outside, errors)
                txid = await _approve_and_pay(page, stack, conn, shots)
            finally:
                await context.close()
            context = await _browser(pw, tmp_path, "phone", "money")
            try:
                page = await _watched_page(context, stack, outside, errors)
                await _load(page, f"{stack.url}/?poll=30#/account/{ACCOUNT}", "account")
                assert [r[3:] for r in await _table(page, "payouts")] == [["sent", txid]]
                assert await _table(page, "balances") == [["LTC", *await _db_balance(conn)]]
                await _check_no_horizontal_scroll(page, SIZES["phone"]["width"])
                await page.screenshot(path=str(shots / "account-paid-phone.png"), full_page=True)
            finally:
                await context.close()
        assert not outside, f"the page fetched from outside Qscrypt: {outside}"
        assert not errors, errors
    finally:
        await conn.close()
    print(f"\nscreenshots: {shots}")

"""The poller against real TCP servers on loopback: the recorded L3+ answers (in JSON and in
text) beside a device of every malformed shape. Each bad device gets its own clear error and its
backoff; the good ones are read, exported and recorded; nothing crashes the poller."""

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleet.config import DeviceConfig, FleetConfig
from fleet.metrics import FleetMetrics
from fleet.poller import Poller
from qscrypt.db.migrate import migrate
from tests.fleet import devices as shapes
from tests.fleet.devices import Device


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scrape(metrics: FleetMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped: dict, name: str, **labels: str) -> float | None:
    return scraped.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
async def fleet() -> AsyncIterator[dict[str, Device]]:
    started = {
        "l3-json": Device(shapes.l3),
        "l3-text": Device(shapes.l3_plain),
        "l3-no-close": Device(shapes.l3, keep_open=True),
        "truncated": Device(shapes.truncated),
        "status-e": Device(shapes.status_e),
        "missing": Device(shapes.missing_sections),
        "units": Device(shapes.wrong_units),
        "never": Device(shapes.never),
        "closes": Device(shapes.close_early),
    }
    for device in started.values():
        await device.start()
    try:
        yield started
    finally:
        for device in started.values():
            await device.close()


def free_closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_every_shape_gets_its_own_error_and_backoff_and_the_good_ones_are_read(
        fleet: dict[str, Device]) -> None:
    configs = [DeviceConfig(name=name, host="127.0.0.1", port=d.port) for name, d in fleet.items()]
    configs.append(DeviceConfig(name="refused", host="127.0.0.1", port=free_closed_port()))
    text_config = FleetConfig(poll_s=30, timeout_s=1.0, window_s=120, json_format=True,
                              devices=tuple(configs))
    clock = Clock(1_000_000.0)
    metrics = FleetMetrics()
    poller = Poller(text_config, metrics, clock=clock)
    # The text device is asked in text: a poller of its own with json_format off.
    text_poller = Poller(FleetConfig(poll_s=30, timeout_s=1.0, window_s=120, json_format=False,
                                     devices=(configs[1],)), metrics, clock=clock)
    await poller.refresh_devices()
    await text_poller.refresh_devices()
    del poller.states["l3-text"]

    started = time.monotonic()
    assert await poller.poll_due() == len(configs) - 1
    assert await text_poller.poll_due() == 1
    took = time.monotonic() - started
    # Concurrent: the slow devices (never, no-close) cost one timeout each, not one after another.
    assert took < 6.0, f"a poll of every device took {took:.1f} s"

    states = {**poller.states, **text_poller.states}
    for name in ("l3-json", "l3-text", "l3-no-close"):
        state = states[name]
        assert state.error is None, (name, state.error)
        assert state.reading is not None and state.reading.hashrate_hs == pytest.approx(553.61e6)
        assert len(state.reading.chains) == 4 and state.reading.fans_rpm == (2166, 2220)
    assert fleet["l3-json"].commands == ["summary+pools", "stats"]
    assert fleet["l3-text"].commands == ["summary+pools", "stats"]

    errors = {name: states[name].error or "" for name in states if name not in ("l3-json", "l3-text",
                                                                                 "l3-no-close", "units")}
    port = {name: d.port for name, d in fleet.items()}
    assert errors["truncated"].startswith(f"127.0.0.1:{port['truncated']}: summary+pools: answer is not "
                                          "complete JSON"), errors
    assert "STATUS=E" in errors["status-e"] and "Invalid command" in errors["status-e"], errors
    # A device that cannot join commands is asked for summary alone.
    assert fleet["status-e"].commands[:2] == ["summary+pools", "summary"]
    assert "no SUMMARY section" in errors["missing"], errors
    assert errors["never"] == f"127.0.0.1:{port['never']}: summary+pools timed out after 1 s (no answer)"
    assert errors["closes"].endswith("empty answer (the device closed the connection without a reply)")
    assert "refused" in errors["refused"].lower(), errors
    units = states["units"]
    assert units.error is None and units.reading is not None and units.reading.hashrate_hs is None
    assert any("not a number" in p for p in units.reading.problems)
    assert any(p.startswith(("stats answered STATUS=E", "stats:")) for p in units.reading.problems)

    scraped = scrape(metrics)
    assert value(scraped, "qscrypt_asic_up", device="l3-json") == 1
    assert value(scraped, "qscrypt_asic_up", device="never") == 0
    assert value(scraped, "qscrypt_asic_hashrate_hs", device="l3-text") == pytest.approx(553.61e6)
    chain_2 = value(scraped, "qscrypt_asic_chain_hashrate_hs", device="l3-json", chain="2")
    assert chain_2 == pytest.approx(137.19e6)
    assert value(scraped, "qscrypt_asic_temperature_max_celsius", device="l3-json") == 57
    assert value(scraped, "qscrypt_asic_board_temperature_celsius", device="l3-json", chain="3") == 39
    assert value(scraped, "qscrypt_asic_chip_temperature_celsius", device="l3-json", chain="1") == 56
    assert value(scraped, "qscrypt_asic_fan_rpm", device="l3-json", fan="2") == 2220
    assert value(scraped, "qscrypt_asic_chips_bad", device="l3-json") == 39
    assert value(scraped, "qscrypt_asic_hardware_errors", device="l3-json") == 3793420
    assert value(scraped, "qscrypt_asic_pool_accepted", device="l3-json") == 615041
    assert value(scraped, "qscrypt_asic_pool_rejected", device="l3-json") == 824
    assert value(scraped, "qscrypt_asic_uptime_seconds", device="l3-json") == 4484245
    assert value(scraped, "qscrypt_asic_polls_total", device="never", result="error") == 1
    # A dead device's figures leave the output: no stale temperature that looks fine.
    assert value(scraped, "qscrypt_asic_temperature_max_celsius", device="never") is None

    # Backoff: the dead ones wait 30, 60, 120, 240 s; the good ones are due every 30 s.
    for step, expected in ((30, 60), (60, 120), (120, 240)):
        clock.now += step
        due = {s.device.name for s in poller.states.values() if s.next_at <= clock.now}
        assert "l3-json" in due and "never" in due, (step, due)
        await poller.poll_due()
        assert poller.states["never"].next_at - clock.now == expected
        assert poller.states["never"].failures == {30: 2, 60: 3, 120: 4}[step]
    clock.now += 30
    due = {s.device.name for s in poller.states.values() if s.next_at <= clock.now}
    assert "never" not in due and "l3-json" in due


async def test_a_device_that_recovers_and_one_that_is_unregistered() -> None:
    behaviour = {"answer": shapes.close_early}
    device = await Device(lambda c: behaviour["answer"](c)).start()
    try:
        config = FleetConfig(poll_s=10, timeout_s=1.0, window_s=60,
                             devices=(DeviceConfig(name="flaky", host="127.0.0.1", port=device.port),))
        clock, metrics = Clock(2_000_000.0), FleetMetrics()
        poller = Poller(config, metrics, clock=clock)
        await poller.refresh_devices()
        await poller.poll_due()
        assert poller.states["flaky"].failures == 1
        behaviour["answer"] = shapes.l3
        clock.now += 10
        await poller.poll_due()
        state = poller.states["flaky"]
        assert state.failures == 0 and state.error is None and state.next_at == clock.now + 10
        assert value(scrape(metrics), "qscrypt_asic_up", device="flaky") == 1
        poller.config = FleetConfig(poll_s=10, timeout_s=1.0, window_s=60, devices=())
        await poller.refresh_devices()
        scraped = scrape(metrics)
        assert not [k for k in scraped if ("device", "flaky") in k[1]], "an unregistered device's series stay"
        assert value(scraped, "qscrypt_asic_devices") == 0
    finally:
        await device.close()


class Hashing:
    """An L3+ whose hash counter grows at `rate` H/s on the test's clock."""

    def __init__(self, clock: Clock, rate: float) -> None:
        self.clock, self.rate, self.started = clock, rate, clock.now - 1000

    def __call__(self, command: str) -> bytes:
        answer = json.loads(shapes.l3(command)[:-1])
        summary = (answer.get("summary", [answer])[0] if "+" in command else answer).get("SUMMARY")
        if summary:
            elapsed = self.clock.now - self.started
            summary[0]["Elapsed"] = int(elapsed)
            summary[0]["Total MH"] = self.rate * elapsed / 1e6
        return json.dumps(answer).encode() + b"\0"


async def test_device_and_proxy_hashrate_over_the_same_window_in_postgres(pg_dsn: str) -> None:
    await migrate(pg_dsn)
    rate = 5e8
    clock = Clock(float(int(time.time())) - 3600)
    device = await Device(Hashing(clock, rate)).start()
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    try:
        await pool.execute("DELETE FROM asic_devices")
        # Registered through the API (another row the poller must pick up) and in config.
        await pool.execute("INSERT INTO asic_devices (name, host, port, worker, source) VALUES "
                           "('api-dev', '127.0.0.1', $1, '', 'api')", free_closed_port())
        config = FleetConfig(poll_s=30, timeout_s=2.0, window_s=120, share_lag_s=15, devices=(
            DeviceConfig(name="l3", host="127.0.0.1", port=device.port, worker="farm.l3"),))
        metrics = FleetMetrics()
        poller = Poller(config, metrics, pool, clock=clock)
        await poller.start()
        assert set(poller.states) == {"api-dev", "l3"}
        t0 = clock.now
        # The proxy accepted a share a second of difficulty 0.8·rate/65536: 80 % of what it claims.
        difficulty = 0.8 * rate / 65536
        await pool.executemany(
            "INSERT INTO shares (ts, worker, upstream, difficulty, result) VALUES ($1, $2, 'pool', $3, $4)",
            [(datetime.fromtimestamp(t0 + k + 0.5, UTC), worker, difficulty, result) for k in range(200)
             for worker, result in (("farm.l3", "accepted"), ("farm.l3", "rejected"), ("other", "accepted"))])
        for _ in range(7):  # polls at t0 … t0+180
            await poller.poll_due()
            clock.now += 30
        scraped = scrape(metrics)
        figures = {name: value(scraped, f"qscrypt_asic_{name}", device="l3")
                   for name in ("window_hashrate_hs", "proxy_hashrate_hs", "hashrate_disagreement_ratio")}
        assert figures["window_hashrate_hs"] == pytest.approx(rate, rel=1e-6)
        assert figures["proxy_hashrate_hs"] == pytest.approx(0.8 * rate, rel=0.02)
        assert figures["hashrate_disagreement_ratio"] == pytest.approx(0.2, abs=0.02)
        assert value(scraped, "qscrypt_asic_window_shares", device="l3") == 90
        row = await pool.fetchrow("SELECT * FROM asic_readings WHERE device = 'l3'")
        assert row["ok"] and row["failures"] == 0 and row["error"] is None
        assert row["disagreement"] == pytest.approx(0.2, abs=0.02) and row["window_s"] == 90
        assert json.loads(row["reading"])["chips_bad"] == 39  # asyncpg hands jsonb back as text
    finally:
        await pool.close()
        await device.close()


async def test_concurrency_is_bounded() -> None:
    """Six devices that never answer, two at a time: three rounds of the timeout, and never more than
    two connections open at once."""
    open_now, most = [0], [0]

    def never_counting(command: str) -> bytes | None:
        open_now[0] += 1
        most[0] = max(most[0], open_now[0])
        return None

    servers = [await Device(never_counting, on_close=lambda: open_now.__setitem__(0, open_now[0] - 1)).start()
               for _ in range(6)]
    try:
        config = FleetConfig(poll_s=10, timeout_s=0.5, window_s=60, concurrency=2, devices=tuple(
            DeviceConfig(name=f"d{i}", host="127.0.0.1", port=s.port) for i, s in enumerate(servers)))
        poller = Poller(config, FleetMetrics(), clock=Clock(3_000_000.0))
        await poller.refresh_devices()

        began = time.monotonic()
        await poller.poll_due()
        took = time.monotonic() - began
        assert most[0] == 2, most
        assert 1.4 <= took < 4.0, took
        assert all(s.failures == 1 and "timed out after 0.5 s" in (s.error or "")
                   for s in poller.states.values())
    finally:
        for server in servers:
            await server.close()

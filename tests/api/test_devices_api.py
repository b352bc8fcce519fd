"""ASICs over HTTP: registration (bearer-token writes, the config file's devices left alone) and
each device's last reading as the real fleet poller wrote it, read from a real device server on
loopback answering with the recorded L3+ answers; every answer validated against the document."""

import asyncpg
import pytest

from fleet.config import DeviceConfig, FleetConfig
from fleet.metrics import FleetMetrics
from fleet.poller import Poller
from tests.api.conftest import AUTH, ClientFactory
from tests.api.test_openapi import _validator
from tests.api.test_read_endpoints import assert_problem
from tests.fleet import devices as shapes
from tests.fleet.devices import Device


def valid(path: str, method: str, status: int, body: object) -> None:
    errors = [e.message for e in _validator(path, method, status, "application/json").iter_errors(body)]
    assert not errors, errors


async def test_register_poll_and_read_devices(pg_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(pg_dsn)
    device = await Device(shapes.l3).start()
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        await pool.execute("DELETE FROM asic_devices")
        # One in the config file (the poller writes it), one through the API.
        config = FleetConfig(poll_s=30, timeout_s=2, devices=(
            DeviceConfig(name="from-config", host="127.0.0.1", port=device.port, worker="farm.a"),))
        poller = Poller(config, FleetMetrics(), pool)
        await poller.start()

        unauthorised = await client.put("/v1/devices/l3-api", json={"host": "127.0.0.1"})
        assert unauthorised.status == 401
        bad = await client.put("/v1/devices/l3-api", json={"host": "127.0.0.1", "speed": 1}, headers=AUTH)
        assert_problem(await bad.json(), 400, "speed")
        bad = await client.put("/v1/devices/l3-api", json={"host": "a host"}, headers=AUTH)
        assert_problem(await bad.json(), 400, "host")
        bad = await client.put("/v1/devices/bad%20name", json={"host": "h"}, headers=AUTH)
        assert_problem(await bad.json(), 400, "name")
        created = await client.put("/v1/devices/l3-api", headers=AUTH, json={
            "host": "127.0.0.1", "port": device.port, "model": "Antminer L3+", "worker": "farm.b"})
        assert created.status == 201, await created.text()
        assert created.headers["Location"] == "/v1/devices/l3-api"
        body = await created.json()
        valid("/v1/devices/{name}", "put", 201, body)
        assert (body["source"], body["status"], body["reading"]) == ("api", None, None)

        # The config's device is the file's to change.
        conflict = await client.put("/v1/devices/from-config", json={"host": "h"}, headers=AUTH)
        assert_problem(await conflict.json(), 409)
        conflict = await client.delete("/v1/devices/from-config", headers=AUTH)
        assert_problem(await conflict.json(), 409)

        await poller.refresh_devices()
        assert await poller.poll_due() == 2
        listed = await (await client.get("/v1/devices")).json()
        valid("/v1/devices", "get", 200, listed)
        assert [(d["name"], d["source"], d["ok"]) for d in listed["items"]] == [
            ("from-config", "config", True), ("l3-api", "api", True)]
        assert listed["items"][1]["hashrate_hs"] == pytest.approx(553.61e6)
        assert listed["items"][1]["temp_max_c"] == 57

        one = await (await client.get("/v1/devices/l3-api")).json()
        valid("/v1/devices/{name}", "get", 200, one)
        reading = one["reading"]
        assert one["status"]["ok"] and one["status"]["failures"] == 0
        assert reading["family"] == "bmminer" and reading["rate_unit"] == "MH"
        assert [c["chips_bad"] for c in reading["chains"]] == [13, 12, 1, 13]
        assert reading["fans_rpm"] == [2166, 2220] and reading["pools"][0]["active"]

        # The device dies: the status says why, the last good reading stays.
        await device.close()
        poller.clock = lambda: 1e10
        await poller.poll_due()
        one = await (await client.get("/v1/devices/l3-api")).json()
        valid("/v1/devices/{name}", "get", 200, one)
        assert not one["status"]["ok"] and "connection refused" in one["status"]["error"]
        assert one["status"]["failures"] == 1 and one["reading"]["hashrate_hs"] == pytest.approx(553.61e6)
        listed = await (await client.get("/v1/devices")).json()
        assert listed["items"][1]["ok"] is False and listed["items"][1]["hashrate_hs"] is None

        assert (await client.delete("/v1/devices/l3-api", headers=AUTH)).status == 204
        assert (await client.get("/v1/devices/l3-api")).status == 404
        assert await pool.fetchval("SELECT count(*) FROM asic_readings WHERE device = 'l3-api'") == 0
        # A device dropped from the config file leaves with the next start.
        await Poller(FleetConfig(devices=()), FleetMetrics(), pool).start()
        assert (await (await client.get("/v1/devices")).json())["items"] == []
    finally:
        await pool.close()
        await device.close()

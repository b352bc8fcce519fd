"""The fleet's SQL: the registered devices, each device's last poll, and the proxy's measure of a
worker (its accepted shares' difficulty over a window). Parameterised queries only."""

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from fleet.config import DeviceConfig
from fleet.reading import Reading


async def sync_config_devices(pool: asyncpg.Pool, devices: Sequence[DeviceConfig]) -> None:
    """Makes the config file's devices rows of source 'config', and drops config rows no longer in
    it. A device the API registered under the same name becomes the config's (the file wins)."""
    async with pool.acquire() as c, c.transaction():
        await c.execute("DELETE FROM asic_devices WHERE source = 'config' AND NOT name = ANY($1::text[])",
                        [d.name for d in devices])
        for d in devices:
            await c.execute(
                """INSERT INTO asic_devices (name, host, port, model, worker, rate_unit, source)
                   VALUES ($1, $2, $3, $4, $5, $6, 'config')
                   ON CONFLICT (name) DO UPDATE SET host = $2, port = $3, model = $4, worker = $5,
                       rate_unit = $6, source = 'config', updated_at = now()
                   WHERE (asic_devices.host, asic_devices.port, asic_devices.model, asic_devices.worker,
                          asic_devices.rate_unit, asic_devices.source)
                         IS DISTINCT FROM ($2, $3, $4, $5, $6, 'config')""",
                d.name, d.host, d.port, d.model, d.worker, d.rate_unit)


async def devices(conn: asyncpg.Connection | asyncpg.Pool) -> list[DeviceConfig]:
    rows = await conn.fetch(
        "SELECT name, host, port, model, worker, rate_unit FROM asic_devices ORDER BY name")
    return [DeviceConfig(name=r["name"], host=r["host"], port=r["port"], model=r["model"], worker=r["worker"],
                         rate_unit=r["rate_unit"]) for r in rows]


async def worker_difficulty(conn: asyncpg.Connection | asyncpg.Pool, worker: str, start: float,
                            end: float) -> tuple[float, int]:
    """Σ difficulty and the number of the shares the proxy accepted from `worker` in [start, end)."""
    row = await conn.fetchrow(
        """SELECT coalesce(sum(difficulty), 0) AS difficulty, count(*) AS shares FROM shares
           WHERE worker = $1 AND result = 'accepted' AND ts >= $2 AND ts < $3""",
        worker, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
    return float(row["difficulty"]), int(row["shares"])


async def record_reading(conn: asyncpg.Connection | asyncpg.Pool, device: str, at: float,
                         reading: Reading) -> None:
    await conn.execute(
        """INSERT INTO asic_readings (device, polled_at, ok, error, failures, read_at, reading)
           SELECT $1, $2, true, NULL, 0, $2, $3::jsonb
           WHERE EXISTS (SELECT 1 FROM asic_devices WHERE name = $1)
           ON CONFLICT (device) DO UPDATE SET polled_at = $2, ok = true, error = NULL, failures = 0,
               read_at = $2, reading = $3::jsonb""",
        device, datetime.fromtimestamp(at, UTC), json.dumps(reading.to_json(), allow_nan=False))


async def record_failure(conn: asyncpg.Connection | asyncpg.Pool, device: str, at: float, error: str,
                         failures: int) -> None:
    """A failed poll; the last good reading stays."""
    await conn.execute(
        """INSERT INTO asic_readings (device, polled_at, ok, error, failures)
           SELECT $1, $2, false, $3, $4 WHERE EXISTS (SELECT 1 FROM asic_devices WHERE name = $1)
           ON CONFLICT (device) DO UPDATE SET polled_at = $2, ok = false, error = $3, failures = $4""",
        device, datetime.fromtimestamp(at, UTC), error[:1000], failures)


async def record_comparison(conn: asyncpg.Connection | asyncpg.Pool, device: str, window_s: float,
                            device_hs: float, proxy_hs: float, shares: int, ratio: float | None) -> None:
    await conn.execute(
        """UPDATE asic_readings SET window_s = $2, device_window_hs = $3, proxy_hs = $4, window_shares = $5,
               disagreement = $6 WHERE device = $1""",
        device, window_s, device_hs, proxy_hs, shares, ratio)

"""`qscrypt fleet --once` as an operator runs it first: a real process reading a device on
loopback (the recorded L3+ answers) and a port where nothing listens."""

import asyncio
import json
import os
import sys
from pathlib import Path

from qscrypt.db.embedded import free_port
from tests.fleet import devices as shapes
from tests.fleet.devices import Device

REPO = Path(__file__).resolve().parents[2]


async def test_fleet_once_prints_each_reading_and_fails_on_a_dead_device() -> None:
    device = await Device(shapes.l3).start()
    dead = free_port()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "fleet", "--once", "--device", f"l3=127.0.0.1:{device.port}",
            "--device", f"gone=127.0.0.1:{dead}", cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await device.close()
    assert process.returncode == 1, err.decode()
    result = json.loads(out)
    assert result["l3"]["ok"] and result["l3"]["reading"]["hashrate_hs"] == 553.61e6
    assert result["l3"]["reading"]["chips_bad"] == 39
    assert not result["gone"]["ok"] and "connection refused" in result["gone"]["error"]
    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "fleet", "--once", "--device", "bad name=h", cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(bad.communicate(), 60)
    assert bad.returncode != 0 and b"--device 'bad name=h'" in err, err

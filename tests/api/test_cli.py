"""`qscrypt api`: the [api] section mapped onto ApiConfig, and a real start and stop."""

import argparse
import asyncio
import os
import signal

import aiohttp
import pytest

from api.cli import add_arguments, main
from qscrypt.config import DatabaseConfig
from qscrypt.db.embedded import free_port
from qscrypt.settings import ConfigError


def parse(argv: list[str], api: dict[str, object]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.section, args.database = api, DatabaseConfig()
    return args


@pytest.mark.parametrize(
    ("section", "key"),
    [({"colour": "red"}, "api.colour"), ({"port": "80"}, "api.port"), ({"min_dwell_s": -1.0}, "api")],
)
def test_a_bad_api_section_names_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        main(parse([], section))
    assert raised.value.key == key


async def test_it_serves_until_signalled(pg_dsn: str) -> None:
    port = free_port()
    args = parse(["--port", str(port), "--dsn", pg_dsn], {"host": "127.0.0.1", "min_dwell_s": 60.0})
    task = asyncio.create_task(main(args))
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(f"http://127.0.0.1:{port}/v1/profiles") as response:
                    assert (await response.json())["items"][0]["name"] == "default"
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the API did not start")
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 10) == 0

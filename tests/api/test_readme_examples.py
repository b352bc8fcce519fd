"""Every `curl` example in README.md, run as written against a live API on the aggregator's data."""

import asyncio
import os
import re
import shlex
from pathlib import Path

from tests.api.conftest import TOKEN, ClientFactory

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_curl_commands() -> list[str]:
    """The README's curl commands, continuation lines joined."""
    text = README.read_text()
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        current: list[str] | None = None
        for line in block.splitlines():
            if line.startswith("curl "):
                current = [line]
                commands.append("")
            elif current is not None and line.startswith(" "):
                current.append(line)  # a continuation, or the rest of a quoted JSON body
            else:
                current = None
            if current is not None:
                commands[-1] = "\n".join(current)
    return commands


async def test_every_readme_curl_example_answers_2xx(market_dsn: str, make_client: ClientFactory) -> None:
    commands = readme_curl_commands()
    # decisions, one decision, profitability, history, POST, PUT; a device's PUT, list, GET, DELETE;
    # paying miners: register, balances, payouts, the admin's payouts, a fee
    assert len(commands) == 15, commands
    client = await make_client(market_dsn)
    base = f"127.0.0.1:{client.port}"
    env = {**os.environ, "QSCRYPT_API_TOKEN": TOKEN}
    for command in commands:
        assert "localhost:8080" in command, command
        runnable = command.replace("localhost:8080", base) + " -o /dev/null -w '%{http_code}'"
        shlex.split(runnable)  # as a shell reads it
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", runnable, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        status = out.decode().strip()[-3:]
        assert status.startswith("2"), f"{command}\n -> HTTP {status} {err.decode()}"

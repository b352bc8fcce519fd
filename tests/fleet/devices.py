"""Real TCP servers on loopback that answer the cgminer API as a device would: with the recorded
L3+ answers, or with one malformed shape each. A peer of our own, for what no real device does on
demand (cut answers, never answering, closing early)."""

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fleet.answers import STATUS_E, l3_joined_text, l3_json, l3_text

Behaviour = Callable[[str], bytes | None]
"""command asked → the bytes to answer (None: answer nothing and keep the connection open)."""


def command_of(request: bytes) -> str:
    text = request.decode(errors="replace").strip("\0\n ")
    if text.startswith("{"):
        return str(json.loads(text)["command"])
    return text.split("|", 1)[0]


def l3(command: str) -> bytes:
    """The L3+'s answers as it would send them when asked in JSON."""
    return l3_json(command)


def l3_plain(command: str) -> bytes:
    """… and when asked in plain text (it ends text answers with a NUL too)."""
    if "+" in command:
        return l3_joined_text(command) + b"\0"
    return l3_text()[command] + b"\0"


def truncated(command: str) -> bytes:
    return l3_json(command)[:180]


def status_e(command: str) -> bytes:
    return STATUS_E


def missing_sections(command: str) -> bytes:
    return b'{"STATUS":[{"STATUS":"S","When":1,"Code":11,"Msg":"Summary","Description":"cgminer"}],"id":1}\0'


def wrong_units(command: str) -> bytes:
    if command.startswith("summary"):
        return (b'{"STATUS":[{"STATUS":"S","Description":"cgminer 4.9"}],"SUMMARY":[{"GHS av":"many",'
                b'"MHS 5s":"n/a","Elapsed":10,"Accepted":1,"Rejected":0,"Hardware Errors":0}],"id":1}\0')
    return STATUS_E


def never(command: str) -> bytes | None:
    return None


def close_early(command: str) -> bytes:
    return b""


@dataclass
class Device:
    behaviour: Behaviour
    commands: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None
    keep_open: bool = False
    """Answer without closing the connection (some firmwares), like a `never` device after it."""
    on_close: Callable[[], None] | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> "Device":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = await asyncio.wait_for(reader.read(4096), 10)
            command = command_of(raw)
            self.commands.append(command)
            answer = self.behaviour(command)
            if answer is None or self.keep_open:
                if answer:
                    writer.write(answer.rstrip(b"\0"))
                    await writer.drain()
                await reader.read()  # until the client gives up
                return
            writer.write(answer)
            await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            if self.on_close is not None:
                self.on_close()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

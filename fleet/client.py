"""The cgminer API over TCP: one connection per command, as the protocol has it (the miner answers
and closes). Every failure is a `DeviceError` naming the device and what went wrong; a device that
accepts and never answers costs at most `timeout_s`."""

import asyncio

from fleet.cgminer import AnswerError, Reply, parse, request

MAX_ANSWER = 1 << 20
"""cgminer caps its answers near 64 KiB; a megabyte is a device gone wrong, not a bigger answer."""


class DeviceError(RuntimeError):
    """A device that could not be read this time, and why."""


async def query(host: str, port: int, command: str, *, timeout_s: float = 5.0,
                json_format: bool = True) -> dict[str, Reply]:
    """Ask `command` (`summary+pools`, `stats`…) and parse the answer, within `timeout_s` in all."""
    where = f"{host}:{port}"
    raw = b""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request(command, json_format))
                await writer.drain()
                while len(raw) <= MAX_ANSWER:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    raw += chunk
                    if b"\0" in chunk:  # the answer is complete; some firmwares keep the socket open
                        break
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except OSError:
                    pass
    except TimeoutError:
        if raw:
            # A firmware that neither ends with NUL nor closes: what it sent may be the whole answer.
            try:
                return parse(raw, command)
            except AnswerError as exc:
                raise DeviceError(f"{where}: {command} timed out after {timeout_s:g} s with an unusable "
                                  f"answer of {len(raw)} bytes ({exc})") from None
        raise DeviceError(f"{where}: {command} timed out after {timeout_s:g} s (no answer)") from None
    except ConnectionRefusedError:
        raise DeviceError(f"{where}: {command}: connection refused (nothing listens there)") from None
    except OSError as exc:
        raise DeviceError(f"{where}: {command}: {exc.strerror or exc}") from None
    if len(raw) > MAX_ANSWER:
        raise DeviceError(f"{where}: {command}: answer longer than {MAX_ANSWER} bytes")
    try:
        return parse(raw, command)
    except AnswerError as exc:
        raise DeviceError(f"{where}: {exc}") from None

"""How many ASICs one fleet poller reads: wall time of one poll round over N devices.

    python -m bench.fleet [--devices N] [--concurrency C] [--ports P] [--rounds R]

The devices are P TCP servers in another process (so the poller's loop is measured, not theirs),
each answering every connection with the recorded Antminer L3+ answers (../shared/vectors/asic/,
as JSON, NUL-terminated); N device names are spread over them. One round is what the poller does
every poll_s: `summary+pools` then `stats` for each device, parsed and normalised, metrics set
(no database). Printed: rounds per second, devices per second, CPU of the poller process per
device, and as a reference measured in the same run, the parse+read alone per device (no sockets).
At poll_s = 30 s one process must read N/30 devices a second.
"""

import argparse
import asyncio
import multiprocessing
import os
import resource
import statistics
import time
from multiprocessing.connection import Connection

import uvloop

from fleet.cgminer import parse
from fleet.config import DeviceConfig, FleetConfig
from fleet.families import read
from fleet.metrics import FleetMetrics
from fleet.poller import Poller
from tests.fleet.answers import l3_json

ANSWERS = {c: l3_json(c) for c in ("summary+pools", "stats", "summary", "pools")}


def _serve(ports: int, pipe: Connection) -> None:
    async def main() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw = await reader.read(4096)
            command = "stats" if b"stats" in raw else "summary+pools"
            writer.write(ANSWERS[command])
            await writer.drain()
            writer.close()

        servers = [await asyncio.start_server(answer, "127.0.0.1", 0, backlog=4096) for _ in range(ports)]
        pipe.send([s.sockets[0].getsockname()[1] for s in servers])
        await asyncio.Event().wait()

    uvloop.run(main())


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(ports: list[int], devices: int, concurrency: int, rounds: int) -> tuple[list[float], float]:
    config = FleetConfig(poll_s=30, timeout_s=10, concurrency=concurrency, max_devices=devices, devices=tuple(
        DeviceConfig(name=f"l3-{i}", host="127.0.0.1", port=ports[i % len(ports)]) for i in range(devices)))
    clock = [time.time()]
    poller = Poller(config, FleetMetrics(), clock=lambda: clock[0])
    await poller.refresh_devices()
    await poller.poll_due()  # warm-up
    walls = []
    began_cpu = cpu_s()
    for _ in range(rounds):
        clock[0] += 30
        began = time.perf_counter()
        polled = await poller.poll_due()
        walls.append(time.perf_counter() - began)
        assert polled == devices
    failed = [s.error for s in poller.states.values() if s.error]
    assert not failed, failed[:3]
    return walls, (cpu_s() - began_cpu) / (rounds * devices)


def parse_only(iterations: int) -> float:
    began = time.perf_counter()
    for _ in range(iterations):
        replies = dict(parse(ANSWERS["summary+pools"], "summary+pools"))
        replies.update(parse(ANSWERS["stats"], "stats"))
        read(replies)
    return (time.perf_counter() - began) / iterations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--ports", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(args.ports, theirs), daemon=True)
    server.start()
    try:
        ports = ours.recv()
        walls, cpu = uvloop.run(measure(ports, args.devices, args.concurrency, args.rounds))
        reference = parse_only(2000)
    finally:
        server.terminate()
        server.join()
    wall = statistics.median(walls)
    print(f"bench.fleet: {args.devices} devices over {args.ports} ports, concurrency {args.concurrency}, "
          f"{args.rounds} rounds, {os.cpu_count()} CPUs")
    print(f"  one poll round (summary+pools, stats; parsed, normalised, metrics set): median {wall:.2f} s "
          f"(min {min(walls):.2f}, max {max(walls):.2f}) = {args.devices / wall:,.0f} devices/s")
    print(f"  poller CPU per device read: {cpu * 1e3:.2f} ms; at poll_s 30 one process reads up to "
          f"{30 * args.devices / wall:,.0f} devices")
    print(f"  reference, same run: parse + read of the same answers alone (no sockets): "
          f"{reference * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

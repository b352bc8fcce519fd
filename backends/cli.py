"""`qscrypt miner`: options and entry point, for cli/main.py to wire as a subcommand."""

import argparse
import asyncio
import sys

from backends import tuning
from backends.devices import EngineOptions, format_devices, list_devices
from backends.miner import MinerConfig, parse_url, run_miner
from backends.opencl import KernelParams
from qscrypt.signals import stop_on_signals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--url", help="pool, stratum+tcp://HOST:PORT")
    parser.add_argument("-u", "--user", default="", help="worker name")
    parser.add_argument("-p", "--password", default="x", help="worker password")
    parser.add_argument("--engine", choices=("auto", "cpu", "opencl"), default="auto",
                        help="hashing engine; auto measures each and keeps the fastest (default)")
    parser.add_argument("--threads", type=int, help="CPU engine threads (default: one per core)")
    parser.add_argument("--cpu-share", type=float,
                        help="CPU engine threads as a fraction of the cores, e.g. 0.5")
    parser.add_argument("--device", type=int, help="OpenCL device index from --list-devices")
    parser.add_argument("--lanes", type=int, help="OpenCL nonces per work-item (1, 2, 4, 8, 16)")
    parser.add_argument("--lookup-gap", type=int, default=1, help="OpenCL scratchpad lookup gap")
    parser.add_argument("--work-items", type=int, help="OpenCL work-items per launch")
    parser.add_argument("--list-devices", action="store_true", help="list engines and devices, then exit")
    parser.add_argument("--retune", action="store_true",
                        help="measure the engines again instead of reusing this machine's earlier results")


def engine_options(args: argparse.Namespace) -> EngineOptions:
    kernel = None
    if args.lanes is not None or args.work_items is not None:
        # Any kernel option fixes the shape; the rest take the CPU-friendly defaults.
        defaults = KernelParams()
        kernel = KernelParams(
            lanes=args.lanes if args.lanes is not None else defaults.lanes,
            lookup_gap=args.lookup_gap,
            work_items=args.work_items if args.work_items is not None else defaults.work_items,
        )
    # The self-benchmark's answer is kept per device and driver: a restart (every Qubic idle phase)
    # hashes at once instead of measuring for a second and a half.
    return EngineOptions(engine=args.engine, threads=args.threads, cpu_share=args.cpu_share,
                         opencl_device=args.device, kernel=kernel, tuning_cache=tuning.default_path(),
                         retune=args.retune)


async def main(args: argparse.Namespace) -> int:
    if args.list_devices:
        entries, problem = await asyncio.to_thread(list_devices)
        print(format_devices(entries, problem))
        return 0
    try:
        if not args.url:
            raise ValueError("-o stratum+tcp://HOST:PORT is required")
        parse_url(args.url)
        options = engine_options(args)
    except ValueError as error:
        print(f"qscrypt miner: {error}", file=sys.stderr)
        return 2
    with stop_on_signals() as stop:
        await run_miner(MinerConfig(url=args.url, user=args.user, password=args.password, engine=options),
                        stop)
    return 0

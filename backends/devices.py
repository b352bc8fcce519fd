"""Which engines and devices this machine has, and building the engine a miner asked for.

`create_engine` never fails for lack of OpenCL: no platform, no device, or a kernel that does not
build all log one clear line and fall back to the CPU engine.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from backends.cpu import CpuEngine, describe_cpu, resolve_threads
from backends.engine import Engine, measure_hashrate
from backends.opencl import KernelParams, OpenClEngine, OpenClUnavailable, describe_device, opencl_devices
from backends.tuning import TuningCache, key_of

log = structlog.get_logger(__name__)

EngineKind = Literal["auto", "cpu", "opencl"]


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    engine: str  # "cpu" or "opencl"
    index: int  # position among the engine's devices (OpenCL: every platform's devices in order)
    description: str


@dataclass(frozen=True, slots=True)
class EngineOptions:
    engine: EngineKind = "auto"
    threads: int | None = None  # CPU engine threads (default: cpu_share of the cores)
    cpu_share: float | None = None
    opencl_device: int | None = None  # index from list_devices(); default: try each, keep the fastest
    kernel: KernelParams | None = None  # fixed OpenCL kernel shape instead of the self-benchmark
    kernel_source: str | None = None  # OpenCL C source instead of backends/kernels/scrypt.cl
    tune_seconds: float = 0.3  # per candidate in the self-benchmark, and for the CPU engine in "auto"
    tuning_cache: Path | None = None  # keep self-benchmark results here (the commands: backends.tuning)
    retune: bool = False  # measure again even when the cache has an answer, and keep the new one

    def cache(self) -> TuningCache | None:
        return None if self.tuning_cache is None else TuningCache(self.tuning_cache, self.retune)


def list_devices() -> tuple[list[DeviceEntry], str | None]:
    """Every device an engine can use, and why OpenCL offers none when it does not."""
    entries = [DeviceEntry("cpu", 0, describe_cpu(resolve_threads()))]
    try:
        devices = opencl_devices()
    except OpenClUnavailable as error:
        return entries, str(error)
    entries += [DeviceEntry("opencl", index, describe_device(device)) for index, device in enumerate(devices)]
    return entries, None


def format_devices(entries: list[DeviceEntry], problem: str | None) -> str:
    lines = [f"{entry.engine:<7} {entry.index:>2}  {entry.description}" for entry in entries]
    if problem is not None:
        lines.append(f"opencl      unavailable: {problem}")
    return "\n".join(lines)


def _opencl_engines(options: EngineOptions) -> list[OpenClEngine]:
    devices = opencl_devices()
    if options.opencl_device is not None:
        if not 0 <= options.opencl_device < len(devices):
            raise OpenClUnavailable(f"no OpenCL device {options.opencl_device} (found {len(devices)})")
        devices = [devices[options.opencl_device]]
    engines: list[OpenClEngine] = []
    problems: list[str] = []
    for device in devices:
        try:
            engines.append(OpenClEngine(device, options.kernel, source=options.kernel_source,
                                        tune_seconds=options.tune_seconds, tuning_cache=options.cache()))
        except OpenClUnavailable as error:
            problems.append(str(error))
    if not engines:
        raise OpenClUnavailable("; ".join(problems))
    return engines


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        return ""


def _measured(engine: Engine, seconds: float, cache: TuningCache | None) -> float:
    """The engine's rate for the "auto" choice: from the cache when this engine was measured here."""
    shape = engine.params.describe() if isinstance(engine, OpenClEngine) else ""
    key = key_of("rate", engine.name, engine.device, shape, _cpu_model())
    entry = cache.get(key) if cache is not None else None
    if entry is not None and isinstance(entry.get("hashrate"), (int, float)) and entry["hashrate"] > 0:
        return float(entry["hashrate"])
    rate = measure_hashrate(engine, seconds)
    if cache is not None:
        cache.put(key, {"engine": engine.name, "device": engine.device, "hashrate": rate})
    return rate


def create_engine(options: EngineOptions) -> Engine:
    """The engine asked for; with "auto", the fastest by a short measurement of each. Blocks for it."""
    cpu = CpuEngine(options.threads, options.cpu_share)
    if options.engine == "cpu":
        return cpu
    try:
        engines: list[Engine] = list(_opencl_engines(options))
    except OpenClUnavailable as error:
        log.warning(f"OpenCL engine unavailable ({error}); falling back to the CPU engine ({cpu.device})")
        return cpu
    if options.engine == "auto":
        engines.append(cpu)
        cache = options.cache()
        for engine in engines:
            if not engine.hashrate:  # the CPU engine, or OpenCL with fixed parameters: not tuned
                engine.hashrate = _measured(engine, options.tune_seconds, cache)
            log.debug("engine measured", engine=engine.name, device=engine.device,
                      khs=round(engine.hashrate / 1000, 2))
    best = max(engines, key=lambda engine: engine.hashrate)
    for engine in engines:
        if engine is not best:
            engine.close()
    log.info("hashing engine chosen", engine=best.name, device=best.device,
             khs=round(best.hashrate / 1000, 2))
    return best

"""OpenCL engine: backends/kernels/scrypt.cl built for one device, launched over nonce ranges.

Kernel parameters (nonces per work-item as SIMD lanes, lookup gap, work-items per launch) are picked
at start by a short self-benchmark over candidates suited to the device type, unless given; with a
`TuningCache`, the choice is kept per device, driver and kernel source and the next start skips it.
Two launches stay queued so the device never idles while the host reads results; a cancel is
seen between launches, so its latency is bounded by about two launch times.
"""

import hashlib
import math
import struct
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyopencl as cl
import structlog

from backends.engine import CancelToken, Scan, ScanEngine, SearchWork
from backends.tuning import TuningCache, key_of

log = structlog.get_logger(__name__)

KERNEL_PATH = Path(__file__).parent / "kernels" / "scrypt.cl"
SCRYPT_N = 1024
ROW_BYTES = 128
JOB_WORDS = 32
LANE_CHOICES = (1, 2, 4, 8, 16)


class OpenClUnavailable(RuntimeError):
    """No usable OpenCL platform or device, or the kernel does not build: callers fall back to CPU."""


@dataclass(frozen=True, slots=True)
class KernelParams:
    lanes: int = 8  # nonces per work-item, one per vector lane
    lookup_gap: int = 1  # keep every lookup_gap-th scratchpad row, recompute the rest
    work_items: int = 32  # global work size of one launch
    local_size: int | None = 1  # None lets the driver choose

    def __post_init__(self) -> None:
        if self.lanes not in LANE_CHOICES:
            raise ValueError(f"lanes must be one of {LANE_CHOICES}")
        if self.lookup_gap < 1 or SCRYPT_N % self.lookup_gap:
            raise ValueError("lookup_gap must divide 1024")
        if self.work_items < 1:
            raise ValueError("work_items must be positive")
        if self.local_size is not None and (self.local_size < 1 or self.work_items % self.local_size):
            raise ValueError("work_items must be a multiple of local_size")

    @property
    def nonces_per_launch(self) -> int:
        return self.work_items * self.lanes

    @property
    def scratch_bytes(self) -> int:
        return self.work_items * self.lanes * (SCRYPT_N // self.lookup_gap) * ROW_BYTES

    @property
    def build_options(self) -> list[str]:
        return [f"-DLANES={self.lanes}", f"-DLOOKUP_GAP={self.lookup_gap}"]

    def describe(self) -> str:
        local = "auto" if self.local_size is None else str(self.local_size)
        return f"lanes={self.lanes} gap={self.lookup_gap} items={self.work_items} local={local}"


def opencl_devices() -> list[cl.Device]:
    """Every device of every platform; raises OpenClUnavailable saying why there is none."""
    try:
        platforms = cl.get_platforms()
    except cl.Error as error:
        raise OpenClUnavailable(f"no OpenCL platform ({error})") from error
    devices = [device for platform in platforms for device in platform.get_devices()]
    if not devices:
        raise OpenClUnavailable("OpenCL platforms found but no device")
    return devices


def device_kind(device: cl.Device) -> str:
    for flag, kind in ((cl.device_type.GPU, "GPU"), (cl.device_type.CPU, "CPU"),
                       (cl.device_type.ACCELERATOR, "accelerator")):
        if device.type & flag:
            return kind
    return "other"


def describe_device(device: cl.Device) -> str:
    kind = device_kind(device)
    return (f"{device.name} ({kind}, {device.platform.name}, {device.max_compute_units} compute units, "
            f"{device.global_mem_size >> 20} MiB)")


def candidate_params(device: cl.Device) -> list[KernelParams]:
    """Shapes worth a self-benchmark on this device, the expected best first."""
    units = device.max_compute_units
    if device.type & cl.device_type.CPU:
        # SIMD lanes across nonces; a work-group of one work-item per core thread. LANES=8 fills an
        # AVX2 register (fastest here); 16 suits AVX-512; 4 is for SSE-only machines.
        return [KernelParams(lanes, 1, units * items, 1) for lanes, items in ((8, 16), (16, 8), (4, 32))]
    # GPU shape: one nonce per work-item, enough work-items to fill the device, the lookup gap
    # trading recomputation for memory where memory caps the work-item count.
    memory = min(device.max_mem_alloc_size, device.global_mem_size // 2)
    shapes: list[KernelParams] = []
    for gap in (1, 2, 4):
        per_item = SCRYPT_N // gap * ROW_BYTES
        items = min(units * 1024, memory // per_item) // 64 * 64
        if items >= 64:
            shapes.append(KernelParams(1, gap, items, None))
    return shapes


def job_words(header_prefix: bytes, target: int) -> np.ndarray:
    """The kernel's constant job block: header words 0..18 big-endian, target limbs at 24..31."""
    words = np.zeros(JOB_WORDS, dtype=np.uint32)
    words[:19] = struct.unpack(">19I", header_prefix)
    words[24:32] = [(target >> (32 * k)) & 0xFFFFFFFF for k in range(8)]
    return words


class OpenClEngine(ScanEngine):
    name = "opencl"

    def __init__(
        self,
        device: cl.Device | None = None,
        params: KernelParams | None = None,
        *,
        source: str | None = None,
        tune_seconds: float = 0.3,
        tuning_cache: TuningCache | None = None,
    ) -> None:
        super().__init__()
        if device is None:
            device = opencl_devices()[0]
        self.cl_device = device
        self.device = describe_device(device)
        self._source = KERNEL_PATH.read_text() if source is None else source
        try:
            self._context = cl.Context([device])
            self._queue = cl.CommandQueue(self._context)
            self._job = cl.Buffer(self._context, cl.mem_flags.READ_ONLY, JOB_WORDS * 4)
        except cl.Error as error:
            raise OpenClUnavailable(f"cannot use {device.name}: {error}") from error
        self._programs: dict[tuple[int, int], cl.Program] = {}
        self.tuning: list[tuple[KernelParams, float]] = []
        self.tuning_cached = False  # the shape came from the tuning cache, not a measurement
        if params is None:
            candidates = candidate_params(device)
            key = self._tuning_key(candidates)
            params = self._cached_params(tuning_cache, key, candidates)
            if params is None:
                params = self._tune(candidates, tune_seconds)
                if tuning_cache is not None:
                    shape = [params.lanes, params.lookup_gap, params.work_items, params.local_size]
                    tuning_cache.put(key, {"engine": "opencl", "device": self.device,
                                           "hashrate": self.hashrate, "params": shape})
        self._configure(params)

    # -- set-up ------------------------------------------------------------------------------

    def _tuning_key(self, candidates: list[KernelParams]) -> str:
        """Everything that can change the best shape: the driver, the device, the kernel, the choices."""
        device, platform = self.cl_device, self.cl_device.platform
        return key_of("opencl", platform.name, platform.version, device.name, device.vendor, device.version,
                      device.driver_version, device.max_compute_units, device.global_mem_size,
                      hashlib.sha256(self._source.encode()).hexdigest(), [c.describe() for c in candidates])

    def _cached_params(self, cache: TuningCache | None, key: str,
                       candidates: list[KernelParams]) -> KernelParams | None:
        entry = cache.get(key) if cache is not None else None
        if entry is None:
            return None
        try:
            params = KernelParams(*entry["params"])
            rate = float(entry["hashrate"])
        except (KeyError, TypeError, ValueError):
            return None
        if params not in candidates or rate <= 0:
            return None
        self.hashrate = rate
        self.tuning_cached = True
        log.info("opencl parameters from the tuning cache", device=self.cl_device.name,
                 params=params.describe(), khs=round(rate / 1000, 2))
        return params

    def _program(self, params: KernelParams) -> cl.Program:
        key = (params.lanes, params.lookup_gap)
        if key not in self._programs:
            try:
                with warnings.catch_warnings():
                    # A successful build with a non-empty log is not our problem to print.
                    warnings.simplefilter("ignore", cl.CompilerWarning)
                    program = cl.Program(self._context, self._source).build(options=params.build_options)
            except cl.Error as error:
                raise OpenClUnavailable(
                    f"scrypt kernel failed to build for {self.cl_device.name} ({params.describe()}): {error}"
                ) from error
            self._programs[key] = program
        return self._programs[key]

    def _configure(self, params: KernelParams) -> None:
        program = self._program(params)
        try:
            self._kernel = cl.Kernel(program, "scrypt_search")
            self._scratch = cl.Buffer(self._context, cl.mem_flags.READ_WRITE, params.scratch_bytes)
        except cl.Error as error:
            raise OpenClUnavailable(f"cannot set up {params.describe()} "
                                    f"({params.scratch_bytes >> 20} MiB scratchpad): {error}") from error
        self.params = params
        slot_words = 1 + params.nonces_per_launch
        self._slots = [self._slot(slot_words) for _ in range(2)]

    def _slot(self, words: int) -> tuple[cl.Buffer, np.ndarray]:
        """A launch's output: device buffer and the host array it is read into."""
        return cl.Buffer(self._context, cl.mem_flags.READ_WRITE, words * 4), np.zeros(words, np.uint32)

    def _tune(self, candidates: list[KernelParams], seconds: float) -> KernelParams:
        if not candidates:
            raise OpenClUnavailable(f"no kernel shape fits {self.cl_device.name}")
        best: tuple[KernelParams, float] | None = None
        problems: list[str] = []
        for params in candidates:
            try:
                self._configure(params)
                rate = self._benchmark(seconds)
            except OpenClUnavailable as error:
                problems.append(str(error))
                continue
            self.tuning.append((params, rate))
            log.debug("opencl candidate", params=params.describe(), khs=round(rate / 1000, 2))
            if best is None or rate > best[1]:
                best = (params, rate)
        if best is None:
            raise OpenClUnavailable("; ".join(problems))
        log.info("opencl parameters chosen", device=self.cl_device.name, params=best[0].describe(),
                 khs=round(best[1] / 1000, 2))
        self.hashrate = best[1]
        return best[0]

    def _benchmark(self, seconds: float) -> float:
        """H/s of the configured shape: a warm-up launch (PoCL compiles on it), then `seconds` of launches."""
        work = SearchWork(bytes(76), 0, self.params.nonces_per_launch, 0)
        never = CancelToken()
        self.scan(work, never)
        hashes = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds or hashes == 0:
            hashes += self.scan(work, never).hashes_done
        return hashes / elapsed

    # -- search ------------------------------------------------------------------------------

    def scan(self, work: SearchWork, cancel: CancelToken) -> Scan:
        params = self.params
        cl.enqueue_copy(self._queue, self._job, job_words(work.header_prefix, work.target))
        max_out = np.uint32(params.nonces_per_launch)
        local = None if params.local_size is None else (params.local_size,)
        step = params.local_size or 1
        pending: deque[tuple[cl.Event, tuple[cl.Buffer, np.ndarray], int, int]] = deque()
        free = list(self._slots)
        candidates: list[int] = []
        done = 0
        offset = 0
        while True:
            while free and offset < work.nonce_count and not cancel.cancelled:
                count = min(params.nonces_per_launch, work.nonce_count - offset)
                items = math.ceil(math.ceil(count / params.lanes) / step) * step
                slot = free.pop()
                buffer, host = slot
                cl.enqueue_fill_buffer(self._queue, buffer, np.uint32(0), 0, 4)
                self._kernel(self._queue, (items,), local, self._job, np.uint32(work.nonce_start + offset),
                             self._scratch, buffer, max_out)
                event = cl.enqueue_copy(self._queue, host, buffer, is_blocking=False)
                pending.append((event, slot, work.nonce_start + offset, count))
                offset += count
            if not pending:
                break
            event, slot, base, count = pending.popleft()
            event.wait()
            host = slot[1]
            hits = int(host[0])
            # Lanes past the end of the range ran too; their nonces are not part of this search.
            reported = host[1 : 1 + min(hits, int(max_out))].tolist()
            candidates += [nonce for nonce in reported if base <= nonce < base + count]
            done += count
            free.append(slot)
        # Launches complete in order and a cancel only stops new ones: the hashed part is a prefix.
        left = work.nonce_count - done
        return Scan(candidates, done, left > 0, ((work.nonce_start + done, left),) if left else ())

    def close(self) -> None:
        self._queue.finish()

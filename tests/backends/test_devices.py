"""Device listing, the automatic choice, and the CPU fallback when OpenCL cannot be had."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from backends import cli
from backends.cpu import CpuEngine
from backends.devices import EngineOptions, create_engine, format_devices, list_devices
from backends.opencl import KernelParams, OpenClEngine, OpenClUnavailable, candidate_params, opencl_devices
from tests.backends.conftest import OPENCL_CPU_SHAPE

REPO = Path(__file__).resolve().parents[2]


def test_list_devices_shows_the_cpu_and_the_pocl_device() -> None:
    entries, problem = list_devices()
    assert problem is None, f"OpenCL must be available in this environment: {problem}"
    assert [e.engine for e in entries][:1] == ["cpu"]
    assert any(e.engine == "opencl" and "CPU" in e.description for e in entries)
    text = format_devices(entries, problem)
    assert "opencl" in text and "compute units" in text


def test_self_benchmark_picks_the_fastest_candidate() -> None:
    engine = OpenClEngine(tune_seconds=0.1)
    assert [params for params, _ in engine.tuning] == candidate_params(engine.cl_device)
    best = max(engine.tuning, key=lambda entry: entry[1])
    assert engine.params == best[0]
    assert engine.hashrate == best[1] > 0


def test_auto_keeps_the_faster_engine() -> None:
    with capture_logs() as logs:
        engine = create_engine(EngineOptions("auto", threads=1, kernel=OPENCL_CPU_SHAPE, tune_seconds=0.2))
    try:
        measured = {entry["engine"]: entry["khs"] for entry in logs if entry["event"] == "engine measured"}
        assert set(measured) == {"opencl", "cpu"}
        # Which wins depends on the CPU (our AVX-512 scrypt on one thread beats PoCL's kernel on
        # all the cores here; without SIMD it would not): the one kept is the one measured faster.
        assert engine.name == max(measured, key=measured.__getitem__)
        assert engine.hashrate > 0
    finally:
        engine.close()


def test_kernel_build_failure_falls_back_to_cpu_with_a_clear_message() -> None:
    options = EngineOptions("opencl", threads=1, kernel=OPENCL_CPU_SHAPE,
                            kernel_source="__kernel void scrypt_search(__global uint *out) { syntax error }")
    with capture_logs() as logs:
        engine = create_engine(options)
    assert isinstance(engine, CpuEngine)
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    message = warning["event"]
    assert "OpenCL engine unavailable" in message
    assert "scrypt kernel failed to build" in message
    assert "falling back to the CPU engine" in message
    engine.close()


def test_build_failure_raises_for_a_direct_engine() -> None:
    with pytest.raises(OpenClUnavailable, match="failed to build"):
        OpenClEngine(params=OPENCL_CPU_SHAPE, source="not OpenCL C")
    with pytest.raises(OpenClUnavailable, match="cannot set up"):
        OpenClEngine(params=OPENCL_CPU_SHAPE, source="__kernel void other(__global uint *o) { o[0] = 1; }")


def test_unknown_device_index_falls_back_to_cpu() -> None:
    with capture_logs() as logs:
        engine = create_engine(EngineOptions("opencl", threads=1, opencl_device=len(opencl_devices())))
    assert engine.name == "cpu"
    assert "no OpenCL device" in logs[0]["event"]
    engine.close()


def test_missing_platform_falls_back_to_cpu(tmp_path: Path) -> None:
    """A real process whose ICD loader finds no vendor at all (an empty OCL_ICD_VENDORS directory)."""
    script = (
        "from backends.devices import EngineOptions, create_engine, list_devices\n"
        "print('PROBLEM', list_devices()[1])\n"
        "print('ENGINE', create_engine(EngineOptions('opencl', threads=1)).name)\n"
    )
    env = {**os.environ, "OCL_ICD_VENDORS": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    output = done.stdout + done.stderr
    assert "PROBLEM no OpenCL platform" in output
    assert "OpenCL engine unavailable (no OpenCL platform" in output
    assert "falling back to the CPU engine" in output
    assert "ENGINE cpu" in output


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


async def test_cli_lists_devices(capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli.main(_args("--list-devices")) == 0
    out = capsys.readouterr().out
    assert out.startswith("cpu") and "opencl" in out


async def test_cli_refuses_a_missing_or_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli.main(_args("-u", "w")) == 2
    assert await cli.main(_args("-o", "http://pool:80", "-u", "w")) == 2
    assert "stratum+tcp" in capsys.readouterr().err


def test_cli_kernel_options_fix_the_shape() -> None:
    options = cli.engine_options(_args("--engine", "opencl", "--lanes", "16", "--lookup-gap", "2"))
    assert options.kernel == KernelParams(lanes=16, lookup_gap=2, work_items=KernelParams().work_items)
    assert cli.engine_options(_args()).kernel is None

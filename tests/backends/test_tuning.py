"""The self-benchmark's answer kept between runs: a restart (every Qubic idle phase) skips it."""

import json
from pathlib import Path

from backends.cpu import CpuEngine
from backends.devices import EngineOptions, create_engine
from backends.opencl import OpenClEngine, candidate_params
from backends.tuning import MAX_AGE_S, TuningCache
from tests.backends.conftest import OPENCL_CPU_SHAPE


def test_cache_keeps_entries_until_they_expire(tmp_path: Path) -> None:
    cache = TuningCache(tmp_path / "deep" / "tuning.json")
    assert cache.get("k") is None  # no file yet
    cache.put("k", {"hashrate": 5.0}, now=1000.0)
    cache.put("other", {"hashrate": 6.0}, now=1000.0)
    assert cache.get("k", now=1000.0 + MAX_AGE_S - 1) == {"hashrate": 5.0, "at": 1000.0}
    assert cache.get("k", now=1000.0 + MAX_AGE_S + 1) is None
    assert cache.get("k", now=999.0) is None  # written "in the future": the clock moved, measure again
    assert TuningCache(cache.path, refresh=True).get("k", now=1000.0) is None


def test_a_corrupt_or_unwritable_cache_only_means_measuring_again(tmp_path: Path) -> None:
    path = tmp_path / "tuning.json"
    path.write_text("{not json")
    cache = TuningCache(path)
    assert cache.get("k") is None
    cache.put("k", {"hashrate": 1.0})
    assert json.loads(path.read_text())["k"]["hashrate"] == 1.0
    path.write_text('["a list"]')
    assert cache.get("k") is None
    blocked = TuningCache(tmp_path / "a-file" / "tuning.json")
    (tmp_path / "a-file").write_text("")
    blocked.put("k", {"hashrate": 1.0})  # logs, does not raise
    assert blocked.get("k") is None


def test_opencl_shape_is_measured_once_per_device_and_driver(tmp_path: Path) -> None:
    cache = TuningCache(tmp_path / "tuning.json")
    first = OpenClEngine(tune_seconds=0.05, tuning_cache=cache)
    assert not first.tuning_cached and len(first.tuning) == len(candidate_params(first.cl_device))
    second = OpenClEngine(tune_seconds=0.05, tuning_cache=cache)
    assert second.tuning_cached and second.tuning == []
    assert (second.params, second.hashrate) == (first.params, first.hashrate)
    # Another kernel source is another answer: measured again.
    other = OpenClEngine(tune_seconds=0.05, tuning_cache=cache, source=first._source + "\n// changed\n")
    assert not other.tuning_cached and other.tuning
    # An entry naming a shape that is no longer a candidate is ignored.
    data = json.loads(cache.path.read_text())
    for entry in data.values():
        entry["params"] = [2, 1, 3, 1]
    cache.path.write_text(json.dumps(data))
    assert not OpenClEngine(tune_seconds=0.05, tuning_cache=cache).tuning_cached


def test_auto_choice_reuses_measured_rates(tmp_path: Path) -> None:
    options = EngineOptions("auto", threads=1, kernel=OPENCL_CPU_SHAPE, tune_seconds=0.1,
                            tuning_cache=tmp_path / "tuning.json")
    first = create_engine(options)
    first.close()
    path = tmp_path / "tuning.json"
    written = path.read_text()
    rates = sorted(e["hashrate"] for e in json.loads(written).values())
    assert len(rates) == 2 and rates[0] > 0  # the fixed-shape OpenCL engine and the CPU engine
    second = create_engine(options)
    assert second.name == first.name and second.hashrate in rates
    second.close()
    assert path.read_text() == written, "an engine was measured again"
    retuned = create_engine(EngineOptions("auto", threads=1, kernel=OPENCL_CPU_SHAPE, tune_seconds=0.1,
                                          tuning_cache=path, retune=True))
    retuned.close()
    assert path.read_text() != written, "--retune measures again and keeps the new rates"
    cpu = create_engine(EngineOptions("cpu", threads=1, tuning_cache=options.tuning_cache))
    assert isinstance(cpu, CpuEngine)
    cpu.close()

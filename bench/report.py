"""How a bench prints what it measured: one aligned line per figure, then the same as one JSON line
(for scripts and for BENCHMARKS.md tables)."""

import json
from collections.abc import Mapping


def print_results(results: Mapping[str, object], width: int = 32) -> None:
    for key, value in results.items():
        print(f"{key:{width}} {value}")
    print(json.dumps(results))

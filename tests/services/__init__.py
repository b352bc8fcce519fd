"""pytest plugins that start real services (see tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class ServiceRecord:
    """What one plugin started: start-up times and the logs worth reading after a failure."""

    title: str
    startup_s: dict[str, float] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    def report(self, reporter: pytest.TerminalReporter, exitstatus: int) -> None:
        """Log paths when the session failed; start-up times as well under -v."""
        failed = exitstatus != pytest.ExitCode.OK
        if not (self.logs or self.startup_s) or not (failed or reporter.config.option.verbose > 0):
            return
        reporter.section(self.title, sep="-")
        for what, seconds in self.startup_s.items():
            reporter.write_line(f"{what} started in {seconds:.2f} s")
        if failed:
            for path in self.logs:
                reporter.write_line(f"log kept: {path}")


def fixture_failure(message: str) -> BaseException:
    """A fixture failure showing just `message` (raise it `from None`: the cause says no more)."""
    return pytest.fail.Exception(message, pytrace=False)

"""The `qscrypt` launcher's lean path for the idle commands: a stop signal at any moment exits 0."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A broker nobody listens on: the worker keeps retrying it, so it is running and stoppable.
WORKER = [sys.executable, "-m", "cli", "worker", "--bootstrap", "127.0.0.1:9", "--engine", "empty",
          "--worker-id", "entry-test"]


def _start() -> subprocess.Popen[bytes]:
    return subprocess.Popen(WORKER, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_the_worker_is_still_loading_exits_0(sig: signal.Signals) -> None:
    process = _start()
    # Past the interpreter's own start-up, well before the worker is running: still importing.
    time.sleep(0.3)
    process.send_signal(sig)
    assert process.wait(10) == 0, process.stderr.read().decode() if process.stderr else ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_running_worker_stops_within_a_second_with_exit_0(sig: signal.Signals) -> None:
    process = _start()
    assert process.stderr is not None
    for line in process.stderr:  # its handlers are in place once it tries the broker
        if b"worker.broker_unavailable" in line:
            break
    sent = time.monotonic()
    process.send_signal(sig)
    code = process.wait(10)
    took = time.monotonic() - sent
    print(f"{sig.name}: stopped in {took * 1000:.0f} ms")
    assert code == 0 and took < 1.0

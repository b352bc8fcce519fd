"""How a long-running command learns it should stop: Ctrl-C or a service manager's SIGTERM."""

import asyncio
import contextlib
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[asyncio.Event]:
    """An event that any of `signals` sets while the block runs (on the running loop). The handlers
    go with the block, so a loop that runs on afterwards (a test's, say) is left as it was."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in signals:
        with contextlib.suppress(NotImplementedError):  # platforms without loop signal handlers
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)

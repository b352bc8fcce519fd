"""qscrypt.signals: a signal sets the stop event while the block runs, and its handler goes after."""

import asyncio
import os
import signal

from qscrypt.signals import stop_on_signals


async def test_a_signal_sets_the_event_and_the_handler_goes_with_the_block() -> None:
    loop = asyncio.get_running_loop()
    with stop_on_signals((signal.SIGUSR1,)) as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(stop.wait(), 5)
    assert not loop.remove_signal_handler(signal.SIGUSR1)  # nothing left installed

"""The task bus: nonce-range tasks out to workers, results and heartbeats back, job changes to all.

Two implementations behind one interface (`Bus`): `InProcessBus` (asyncio, the default on one
machine) and `KafkaBus`. `create_bus` picks from the configuration; nothing else needs to know.
"""

from qscrypt.bus.base import (
    Bus,
    BusError,
    BusUnavailable,
    CommitFailed,
    RebalanceListener,
    Record,
    Subscription,
)
from qscrypt.bus.config import BusConfig


def create_bus(config: BusConfig) -> Bus:
    if config.kind == "kafka":
        from qscrypt.bus.kafka import KafkaBus

        return KafkaBus(config)
    from qscrypt.bus.memory import InProcessBus

    return InProcessBus(config)


__all__ = ["Bus", "BusConfig", "BusError", "BusUnavailable", "CommitFailed", "RebalanceListener", "Record",
           "Subscription", "create_bus"]

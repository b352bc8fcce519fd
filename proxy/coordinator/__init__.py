"""The Kafka coordinator: an upstream job's nonce space as tasks for hashing workers on the task bus."""

from proxy.coordinator.config import CoordinatorConfig
from proxy.coordinator.run import coordinator_upstream, run_coordinator
from proxy.coordinator.service import Coordinator, CoordinatorStats
from proxy.coordinator.store import CursorStore, MemoryCursorStore, PostgresCursorStore

__all__ = ["Coordinator", "CoordinatorConfig", "CoordinatorStats", "CursorStore", "MemoryCursorStore",
           "PostgresCursorStore", "coordinator_upstream", "run_coordinator"]

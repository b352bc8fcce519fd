"""Prometheus metrics of the Kafka coordinator, read from its own books at each scrape (nothing on
the task path changes): how far the workers are behind (tasks issued and not yet done, and the age
of the oldest — the bus's lag as the coordinator sees it, whatever the bus), the workers alive, and
the tasks, hashes and shares it has counted."""

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from proxy.coordinator.service import Coordinator


class CoordinatorCollector(Collector):
    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        c = self.coordinator
        book, stats, now = c.book, c.stats, time.monotonic()
        labels = [str(c.config.coordinator_id)]
        outstanding = list(book.outstanding.values())

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["coordinator"])
            family.add_metric(labels, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["coordinator"])
            family.add_metric(labels, value)
            return family

        yield gauge("qscrypt_coordinator_tasks_outstanding", "Nonce-range tasks issued and not yet done",
                    len(outstanding))
        oldest = min((o.sent_at for o in outstanding), default=None)
        yield gauge("qscrypt_coordinator_oldest_task_seconds",
                    "Age of the oldest task not yet done (0: none)",
                    0.0 if oldest is None else max(0.0, now - oldest))
        yield gauge("qscrypt_coordinator_workers_alive", "Workers heard from within worker_timeout_s",
                    len(book.alive(now)))
        yield counter("qscrypt_coordinator_tasks_issued", "Tasks issued", stats.tasks_issued)
        yield counter("qscrypt_coordinator_tasks_reissued",
                      "Tasks issued again after their worker went quiet",
                      book.stats.reissued)
        yield counter("qscrypt_coordinator_hashes", "Hashes the workers reported done", book.stats.hashes)
        shares = CounterMetricFamily("qscrypt_coordinator_shares", "Worker shares by verdict",
                                     labels=["coordinator", "result"])
        for result, value in (("valid", stats.shares_valid), ("invalid", stats.shares_invalid),
                              ("duplicate", stats.shares_duplicate), ("stale", stats.shares_stale)):
            shares.add_metric([*labels, result], value)
        yield shares


def register(registry: CollectorRegistry, coordinator: Coordinator) -> CoordinatorCollector:
    collector = CoordinatorCollector(coordinator)
    registry.register(collector)
    return collector

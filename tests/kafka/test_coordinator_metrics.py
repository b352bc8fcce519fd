"""The coordinator's metrics, scraped while it runs with a local worker on the in-process bus: the
lag the Kafka alert watches (tasks outstanding, the oldest one's age), workers alive, tasks and
shares; and gone from the registry once it stops."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.config import ProxyConfig
from proxy.coordinator import run_coordinator
from tests.kafka.conftest import StackFactory
from tests.kafka.harness import coordinator_config, wait_for


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}


async def test_coordinator_metrics_while_it_runs(memory_stack: StackFactory) -> None:
    s = await memory_stack()
    proxy = ProxyConfig(upstreams=[s.upstream("ltc-pool").config], metrics_port=None)
    config = coordinator_config(s.bus_config, coordinator_id=7, upstream="ltc-pool")
    registry = CollectorRegistry()
    stop = asyncio.Event()
    running = asyncio.create_task(run_coordinator(config, proxy, None, stop, bus=s.bus, registry=registry))
    try:
        await s.add_worker("local-1")
        label = (("coordinator", "7"),)
        valid = (("coordinator", "7"), ("result", "valid"))
        await wait_for(lambda: scrape(registry).get(("qscrypt_coordinator_shares_total", valid), 0) >= 2, 30,
                       "two valid shares counted in the coordinator's metrics")
        figures = scrape(registry)
        assert figures[("qscrypt_coordinator_workers_alive", label)] == 1
        assert figures[("qscrypt_coordinator_tasks_issued_total", label)] >= 1
        assert figures[("qscrypt_coordinator_hashes_total", label)] > 0
        assert figures[("qscrypt_coordinator_tasks_outstanding", label)] >= 0
        assert 0 <= figures[("qscrypt_coordinator_oldest_task_seconds", label)] < 60
        assert ("qscrypt_coordinator_tasks_reissued_total", label) in figures
    finally:
        stop.set()
        await running
    assert not [k for k in scrape(registry) if k[0].startswith("qscrypt_coordinator_")]

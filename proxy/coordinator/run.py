"""Running a coordinator from configuration: its own upstream session, its store, its bus."""

import asyncio
import contextlib

from prometheus_client import CollectorRegistry

from proxy.accounting import Accounting
from proxy.config import ProxyConfig
from proxy.coordinator.config import CoordinatorConfig
from proxy.coordinator.service import Coordinator
from proxy.coordinator.store import CursorStore, MemoryCursorStore, PostgresCursorStore
from proxy.upstream.base import Upstream
from qscrypt.bus import Bus, BusUnavailable, create_bus
from qscrypt.bus.aio import backoff_s, wait_event
from qscrypt.log import get_logger
from qscrypt.settings import ConfigError

_BACKOFF_S = (0.5, 1, 2, 5, 10)


def coordinator_upstream(config: CoordinatorConfig, proxy: ProxyConfig, dsn: str | None) -> Upstream:
    """A session of the coordinator's own to the upstream it names (never one the router hands miners)."""
    upstream = next((u for u in proxy.upstreams if u.name == config.upstream), None)
    if upstream is None:
        known = ", ".join(u.name for u in proxy.upstreams) or "none"
        raise ConfigError("coordinator.upstream", f"no upstream named {config.upstream!r} (known: {known})")
    if upstream.kind == "daemon":
        from proxy.upstream.daemon import DaemonUpstream

        return DaemonUpstream(upstream, proxy.failover, dsn=dsn)
    from proxy.upstream.pool import PoolUpstream

    return PoolUpstream(upstream, proxy.failover, name=f"{upstream.name}@coordinator{config.coordinator_id}")


def cursor_store(config: CoordinatorConfig, dsn: str | None) -> CursorStore:
    if config.store == "memory":
        return MemoryCursorStore()
    if not dsn:
        raise ConfigError("coordinator.store", "\"postgres\" needs a database (or set store = \"memory\")")
    return PostgresCursorStore(dsn)


async def run_coordinator(config: CoordinatorConfig, proxy: ProxyConfig, dsn: str | None,
                          stop: asyncio.Event, *, accounting: Accounting | None = None,
                          bus: Bus | None = None, registry: CollectorRegistry | None = None) -> None:
    """Run until `stop`. Pass `bus` to share an in-process bus with local workers; else one is made from
    `config.bus` (and Kafka is retried with backoff until it answers)."""
    log = get_logger(component="coordinator", coordinator=config.coordinator_id)
    own_bus = bus is None
    bus = bus if bus is not None else create_bus(config.bus)
    failures = 0
    while not stop.is_set():
        try:
            await bus.start()
            break
        except BusUnavailable as exc:
            log.warning("coordinator.bus_unavailable", error=str(exc))
            await wait_event(stop, backoff_s(_BACKOFF_S, failures))
            failures += 1
    if stop.is_set():
        return
    coordinator = Coordinator(config, coordinator_upstream(config, proxy, dsn), bus, accounting=accounting,
                              store=cursor_store(config, dsn))
    collector = None
    if registry is not None:
        from proxy.coordinator.metrics import register

        collector = register(registry, coordinator)
    try:
        await coordinator.start()
        await stop.wait()
    finally:
        if collector is not None and registry is not None:
            registry.unregister(collector)
        await coordinator.close()
        if own_bus:
            with contextlib.suppress(Exception):
                await bus.close()

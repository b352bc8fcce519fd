"""`qscrypt run`: the whole local stack on embedded defaults, for a newcomer's first minute.

Embedded PostgreSQL, a Litecoin Core regtest pair, the proxy mining solo on it and one built-in
miner attached — or, when the config names upstreams, the proxy on those.
"""

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from qscrypt.config import Config, UpstreamConfig
from qscrypt.log import get_logger


async def run_stack(config: Config, data_dir: Path, with_miner: bool,
                    stop_event: Callable[[], asyncio.Event]) -> int:
    from proxy.app import Proxy
    from qscrypt.db.embedded import ensure_running, stop_running
    from qscrypt.db.migrate import migrate

    log = get_logger(component="stack")
    stop = stop_event()
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    started_pg = not config.database.dsn
    pg_dir = data_dir / "postgres"
    if started_pg:
        log.info("stack.postgres", data_dir=str(pg_dir))
        dsn = await asyncio.to_thread(lambda: ensure_running(pg_dir, database="qscrypt"))
    else:
        dsn = config.database.dsn
    applied = await migrate(dsn)
    log.info("stack.migrated", applied=applied or "up to date")

    pair = None
    proxy_config = config.proxy
    if not proxy_config.upstreams:
        from qscrypt.devnet.litecoind import start_pair

        log.info("stack.litecoind", data_dir=str(data_dir / "litecoin"),
                 note="starting a Litecoin Core regtest pair for solo mining")
        pair = await asyncio.to_thread(start_pair, data_dir / "litecoin")
        payout = await asyncio.to_thread(pair.wallet.call, "getnewaddress", "", "bech32")
        upstream = UpstreamConfig(
            name="litecoind-regtest", kind="daemon", coin="LTC", network="regtest",
            rpc_url=pair.rpc_url(0), rpc_user=pair.user, rpc_password=pair.password,
            payout_address=payout, coinbase_tag="/qscrypt-local/", refresh_s=10.0,
        )
        # On regtest every share is also a block: start the miner where it finds one every few
        # seconds rather than dozens a second (vardiff moves it from there).
        proxy_config = replace(proxy_config, upstreams=[upstream], spill_dir=data_dir / "spill",
                               vardiff=replace(proxy_config.vardiff, initial=1.0))
    proxy = Proxy(proxy_config, dsn)
    tasks: list[asyncio.Task[object]] = []
    try:
        await proxy.start()
        port = proxy.ports["tcp"]
        log.info("stack.proxy", stratum=f"stratum+tcp://127.0.0.1:{port}",
                 metrics=proxy_config.metrics_port, upstreams=[u.name for u in proxy_config.upstreams])
        if with_miner:
            tasks.append(asyncio.create_task(_miner(port, stop), name="built-in-miner"))
        tasks.append(asyncio.create_task(_report(proxy, pair, stop), name="stack-report"))
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await proxy.close()
        if pair is not None:
            await asyncio.to_thread(pair.stop)
        if started_pg:
            await asyncio.to_thread(stop_running, pg_dir)
        log.info("stack.stopped")
    return 0


async def _miner(port: int, stop: asyncio.Event) -> None:
    try:
        from backends.miner import MinerConfig, run_miner
    except ImportError:
        get_logger(component="stack").warning("stack.no_miner", reason="backends.miner is not available")
        return
    await run_miner(MinerConfig(url=f"stratum+tcp://127.0.0.1:{port}", user="local-miner", password="x"),
                    stop)


async def _report(proxy: object, pair: object, stop: asyncio.Event) -> None:
    from proxy.app import Proxy

    assert isinstance(proxy, Proxy)
    log = get_logger(component="stack")
    while not stop.is_set():
        await asyncio.sleep(15)
        workers = {name: (s.accepted, sum(s.rejected.values()), s.stale)
                   for name, s in proxy.accounting.workers.items()}
        height = None
        if pair is not None:
            with contextlib.suppress(Exception):
                height = await asyncio.to_thread(pair.height, 0)  # type: ignore[attr-defined]
        log.info("stack.status", miners=proxy.router.miner_count, workers=workers, chain_height=height)

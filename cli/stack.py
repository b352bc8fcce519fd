"""`qscrypt run`: the whole local stack on embedded defaults, for a newcomer's first minute.

Embedded PostgreSQL, a Litecoin Core regtest pair, the proxy mining solo on it and one built-in
miner attached — or, when the config names upstreams, the proxy on those. Beside them: the
aggregator every five minutes (the public price and network sources, plus the regtest daemon as
the authoritative source for LTC network data), the decision API on :8080, which the proxy
polls for its profiles' decisions, and the ASIC poller (`[fleet]`, devices registered in the config
or through the API; metrics on :9102).
"""

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from cli.config import Config
from proxy.config import UpstreamConfig
from qscrypt.log import get_logger

if TYPE_CHECKING:
    from aiohttp import web

    from api.config import ApiConfig
    from fleet.config import FleetConfig
    from proxy.app import Proxy
    from qscrypt.devnet.litecoind import RegtestPair


async def run_stack(config: Config, data_dir: Path, with_miner: bool, stop: asyncio.Event) -> int:
    from proxy.app import Proxy
    from qscrypt.db.embedded import ensure_running, stop_running
    from qscrypt.db.migrate import migrate

    log = get_logger(component="stack")
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
    api_config = _api_config(config)
    if pair is not None and "payout_network" not in config.api:
        api_config = replace(api_config, payout_network="regtest")  # accounts pay on the local chain
    fleet_config = _fleet_config(config)  # a bad [fleet] stops start-up here, naming the key
    api_url = f"http://127.0.0.1:{api_config.port}"
    if not proxy_config.switching.api_url:
        proxy_config = replace(proxy_config, switching=replace(proxy_config.switching, api_url=api_url))
    proxy = Proxy(proxy_config, dsn)
    tasks: list[asyncio.Task[object]] = []
    api_runner = None
    try:
        api_runner = await _start_api(api_config, dsn)
        log.info("stack.api", dashboard=f"{api_url}/", decisions=f"{api_url}/v1/decisions",
                 openapi=f"{api_url}/openapi.json")
        tasks.append(asyncio.create_task(_aggregate(config, dsn, pair), name="aggregator"))
        tasks.append(asyncio.create_task(_fleet(fleet_config, dsn, stop), name="fleet"))
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
        if api_runner is not None:
            await api_runner.cleanup()
        if pair is not None:
            await asyncio.to_thread(pair.stop)
        if started_pg:
            await asyncio.to_thread(stop_running, pg_dir)
        log.info("stack.stopped")
    return 0


def _api_config(config: Config) -> "ApiConfig":
    from api.config import ApiConfig
    from qscrypt.settings import load_section

    return load_section(ApiConfig, dict(config.api), "api")


async def _start_api(api_config: "ApiConfig", dsn: str) -> "web.AppRunner":
    from aiohttp import web

    from api.app import create_app

    runner = web.AppRunner(create_app(api_config, dsn), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, api_config.host, api_config.port).start()
    return runner


async def _aggregate(config: Config, dsn: str, pair: "RegtestPair | None") -> None:
    """The aggregator loop. With the local regtest pair, its node is LTC's authoritative daemon
    source; the public sources need the internet, and say so in the log when it is not there."""
    import asyncpg

    from aggregator.cli import load_aggregator_config
    from aggregator.run import run_every

    aggregator_config = load_aggregator_config(config.aggregator)
    if not aggregator_config.solo_merged:
        # The solo rows earn what the proxy's solo upstreams merge-mine (README: merged mining).
        aggregator_config = replace(aggregator_config, solo_merged=config.proxy.solo_earnings())
    if pair is not None and not config.aggregator:
        coins = tuple(
            replace(c, daemon_url=pair.rpc_url(0), daemon_user=pair.user, daemon_password=pair.password)
            if c.symbol == "LTC" else c
            for c in aggregator_config.coins
        )
        aggregator_config = replace(aggregator_config, coins=coins)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await run_every(aggregator_config, pool, aggregator_config.interval_s)
    finally:
        await pool.close()


def _fleet_config(config: Config) -> "FleetConfig":
    from fleet.config import FleetConfig
    from qscrypt.settings import load_section

    return load_section(FleetConfig, dict(config.fleet), "fleet")


async def _fleet(fleet_config: "FleetConfig", dsn: str, stop: asyncio.Event) -> None:
    """The ASIC poller: the config's [[fleet.devices]] and those registered with PUT /v1/devices."""
    from fleet.cli import run_fleet

    await run_fleet(fleet_config, dsn, stop)


async def _miner(port: int, stop: asyncio.Event) -> None:
    try:
        from backends.miner import MinerConfig, run_miner
    except ImportError:
        get_logger(component="stack").warning("stack.no_miner", reason="backends.miner is not available")
        return
    await run_miner(MinerConfig(url=f"stratum+tcp://127.0.0.1:{port}", user="local-miner", password="x"),
                    stop)


async def _report(proxy: "Proxy", pair: "RegtestPair | None", stop: asyncio.Event) -> None:
    log = get_logger(component="stack")
    while not stop.is_set():
        await asyncio.sleep(15)
        workers = {name: (s.accepted, sum(s.rejected.values()), s.stale)
                   for name, s in proxy.accounting.workers.items()}
        height = None
        if pair is not None:
            with contextlib.suppress(Exception):
                height = await asyncio.to_thread(pair.height, 0)
        log.info("stack.status", miners=proxy.router.miner_count, workers=workers, chain_height=height)

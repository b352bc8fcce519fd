"""A daemon upstream that cannot work says why, clearly and once, and never takes the proxy down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mining.hashing import sha256d
from proxy.app import Proxy
from proxy.config import FailoverConfig, ProxyConfig
from proxy.upstream.base import UpstreamState
from proxy.upstream.daemon import POLL_INTERVAL_S, DaemonUpstream
from qscrypt.devnet.litecoind import RegtestPair, start_pair
from qscrypt.settings import ConfigError
from tests.solo.miner import SoloMiner
from tests.solo.support import connected_miner, daemon_config, daemon_of, running_proxy, wait_until

_LTC_MAINNET_ADDRESS = "LKh8pxsZwbSEz9PUbMUx1NX26eWsPprcsz"  # from shared/vectors/ltc_addresses.json
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_FAST = FailoverConfig(retry_backoff_s=0.1, retry_backoff_max_s=0.1, no_job_timeout_s=2.0)


def _base58check(payload: bytes) -> str:
    raw = payload + sha256d(payload)[:4]
    number = int.from_bytes(raw, "big")
    text = ""
    while number:
        number, digit = divmod(number, 58)
        text = _BASE58[digit] + text
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + text


def _rpc_failures(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [entry for entry in logs if entry["event"] == "daemon.rpc_failed"]


def test_a_payout_address_that_cannot_be_paid_is_refused_at_construction(litecoin_pair: RegtestPair) -> None:
    pair = litecoin_pair
    good = pair.wallet.call("getnewaddress", "", "bech32")
    typo = good[:-1] + ("q" if good[-1] != "q" else "p")
    cases = {
        _LTC_MAINNET_ADDRESS: "address is for litecoin mainnet, expected litecoin regtest",
        pair.wallet.call("getnewaddress", "", "mweb"): "MWEB addresses cannot receive a coinbase output",
        typo: "bad bech32 checksum",
        "not-an-address": "not valid in a base58 address",
    }
    for address, why in cases.items():
        with pytest.raises(ConfigError) as caught:
            DaemonUpstream(daemon_config(pair, address), FailoverConfig())
        assert caught.value.key == "proxy.upstreams[solo].payout_address"
        assert why in str(caught.value) and address in str(caught.value)
    # The proxy refuses to start with one, before it listens or talks to anything.
    with pytest.raises(ConfigError, match=r"proxy\.upstreams\[solo\]\.payout_address"):
        Proxy(ProxyConfig(upstreams=[daemon_config(pair, typo)], metrics_port=None))
    with pytest.raises(ConfigError, match=r"proxy\.upstreams\[solo\]\.coinbase_tag"):
        DaemonUpstream(daemon_config(pair, good, coinbase_tag="x" * 90), FailoverConfig())


async def test_wrong_rpc_credentials_are_one_clear_error_not_a_crash_loop(litecoin_pair: RegtestPair) -> None:
    config = daemon_config(litecoin_pair, litecoin_pair.wallet.call("getnewaddress"), rpc_password="wrong")
    upstream = DaemonUpstream(config, _FAST)
    with capture_logs() as logs:
        await upstream.start()
        try:
            await wait_until(lambda: upstream.state is UpstreamState.DOWN, 5, "the upstream to go down")
            await asyncio.sleep(1.0)  # about ten more retries
        finally:
            await upstream.close()
    assert upstream.last_error is not None
    assert "HTTP 401" in upstream.last_error
    assert "proxy.upstreams[solo].rpc_user and rpc_password" in upstream.last_error
    failures = _rpc_failures(logs)
    assert len(failures) == 1 and failures[0]["log_level"] == "error", failures


async def test_rpc_cookie_file(litecoin_pair: RegtestPair, tmp_path: Path) -> None:
    pair = litecoin_pair
    cookie = tmp_path / ".cookie"
    cookie.write_text(f"{pair.user}:{pair.password}")
    config = daemon_config(pair, pair.wallet.call("getnewaddress"), rpc_user="", rpc_password="",
                           rpc_cookie_file=cookie)
    upstream = DaemonUpstream(config, _FAST)
    await upstream.start()
    try:
        await wait_until(lambda: upstream.healthy, 5, "work through the cookie's credentials")
    finally:
        await upstream.close()

    missing = DaemonUpstream(replace(config, rpc_cookie_file=tmp_path / "absent"), _FAST)
    await missing.start()
    try:
        await wait_until(lambda: missing.state is UpstreamState.DOWN, 5, "the upstream to go down")
    finally:
        await missing.close()
    assert missing.last_error is not None
    assert "cannot read RPC cookie file" in missing.last_error
    assert "proxy.upstreams[solo].rpc_cookie_file" in missing.last_error


async def test_a_daemon_on_another_chain_is_refused(litecoin_pair: RegtestPair) -> None:
    litecoin = daemon_config(litecoin_pair, _LTC_MAINNET_ADDRESS, network="main")
    # A Dogecoin-style profile (no segwit, no MWEB, no getblocktemplate rules) pointed at the
    # regtest litecoind by mistake: its address is checked against Dogecoin's versions.
    dogecoin = replace(litecoin, coin="DOGE", payout_address=_base58check(b"\x1e" + bytes(range(20))))
    with pytest.raises(ConfigError, match="address is for litecoin mainnet, expected dogecoin mainnet"):
        DaemonUpstream(replace(dogecoin, payout_address=_LTC_MAINNET_ADDRESS), FailoverConfig())
    for config in (litecoin, dogecoin):
        upstream = DaemonUpstream(config, _FAST)
        assert upstream.profile.gbt_rules == (("mweb", "segwit") if config.coin == "LTC" else ())
        await upstream.start()
        try:
            await wait_until(lambda u=upstream: u.state is UpstreamState.DOWN, 5, "the upstream to go down")
        finally:
            await upstream.close()
        assert upstream.last_error is not None
        assert "runs chain 'regtest', but proxy.upstreams[solo].network is 'main'" in upstream.last_error


@pytest.fixture
def own_pair(tmp_path: Path) -> Iterator[RegtestPair]:
    """A pair of its own: this test stops a node."""
    pair = start_pair(tmp_path / "litecoin")
    yield pair
    pair.stop()


async def test_a_stopped_daemon_keeps_its_last_job_until_too_old_then_goes_down(
    own_pair: RegtestPair, tmp_path: Path
) -> None:
    pair = own_pair
    timeout = _FAST.no_job_timeout_s
    config = daemon_config(pair, pair.wallet.call("getnewaddress"))
    with capture_logs() as logs:
        async with running_proxy(config, None, tmp_path, failover=_FAST) as proxy, \
                connected_miner(proxy, "frank") as miner:
            upstream = daemon_of(proxy)
            node = pair.nodes[0]
            assert node.process is not None
            pair.rpc(0, "stop")
            stopped_at = time.monotonic()
            await asyncio.to_thread(node.process.wait, 30)

            await asyncio.sleep(max(0.0, stopped_at + timeout / 2 - time.monotonic()))
            assert upstream.healthy, "the last job stays valid while it is young"
            await wait_until(lambda: upstream.state is UpstreamState.DOWN, timeout * 2, "DOWN")
            down_after = time.monotonic() - stopped_at
            # The job's age counts from the daemon's last answer, up to one poll before the stop.
            assert timeout - 2 * POLL_INTERVAL_S <= down_after < timeout + 1.0, down_after
            assert upstream.last_error is not None
            assert f"no work from the daemon for {timeout:.0f} s" in upstream.last_error
            assert "getbestblockhash" in upstream.last_error and pair.rpc_url(0) in upstream.last_error

            # Nothing crashed: the connected miner is told its share is stale; a new one's subscribe
            # waits for work (until the handshake timeout closes it with the reason).
            reply = await miner.submit_solution(miner.solve())
            assert reply.error is not None and reply.error[0] == 21
            late = SoloMiner("127.0.0.1", proxy.ports["tcp"], worker="late")
            await late.connect()
            with pytest.raises(TimeoutError):
                await late.call("mining.subscribe", ["late/1"], timeout=1.0)
            assert not late.closed.is_set()
            await late.close()
            await asyncio.sleep(0.5)  # more retries against the dead daemon
    failures = _rpc_failures(logs)
    assert 1 <= len(failures) <= 3, failures  # each distinct error once, not once per retry
    assert [entry["event"] for entry in logs].count("daemon.down") == 1


async def test_a_new_tip_without_a_template_stops_the_old_job_at_once(
    own_pair: RegtestPair, tmp_path: Path
) -> None:
    """Issue 14: with getblocktemplate failing after a new block, the old job stayed valid for
    no_job_timeout_s (180 s) and shares on the replaced height were answered `true` as blocks."""
    pair = own_pair
    address = pair.wallet.call("getnewaddress")
    failover = FailoverConfig(retry_backoff_s=0.5, retry_backoff_max_s=0.5, no_job_timeout_s=180.0)
    async with running_proxy(daemon_config(pair, address), None, tmp_path, failover=failover) as proxy, \
            connected_miner(proxy, "tina") as miner:
        upstream = daemon_of(proxy)
        old = miner.solve(await miner.wait_job())  # a block on the current tip, kept for later
        pair.rpc(0, "setnetworkactive", False)  # without a peer, getblocktemplate fails (-9)
        await wait_until(lambda: pair.rpc(0, "getconnectioncount") == 0, 10, "node 0 to lose its peer")
        pair.rpc(0, "generatetoaddress", 1, address)  # the tip moves under the proxy's job
        moved_at = time.monotonic()
        await wait_until(lambda: not upstream.healthy, 5, "the old job to be withdrawn")
        print(f"old job withdrawn {time.monotonic() - moved_at:.2f} s after the new block")
        assert time.monotonic() - moved_at < 2.0
        assert upstream.last_error is not None and "no template for it" in upstream.last_error
        await wait_until(lambda: any(n.method == "client.show_message" and "has no work" in n.params[0]
                                     for n in miner.notifications), 5, "the miner to be told")
        reply = await miner.submit_solution(old)
        assert reply.error is not None and reply.error[0] == 21, reply
        assert "no upstream work" in reply.error[1]
        assert len(pair.rpc(0, "getchaintips")) == 1  # nothing was submitted as a block: no orphan
        # The peer comes back: clean work on the new tip, and blocks again.
        seen = len(miner.received)
        pair.rpc(0, "setnetworkactive", True)
        fresh = await miner.next_job(seen, clean=True, timeout=60)
        assert fresh.job.prevhash == bytes.fromhex(pair.rpc(0, "getbestblockhash"))[::-1]
        assert (await miner.submit_solution(miner.solve(fresh))).result is True

"""subscribe → authorize → notify → submit through the real proxy, with really valid shares and
shares really invalid for each reason, each answered with its Stratum error code."""

from mining import stratum
from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer


async def test_valid_share_is_accepted_and_forwarded(pool: PoolServer, make_proxy, miners) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")])
    miner = await miners(proxy.ports["tcp"])
    sub = await miner.subscribe()
    assert sub.error is None
    # extranonce1 = the pool's extranonce1 for the proxy + a 2-byte per-miner prefix
    upstream = proxy.upstream("p1")
    assert miner.extranonce1[:4] == upstream.extranonce1
    assert len(miner.extranonce1) == 6 and miner.extranonce2_size == 2
    assert (await miner.authorize("alice", "d=0.001")).result is True
    mjob = await miner.wait_job()
    assert mjob.difficulty == 0.001
    en2 = b"\x00\x07"
    # Pool difficulty equals the miner's here, so a valid share meets the pool target too.
    nonce = miner.find_share(mjob, en2)
    response = await miner.submit("alice", mjob, en2, nonce)
    assert response.result is True and response.error is None
    await wait_for(lambda: len(pool.submissions) == 1, "the share to reach the pool")
    sent = pool.submissions[0]
    assert sent.accepted
    assert sent.extranonce2 == miner.extranonce1[4:] + en2  # prefix + miner extranonce2
    assert pool.jobs[sent.job_id].coinb1 == mjob.job.coinb1
    stats = proxy.accounting.workers["alice"]
    assert stats.accepted == 1


async def test_each_invalid_share_gets_its_error_code(pool: PoolServer, make_proxy, miners) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")])
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    await miner.authorize("bob", "d=0.001")
    mjob = await miner.wait_job()
    en2 = b"\x01\x02"
    good = miner.find_share(mjob, en2)

    async def code_of(response: stratum.Response) -> int:
        assert response.result is not True, response
        return response.error[0]

    # malformed params: the codec rejects wrong types with JSON-RPC invalid params
    bad = await miner.call("mining.submit", ["bob", "1", "zz", "00", "00"])
    assert bad.error[0] == stratum.INVALID_PARAMS and "extranonce2" in bad.error[1]
    # unauthorized worker
    assert await code_of(await miner.submit("mallory", mjob, en2, good)) == stratum.UNAUTHORIZED
    # unknown job
    assert await code_of(await miner.submit("bob", mjob, en2, good, job_id="ffff")) == stratum.JOB_NOT_FOUND
    # ntime outside [job ntime, job ntime + 7200]
    too_late = await miner.submit("bob", mjob, en2, good, ntime=mjob.job.ntime + 7201)
    assert await code_of(too_late) == stratum.OTHER and "ntime" in too_late.error[1]
    too_early = await miner.submit("bob", mjob, en2, good, ntime=mjob.job.ntime - 1)
    assert await code_of(too_early) == stratum.OTHER
    # wrong extranonce2 length
    wrong = await miner.submit("bob", mjob, b"\x00\x00\x00", good)
    assert await code_of(wrong) == stratum.OTHER and "extranonce2" in wrong.error[1]
    # valid, then duplicate
    assert (await miner.submit("bob", mjob, en2, good)).result is True
    assert await code_of(await miner.submit("bob", mjob, en2, good)) == stratum.DUPLICATE_SHARE
    # above the miner's target
    low = miner.find_share(mjob, en2, start_nonce=good + 1, want_valid=False)
    assert await code_of(await miner.submit("bob", mjob, en2, low)) == stratum.LOW_DIFFICULTY
    # stale: a clean job makes the old one stale
    pool.new_job(clean=True)
    await wait_for(lambda: miner.jobs and miner.jobs[-1].job.job_id != mjob.job.job_id, "a new job")
    other = miner.find_share(mjob, en2, start_nonce=low + 1)
    assert await code_of(await miner.submit("bob", mjob, en2, other)) == stratum.JOB_NOT_FOUND
    stats = proxy.accounting.workers["bob"]
    assert stats.accepted == 1
    # The stale share is stale; a job id never sent to the miner is an invalid share (issue 15).
    assert stats.stale == 1 and stats.rejected["unknown-job"] == 1
    assert "mallory" not in proxy.accounting.workers  # refused, counted in metrics only
    assert stats.rejected["duplicate"] == 1 and stats.rejected["low-difficulty"] == 1
    assert stats.rejected["bad-ntime"] == 2 and stats.rejected["bad-extranonce2"] == 1


async def test_not_subscribed_and_protocol_methods(pool: PoolServer, make_proxy, miners) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")])
    miner = await miners(proxy.ports["tcp"])
    # authorized but never subscribed
    assert (await miner.authorize("carol")).result is True
    r = await miner.call("mining.submit", ["carol", "1", "0000", "00000000", "00000000"])
    assert r.error[0] == stratum.NOT_SUBSCRIBED
    assert (await miner.call("client.get_version", [])).result.startswith("qscrypt/")
    r = await miner.call("mining.get_transactions", ["1"])
    assert r.error is not None and r.error[0] == stratum.OTHER
    r = await miner.call("mining.no_such_method", [])
    assert r.error[0] == stratum.METHOD_NOT_FOUND
    r = await miner.call("mining.configure", [["version-rolling", "minimum-difficulty"],
                                              {"version-rolling.mask": "1fffe000",
                                               "minimum-difficulty.value": 0.002}])
    assert r.result == {"version-rolling": False, "minimum-difficulty": True}
    assert (await miner.call("mining.suggest_difficulty", [0.05])).result is True
    await miner.subscribe()
    mjob = await miner.wait_job()
    assert mjob.difficulty == 0.05


async def test_fixed_difficulty_from_password_and_set_difficulty_before_notify(
        pool: PoolServer, make_proxy, miners) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")])
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    await miner.authorize("dave", "x,d=0.25")
    await miner.wait_job()
    methods = [n.method for n in miner.notifications]
    assert methods[:2] == ["mining.set_difficulty", "mining.notify"]
    assert miner.difficulty == 0.25


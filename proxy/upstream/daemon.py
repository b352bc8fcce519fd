"""Solo mining straight from a coin daemon: the proxy is the pool.

Work comes from `getblocktemplate` (with the coin profile's rules: Litecoin Core insists on
["mweb", "segwit"], Dogecoin-style daemons need none); a share that meets the network target
becomes a whole block for `submitblock` (layout: `mining.block`), and the daemon's verdict is
recorded in the `blocks` table.

Extranonce: 4 random bytes of extranonce1 per upstream instance (two proxies paying the same
address from the same daemon never build the same coinbase) and 4 bytes of extranonce2, of which
the router hands 2 to each miner as its prefix, so each miner keeps 2 of its own.

Noticing new blocks: polling `getbestblockhash` every `POLL_INTERVAL_S` (100 ms), not long
polling `getblocktemplate` with its `longpollid`. Both meet "new work within a second" by far.
Measured against litecoind 0.21 regtest here: a long poll wakes about 5 ms after the tip changes,
a poll costs about 1 ms, and tests/solo measure new work at the miner 55–80 ms (median) and at most
105 ms after another node mined (block relay, the poll, the template and the notify together).
Polling was chosen because
- a long poll holds one of the daemon's few RPC worker threads (`-rpcthreads` defaults to 4) per
  proxy for as long as the tip stands, and an HTTP timeout must be told apart from "no block";
- the poll doubles as the health check that drives `no_job_timeout_s` failover: a dead daemon is
  noticed within 100 ms, where a long poll sits silent until its own timeout;
- the 50 ms it costs on average is 0.03 % of a 150 s block interval.
Work with new mempool transactions comes every `refresh_s` (clean_jobs=false); a refresh whose
template differs only in curtime publishes nothing. Litecoin Core remakes a template for a changed
mempool at most every 5 s (a new tip at once), so a `refresh_s` below that gains nothing.

Failures: RPC errors and timeouts are retried with backoff from 0.25 s (a solo miner loses blocks
while it waits; calls to a daemon are cheap) up to `retry_backoff_s`. Meanwhile the last job stays
valid until the daemon last confirmed its tip more than `no_job_timeout_s` ago; then the upstream
goes DOWN and failover takes over as for a silent pool. Each distinct error is logged once. A new
tip whose template fails is different: the old job builds on a replaced block, so it is withdrawn
at once (the upstream goes DOWN until a template on the new tip comes).

Merged mining (`config.aux`, proxy.upstream.aux): every job's coinbase commits to the aux blocks
the chains hold when it is made (mining.auxpow); new aux work makes a new job on the same template
(clean_jobs false: the Litecoin work is as good as before). The job's share target is the easiest
of Litecoin's and the aux chains', so the proxy forwards every share that wins any chain; here the
share's proof of work decides which: a Litecoin block goes to `submitblock` as before, each aux
block it wins becomes an AuxPoW for `submitauxblock` in a task of its own, so an aux node that is
slow or down never delays the Litecoin block. Aux blocks are journaled and recorded in `blocks`
as Litecoin's are, with their coin.
"""

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from mining.address import AddressError, address_to_script
from mining.auxpow import (
    COMMITMENT_SIZE,
    AuxBlock,
    AuxPowError,
    AuxTree,
    build_aux_tree,
    build_auxpow,
    check_auxpow,
)
from mining.block import (
    MAX_COINBASE_SCRIPT_SIG,
    BlockTemplateWork,
    assemble_block,
    build_coinbase,
    stratum_branch,
)
from mining.coins import coin
from mining.hashing import hash_to_hex, hash_to_int, sha256d
from mining.job import Job
from mining.serialize import bip34_height, push_data
from proxy import db
from proxy.config import FailoverConfig, UpstreamConfig
from proxy.extranonce import host_tag
from proxy.journal import RecordJournal
from proxy.upstream.aux import AuxChain
from proxy.upstream.base import SubmitOutcome, Upstream, UpstreamState, UpstreamWork
from proxy.upstream.polling import FIRST_RETRY_S, backoff_s, poll_forever
from qscrypt.jsonrpc import JsonRpcClient, RpcAuthError, RpcCallError, RpcError
from qscrypt.log import get_logger
from qscrypt.settings import ConfigError

EXTRANONCE1_SIZE = 4
EXTRANONCE2_SIZE = 4
POLL_INTERVAL_S = 0.1
TEMPLATES_KEPT = 16
"""Templates kept by job id: as many jobs as a miner session remembers (proxy.session)."""

_POLL_TIMEOUT_S = 5.0
_TEMPLATE_TIMEOUT_S = 15.0
_SUBMIT_TIMEOUT_S = 60.0  # a big block on mainnet can take seconds to validate
_SUBMIT_ATTEMPTS = 4
_AUX_SUBMIT_TIMEOUT_S = 15.0  # an aux block carries the parent's coinbase and header, not much more
_DB_ATTEMPTS = 3
_DB_TIMEOUT_S = 5.0
_RECORD_DRAIN_S = 10.0
_BASE_UNITS_PER_COIN = Decimal(100_000_000)
_HIGHEST_HEIGHT = 2**31 - 1  # the longest BIP34 height push a coinbase will ever carry
# submitblock answers that do not say where the block went: its place in the chain decides.
_ASK_THE_CHAIN = (None, "duplicate", "inconclusive", "duplicate-inconclusive")
# Template fields besides the transactions whose change makes new work (curtime alone does not).
_WORK_KEYS = ("previousblockhash", "version", "bits", "coinbasevalue", "mweb")


class DaemonError(Exception):
    """The daemon answers, but not as the configuration expects (wrong chain, bad template)."""


@dataclass(frozen=True, slots=True)
class _Template:
    job: Job
    template: dict[str, Any]
    fields: BlockTemplateWork
    aux: tuple[tuple[AuxChain, AuxBlock], ...] = ()
    """The aux blocks the job's coinbase commits to, in the order of `tree`'s chains."""
    tree: AuxTree | None = None


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One row of the `blocks` table."""

    coin: str
    height: int
    hash: str
    worker: str
    upstream: str
    reward: Decimal
    status: str  # accepted / rejected / orphaned / pending
    reason: str | None
    found_at: datetime
    host: str | None = None
    """The proxy host that found it (None in records journaled before hosts were recorded)."""

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "reward": str(self.reward), "found_at": self.found_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BlockRecord":
        return cls(str(data["coin"]), int(data["height"]), str(data["hash"]), str(data["worker"]),
                   str(data["upstream"]), Decimal(data["reward"]), str(data["status"]),
                   None if data["reason"] is None else str(data["reason"]),
                   datetime.fromisoformat(data["found_at"]),
                   None if data.get("host") is None else str(data["host"]))


async def insert_block(conn: asyncpg.Connection, record: dict[str, Any]) -> None:
    """One journaled block (`BlockRecord.to_json`) into `blocks`: idempotent on the hash, and a
    pending row takes the final status when it comes."""
    block = BlockRecord.from_json(record)
    await db.insert_block(conn, block.coin, block.height, block.hash, block.worker, block.upstream,
                          block.reward, block.status, block.reason, block.found_at, timeout=_DB_TIMEOUT_S,
                          host=block.host)


def host_mark(host: str | None) -> bytes:
    """The host's identity in its coinbases: its tag (`host_tag`) and a `/` after the coinbase tag.
    Two proxy hosts mining solo on one daemon to one address then never build the same coinbase
    even if their random extranonce1 met."""
    if not host:
        return b""
    return host_tag(host).encode() + b"/"


class DaemonUpstream(Upstream):
    def __init__(self, config: UpstreamConfig, failover: FailoverConfig, dsn: str | None = None,
                 journal: RecordJournal | None = None, host: str | None = None) -> None:
        """`journal`: where found blocks are made durable before they are submitted, and kept
        until `blocks` holds them (the proxy's share writer replays it). `host`: this proxy host's
        name, recorded with its blocks and, hashed, written into its coinbases."""
        key = f"proxy.upstreams[{config.name}]"
        try:
            profile = coin(config.coin, config.network)
        except ValueError as exc:
            raise ConfigError(f"{key}.coin", str(exc)) from None
        super().__init__(config.name, profile.symbol, config.priority)
        self.config = config
        self.failover = failover
        self.profile = profile
        try:
            self.payout_script = address_to_script(config.payout_address, profile)
        except AddressError as exc:
            raise ConfigError(f"{key}.payout_address",
                              f"{config.payout_address!r} cannot be paid on {profile.label}: {exc}") from None
        self.host = host
        self.tag = config.coinbase_tag.encode() + host_mark(host)
        self.aux_chains = [AuxChain(aux, f"{key}.aux[{aux.name}]", self._aux_work) for aux in config.aux]
        aux_size = 1 + COMMITMENT_SIZE if self.aux_chains else 0
        script_sig = (len(bip34_height(_HIGHEST_HEIGHT)) + aux_size + 1 + EXTRANONCE1_SIZE + EXTRANONCE2_SIZE
                      + len(push_data(self.tag)))
        if script_sig > MAX_COINBASE_SCRIPT_SIG:
            raise ConfigError(f"{key}.coinbase_tag",  # the host mark is 9 of the tag's bytes
                              f"is {len(self.tag)} bytes: the coinbase scriptSig would be {script_sig} "
                              f"bytes, over the {MAX_COINBASE_SCRIPT_SIG}-byte limit")
        if config.refresh_s <= 0:
            raise ConfigError(f"{key}.refresh_s", "must be positive")
        self._key = key
        self._dsn = dsn
        self._journal = journal
        self.rpc = JsonRpcClient(config.rpc_url, config.rpc_user, config.rpc_password,
                                 cookie_file=config.rpc_cookie_file)
        self.extranonce1 = secrets.token_bytes(EXTRANONCE1_SIZE)
        self.accepted = 0
        self.rejected = 0
        self._log = get_logger(upstream=self.name, coin=profile.symbol)
        self._templates: OrderedDict[str, _Template] = OrderedDict()
        self._current: _Template | None = None
        self._block_lock = asyncio.Lock()
        self._won_on: OrderedDict[bytes, None] = OrderedDict()
        """The previous-block hashes our accepted blocks build on (the last few): a share that
        completes another block on one of them would only compete with our own."""
        self._job_counter = 0
        self._chain_checked = False
        # When the daemon last confirmed that the current job builds on its best block.
        self._confirmed_at = 0.0
        self._refresh_at = 0.0
        self._logged_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._records: set[asyncio.Task[None]] = set()
        self._aux_submits: set[asyncio.Task[None]] = set()
        self.on_aux_block: Callable[[str, str], None] | None = None
        """Told (coin, status) of every aux block submitted: the proxy counts them in its metrics."""

    # -- work -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"upstream-{self.name}")
        for chain in self.aux_chains:
            chain.start()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._aux_submits:
            # Aux blocks first (they add records): a node that does not answer gets as long as the
            # records do, then is given up; the journal keeps the pending row of what it never took.
            _, pending = await asyncio.wait(self._aux_submits, timeout=_RECORD_DRAIN_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._records:
            # Blocks found just before shutdown still deserve their row.
            await asyncio.wait(self._records, timeout=_RECORD_DRAIN_S)
        for chain in self.aux_chains:
            await chain.close()
        await self.rpc.close()
        self.work = None
        self._set_state(UpstreamState.DOWN)

    async def _run(self) -> None:
        await poll_forever(self._poll, self._wake, interval_s=POLL_INTERVAL_S,
                           expected=(RpcError, DaemonError, ValueError), failed=self._failed,
                           recovered=self._recovered, log=self._log, event="daemon")

    async def _poll(self) -> None:
        if not self._chain_checked:
            await self._check_chain()
        best = await self.rpc.acall("getbestblockhash", timeout_s=_POLL_TIMEOUT_S)
        now = time.monotonic()
        current = self._current
        if (self.work is not None and current is not None and now < self._refresh_at
                and best == current.template["previousblockhash"]):
            self._confirmed_at = now
            return
        tip_moved = current is not None and best != current.template["previousblockhash"]
        try:
            await self._new_work()
        except (RpcError, DaemonError, ValueError) as exc:
            if tip_moved and self.work is not None:
                # The job builds on a block that is no longer the tip: a share for it could only
                # make an orphan. It stops now, not when no_job_timeout_s runs out.
                self._log.error("daemon.tip_moved_without_work", best=best, error=str(exc))
                self.work = None
                raise DaemonError(f"new block {best} but no template for it: {exc}") from exc
            raise

    async def _check_chain(self) -> None:
        info = await self.rpc.acall("getblockchaininfo", timeout_s=_POLL_TIMEOUT_S)
        chain = info.get("chain") if isinstance(info, dict) else None
        if chain != self.profile.network:
            raise DaemonError(f"the daemon at {self.config.rpc_url} runs chain {chain!r}, but "
                              f"{self._key}.network is {self.profile.network!r}")
        self._chain_checked = True
        self._log.info("daemon.connected", url=self.config.rpc_url, chain=chain, blocks=info.get("blocks"))

    async def _new_work(self) -> None:
        template = await self.rpc.acall("getblocktemplate", {"rules": list(self.profile.gbt_rules)},
                                        timeout_s=_TEMPLATE_TIMEOUT_S)
        if not isinstance(template, dict):
            raise DaemonError(f"getblocktemplate answered {type(template).__name__}, not an object")
        if "mweb" in template and not self.profile.mweb:
            raise DaemonError(f"the template carries MWEB data, which {self.profile.label} does not have")
        fields = BlockTemplateWork.from_template(template)
        now = time.monotonic()
        previous = self._current
        if self.work is not None and previous is not None and _same_work(previous.template, template):
            # Only curtime moved: new jobs would interrupt miners for nothing.
            self._confirmed_at = now
            self._refresh_at = now + self.config.refresh_s
            return
        # Miners must drop their work only when the block it builds on is gone.
        clean = self.work is None or previous is None or previous.fields.prevhash != fields.prevhash
        self._confirmed_at = now
        self._refresh_at = now + self.config.refresh_s
        self._make_job(template, fields, clean)

    def _make_job(self, template: dict[str, Any], fields: BlockTemplateWork, clean: bool) -> None:
        """A job on `template` committing to the aux chains' current blocks, published."""
        aux = tuple((chain, chain.work) for chain in self.aux_chains if chain.work is not None)
        tree = build_aux_tree([(chain.chain_id, block.hash) for chain, block in aux]) if aux else None
        parts = build_coinbase(template, self.payout_script, self.tag, EXTRANONCE1_SIZE + EXTRANONCE2_SIZE,
                               self.profile, aux_commitment=b"" if tree is None else tree.commitment())
        branch = stratum_branch(template)
        self._job_counter += 1
        job = fields.job(f"{self._job_counter:x}", parts, branch, clean_jobs=clean)
        entry = _Template(job, template, fields, aux, tree)
        self._templates[job.job_id] = entry
        while len(self._templates) > TEMPLATES_KEPT:
            self._templates.popitem(last=False)
        self._current = entry
        log = self._log.info if clean else self._log.debug
        log("daemon.work", job=job.job_id, height=fields.height, clean=clean,
            transactions=len(template.get("transactions", ())), mweb="mweb" in template,
            reward=fields.coinbasevalue, aux=[f"{chain.symbol}@{block.height}" for chain, block in aux])
        # Shares that win any chain come here; the easiest target of them all is the job's.
        target = max([fields.target, *(block.target for _, block in aux)])
        self._publish_job(UpstreamWork(job, self.extranonce1, EXTRANONCE2_SIZE, target))

    def _aux_work(self, chain: AuxChain) -> None:
        """An aux chain has a new block to mine, or lost its old one: the same Litecoin work, with a
        coinbase committing to what the chains hold now (a job no miner has to drop)."""
        current = self._current
        if current is None or self.work is None:
            return  # the next Litecoin job will commit to it
        try:
            self._make_job(current.template, current.fields, clean=False)
        except ValueError as exc:  # the template made a job a moment ago: a bug, logged, not fatal
            self._log.error("daemon.aux_job_failed", aux=chain.name, error=str(exc))

    def _recovered(self, failures: int) -> None:
        self._log.info("daemon.recovered", failures=failures)
        self._logged_error = None

    def _failed(self, exc: Exception, failures: int) -> float:
        """Note a failed poll; how long to wait before the next one."""
        error = str(exc) if isinstance(exc, RpcError | DaemonError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, RpcAuthError):
            where = (f"{self._key}.rpc_cookie_file" if self.config.rpc_cookie_file
                     else f"{self._key}.rpc_user and rpc_password")
            error = f"{error}: check {where}"
        if error != self._logged_error:
            # Once per distinct error: a daemon down for hours must not flood the log.
            self._logged_error = error
            log = self._log.error if isinstance(exc, RpcAuthError | DaemonError) else self._log.warning
            log("daemon.rpc_failed", error=error, failures=failures)
        backoff = backoff_s(failures, self.failover.retry_backoff_s)
        if self.work is None:
            self._set_state(UpstreamState.DOWN, error)
            return backoff
        self.last_error = error
        expires = self._confirmed_at + self.failover.no_job_timeout_s
        now = time.monotonic()
        if now < expires:
            return min(backoff, expires - now)
        self._log.error("daemon.down", error=error, job_age_s=round(now - self._confirmed_at, 1))
        self.work = None
        self._set_state(UpstreamState.DOWN, f"no work from the daemon for {now - self._confirmed_at:.0f} s: "
                                            f"{error}")
        return backoff

    # -- blocks ---------------------------------------------------------------------------------

    async def submit(self, job_id: str, extranonce2: bytes, ntime: int, nonce: int,
                     header: bytes, worker: str, extranonce1: bytes | None = None) -> SubmitOutcome:
        """Submit the block this share completes; ntime and nonce are already in `header`."""
        started = time.monotonic()
        found_at = datetime.now(UTC)
        entry = self._templates.get(job_id)
        if entry is None:
            return SubmitOutcome(False, f"job {job_id} is too old: its template is gone",
                                 time.monotonic() - started)
        if entry.aux:
            # Which chains the share wins: its proof of work, off the loop (scrypt is ~0.1 ms).
            value = hash_to_int(await asyncio.to_thread(self.profile.pow_hash, header))
            for index, (chain, aux_block) in enumerate(entry.aux):
                if value <= aux_block.target:
                    self._track(self._submit_aux(entry, index, chain, aux_block, header, extranonce2, worker,
                                                 found_at))
            if value > entry.fields.target:
                # Only an aux chain's block: Litecoin has no use for the share.
                return SubmitOutcome(True, None, time.monotonic() - started)
        # One block at a time: two shares that win on one template (regtest, or a lucky farm) must
        # not both go out, or the second competes with our own block and ends off the best chain.
        async with self._block_lock:
            if entry.fields.prevhash in self._won_on:
                return SubmitOutcome(False, "stale: a block of ours at this height was accepted first",
                                     time.monotonic() - started, status="stale")
            return await self._submit_won(entry, header, extranonce2, worker, found_at, started)

    async def _submit_won(self, entry: _Template, header: bytes, extranonce2: bytes, worker: str,
                          found_at: datetime, started: float) -> SubmitOutcome:
        try:
            block = assemble_block(header, entry.job.coinbase(self.extranonce1, extranonce2), entry.template)
        except ValueError as exc:
            return SubmitOutcome(False, str(exc), time.monotonic() - started)
        block_hash = hash_to_hex(sha256d(header))
        record = BlockRecord(self.profile.symbol, entry.fields.height, block_hash, worker, self.name,
                             entry.fields.coinbasevalue / _BASE_UNITS_PER_COIN, "pending", None, found_at,
                             self.host)
        await self._journal_found(record)
        status, reason = await self._submit_block(block, block_hash)
        latency = time.monotonic() - started
        accepted = status == "accepted"
        if accepted:
            self.accepted += 1
            self._won_on[entry.fields.prevhash] = None
            while len(self._won_on) > TEMPLATES_KEPT:
                self._won_on.popitem(last=False)
            self._wake.set()  # our own block is the new tip: fetch work on it now
        else:
            self.rejected += 1
        log = self._log.info if accepted else self._log.warning
        log("daemon.block", height=entry.fields.height, hash=block_hash, worker=worker, status=status,
            reason=reason, latency_ms=round(latency * 1000, 1))
        if self._dsn:
            self._record(dataclasses.replace(record, status=status, reason=reason))
        return SubmitOutcome(accepted, reason, latency, block_hash, status)

    async def _submit_block(self, block: bytes, block_hash: str) -> tuple[str, str | None]:
        """(status, reason) for the `blocks` table, from submitblock and the block's place in the chain."""
        error = ""
        for attempt in range(_SUBMIT_ATTEMPTS):
            if attempt:
                await asyncio.sleep(FIRST_RETRY_S * 2**attempt)
            try:
                answer = await self.rpc.acall("submitblock", block.hex(), timeout_s=_SUBMIT_TIMEOUT_S)
                break
            except RpcCallError as exc:
                return "rejected", exc.message  # e.g. "Block decode failed"
            except RpcError as exc:
                # A timed-out submission may still have arrived: a retry then answers "duplicate".
                error = str(exc)
        else:
            return "pending", f"no answer to submitblock: {error}"
        verdict = None if answer is None else str(answer)
        if verdict not in _ASK_THE_CHAIN:
            return "rejected", verdict
        place = await self._chain_place(block_hash)
        if place == "best":
            return "accepted", None
        if place == "side":
            return "orphaned", verdict or "accepted but not in the best chain"
        if place == "unknown":
            return "rejected", verdict or "the daemon does not know the block it accepted"
        return ("accepted", None) if verdict is None else ("pending", verdict)

    async def _submit_aux(self, entry: _Template, index: int, chain: AuxChain, block: AuxBlock, header: bytes,
                          extranonce2: bytes, worker: str, found_at: datetime) -> None:
        """Submit the aux block a share won, record it, count it: in a task of its own."""
        if not chain.submittable(block):
            self._log.info("daemon.aux_stale", aux=chain.name, coin=chain.symbol, height=block.height,
                           hash=block.hash_hex, tip=chain.tip, worker=worker)
            return
        if not chain.claim(block):
            self._log.debug("daemon.aux_won_again", aux=chain.name, coin=chain.symbol, hash=block.hash_hex,
                            worker=worker)
            return
        assert entry.tree is not None
        auxpow = build_auxpow(entry.job.coinbase(self.extranonce1, extranonce2), entry.job.merkle_branch,
                              entry.tree, index, header)
        try:
            check_auxpow(auxpow, block.hash, chain.chain_id)  # never send what the node would refuse
        except AuxPowError as exc:  # a bug of ours: said loudly, and the share is no block anyway
            self._log.error("daemon.aux_invalid", aux=chain.name, hash=block.hash_hex, error=str(exc))
            return
        record = BlockRecord(chain.symbol, block.height, block.hash_hex, worker, self.name,
                             block.coinbasevalue / _BASE_UNITS_PER_COIN, "pending", None, found_at, self.host)
        await self._journal_found(record)
        started = time.monotonic()
        status, reason = await self._submit_auxpow(chain, block, auxpow.serialize().hex())
        if status == "accepted":
            chain.block_found(block.hash_hex)
        log = self._log.info if status == "accepted" else self._log.warning
        log("daemon.aux_block", aux=chain.name, coin=chain.symbol, height=block.height, hash=block.hash_hex,
            worker=worker, status=status, reason=reason,
            latency_ms=round((time.monotonic() - started) * 1000, 1))
        if self.on_aux_block is not None:
            self.on_aux_block(chain.symbol, status)
        if self._dsn:
            self._record(dataclasses.replace(record, status=status, reason=reason))

    async def _submit_auxpow(self, chain: AuxChain, block: AuxBlock, auxpow: str) -> tuple[str, str | None]:
        error = ""
        for attempt in range(_SUBMIT_ATTEMPTS):
            if attempt:
                await asyncio.sleep(FIRST_RETRY_S * 2**attempt)
                if chain.superseded(block):
                    return "rejected", f"stale: the {chain.symbol} tip moved while the node did not answer"
            try:
                answer = await chain.rpc.acall("submitauxblock", block.hash_hex, auxpow,
                                               timeout_s=_AUX_SUBMIT_TIMEOUT_S)
                break
            except RpcCallError as exc:
                return "rejected", exc.message  # e.g. "block hash unknown": a new tip came first
            except RpcError as exc:
                error = str(exc)
        else:
            return "pending", f"no answer to submitauxblock: {error}"
        if answer is not True:
            return "rejected", f"submitauxblock answered {answer!r}"
        place = await _chain_place(chain.rpc, block.hash_hex)
        if place == "best":
            return "accepted", None
        if place == "side":
            return "orphaned", "accepted but not in the best chain"
        if place == "unknown":
            return "rejected", "the node does not know the block it accepted"
        return "accepted", None

    def _track(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._aux_submits.add(task)
        task.add_done_callback(self._aux_submits.discard)

    async def _chain_place(self, block_hash: str) -> str | None:
        return await _chain_place(self.rpc, block_hash)

    async def _journal_found(self, record: BlockRecord) -> None:
        """Make the found block durable before the daemon sees it: whatever happens next (the
        proxy killed mid-submit, PostgreSQL away for hours), `blocks` gets its row from the
        journal. An fsync, off the event loop; only this block's submission waits for it."""
        if self._journal is None:
            return
        try:
            await self._journal.put(record.hash, record.to_json())
        except Exception as exc:  # a full disk must not cost the block itself: submit regardless
            self._log.error("daemon.block_not_journaled", error=f"{type(exc).__name__}: {exc}",
                            hash=record.hash, height=record.height, worker=record.worker)

    def _record(self, record: BlockRecord) -> None:
        # In the background: the miner's reply and the next work must not wait for PostgreSQL.
        task = asyncio.get_running_loop().create_task(self._write_record(record))
        self._records.add(task)
        task.add_done_callback(self._records.discard)

    async def _write_record(self, record: BlockRecord) -> None:
        version = None
        if self._journal is not None:
            # The final status replaces the pending version first: from here on a failure of the
            # database costs nothing, the share writer replays the journal until `blocks` has it.
            try:
                version = await self._journal.put(record.hash, record.to_json())
            except Exception as exc:
                self._log.error("daemon.block_not_journaled", error=f"{type(exc).__name__}: {exc}",
                                hash=record.hash, status=record.status)
        attempts = 1 if version is not None else _DB_ATTEMPTS
        error: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(2**attempt)
            try:
                conn = await asyncpg.connect(self._dsn, timeout=_DB_TIMEOUT_S)
                try:
                    await insert_block(conn, record.to_json())
                finally:
                    await conn.close()
                if self._journal is not None and version is not None:
                    await self._journal.remove(record.hash, version)
                return
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                error = exc
        if version is not None:
            self._log.warning("daemon.block_journaled", error=str(error), hash=record.hash,
                              status=record.status,
                              consequence="written to `blocks` from the journal when PostgreSQL answers")
            return
        # The block itself went to the daemon already; the log keeps what the table could not.
        self._log.error("daemon.block_not_recorded", error=str(error), height=record.height, hash=record.hash,
                        worker=record.worker, status=record.status, reason=record.reason,
                        reward=str(record.reward), found_at=record.found_at.isoformat())


async def _chain_place(rpc: JsonRpcClient, block_hash: str) -> str | None:
    """"best", "side" (stored off the best chain), "unknown", or None when the daemon did not say."""
    try:
        header = await rpc.acall("getblockheader", block_hash, timeout_s=_POLL_TIMEOUT_S)
    except RpcCallError:
        return "unknown"  # -5 Block not found
    except RpcError:
        return None
    confirmations = header.get("confirmations") if isinstance(header, dict) else None
    if not isinstance(confirmations, int):
        return None
    return "best" if confirmations >= 1 else "side"


def _same_work(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two templates make the same block but for the time."""
    if any(old.get(key) != new.get(key) for key in _WORK_KEYS):
        return False
    return [tx.get("txid") for tx in old.get("transactions", ())] == \
        [tx.get("txid") for tx in new.get("transactions", ())]

"""One merge-mined chain beside a daemon upstream: its current aux block, kept fresh in the background.

The daemon upstream (proxy.upstream.daemon) commits every job's coinbase to the aux blocks the
chains hold at that moment and asks a chain, when a share meets its target, whether the block the
job committed to is still worth submitting. Everything here runs in its own task with its own
timeouts: a Dogecoin node that is down, slow or stuck only ever costs Dogecoin blocks, never a
Litecoin job or a Litecoin block.

Noticing new Dogecoin blocks: `getbestblockhash` every `poll_s`; a new tip makes new aux work
(`createauxblock ADDRESS`), and so does a refresh every `REFRESH_S` (new transactions: Dogecoin
Core remakes an aux block for a changed mempool at most once a minute). An aux block is submittable
only while the chain's tip is the block it builds on: after any other block (ours included) it is
stale, and `submitauxblock` is never called with it.
"""

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable

from mining.address import address_to_script
from mining.auxpow import AuxBlock
from mining.coins import Coin, coin
from proxy.config import AuxChainConfig
from proxy.upstream.polling import backoff_s, poll_forever
from qscrypt.jsonrpc import JsonRpcClient, RpcAuthError, RpcError
from qscrypt.log import get_logger

REFRESH_S = 30.0
_CLAIMS_KEPT = 64
_RPC_TIMEOUT_S = 5.0
_MAX_RETRY_S = 10.0


class AuxChainError(Exception):
    """The aux node answers, but not as configured (another chain)."""


class AuxChain:
    def __init__(self, config: AuxChainConfig, key: str, on_work: Callable[["AuxChain"], None]) -> None:
        """`key`: the config key of this chain, for messages; `on_work`: called (synchronously, on
        the loop) whenever the current aux block changes, or goes away."""
        self.config = config
        self.name = config.name
        self.key = key
        # proxy.config checked coin and address at load; a bad one here is a bug, not a config.
        self.profile: Coin = coin(config.coin, config.network)
        address_to_script(config.payout_address, self.profile)
        assert self.profile.aux_chain_id is not None
        self.chain_id: int = self.profile.aux_chain_id
        self.rpc = JsonRpcClient(config.rpc_url, config.rpc_user, config.rpc_password,
                                 cookie_file=config.rpc_cookie_file)
        self.work: AuxBlock | None = None
        self.tip: str | None = None
        """The chain's best block as last seen (or as our own accepted block made it)."""
        self.healthy = False
        """Whether the last poll of the node answered."""
        self._claimed: OrderedDict[bytes, None] = OrderedDict()
        self._on_work = on_work
        self._refresh_at = 0.0
        self._chain_checked = False
        self._logged_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger(aux=config.name, coin=self.profile.symbol)

    @property
    def symbol(self) -> str:
        return self.profile.symbol

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"aux-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.rpc.close()

    def submittable(self, block: AuxBlock) -> bool:
        """Whether `block` still builds on the chain's tip as last seen: a stale aux block is never
        submitted. A node slow to answer polls is still tried (in the submission's own task)."""
        return self.tip is not None and block.prevhash_hex == self.tip

    def superseded(self, block: AuxBlock) -> bool:
        """Whether the chain is known to have moved past the block `block` builds on (a node that
        does not answer says nothing either way)."""
        return self.tip is not None and block.prevhash_hex != self.tip

    def claim(self, block: AuxBlock) -> bool:
        """True once per aux block: the first share that wins it submits it; every later one (the
        same block, won again on another job or while the node was slow to answer) is not a block."""
        if block.hash in self._claimed:
            return False
        self._claimed[block.hash] = None
        while len(self._claimed) > _CLAIMS_KEPT:
            self._claimed.popitem(last=False)
        return True

    def block_found(self, block_hash: str) -> None:
        """Our block is the chain's new tip: every aux block before it is stale from now on, and
        new work on it is fetched at once."""
        # Jobs still committing to the old block are left alone: `submittable` keeps their aux
        # shares home, and the job with the next block follows within one createauxblock.
        self.tip = block_hash
        self.work = None
        self._wake.set()

    async def _run(self) -> None:
        await poll_forever(self._poll, self._wake, interval_s=self.config.poll_s,
                           expected=(RpcError, AuxChainError, ValueError), failed=self._failed,
                           recovered=self._recovered, log=self._log, event="aux")

    async def _poll(self) -> None:
        if not self._chain_checked:
            info = await self.rpc.acall("getblockchaininfo", timeout_s=_RPC_TIMEOUT_S)
            chain = info.get("chain") if isinstance(info, dict) else None
            if chain != self.profile.network:
                raise AuxChainError(f"the node at {self.config.rpc_url} runs chain {chain!r}, but "
                                    f"{self.key}.network is {self.profile.network!r}")
            self._chain_checked = True
            self._log.info("aux.connected", url=self.config.rpc_url, chain=chain, blocks=info.get("blocks"))
        best = await self.rpc.acall("getbestblockhash", timeout_s=_RPC_TIMEOUT_S)
        if not isinstance(best, str):
            raise AuxChainError(f"getbestblockhash answered {best!r}")
        now = time.monotonic()
        self.tip = best  # a block on another tip is stale from here on (submittable says no)
        if self.work is not None and self.work.prevhash_hex == best and now < self._refresh_at:
            self.healthy = True
            return
        answer = await self.rpc.acall("createauxblock", self.config.payout_address, timeout_s=_RPC_TIMEOUT_S)
        block = AuxBlock.from_rpc(answer)
        if block.chain_id != self.chain_id:
            raise AuxChainError(f"createauxblock gives chain id {block.chain_id}, {self.profile.label} has "
                                f"{self.chain_id}")
        self.healthy = True
        self._refresh_at = now + REFRESH_S
        if block.prevhash_hex != self.tip:
            self._wake.set()  # the tip moved between the two calls: ask again at once
            return
        if self.work is None or block.hash != self.work.hash:  # (a new tip always makes a new block)
            self.work = block
            self._log.info("aux.work", height=block.height, hash=block.hash_hex, reward=block.coinbasevalue)
            self._on_work(self)

    def _recovered(self, failures: int) -> None:
        self._log.info("aux.recovered", failures=failures)
        self._logged_error = None

    def _failed(self, exc: Exception, failures: int) -> float:
        """Note a failed poll; how long to wait before the next one."""
        self.healthy = False
        error = str(exc) if isinstance(exc, RpcError | AuxChainError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, RpcAuthError):
            error = f"{error}: check {self.key}.rpc_user and rpc_password"
        if error != self._logged_error:  # once per distinct error: a node down for hours must not flood
            self._logged_error = error
            self._log.warning("aux.rpc_failed", error=error, failures=failures,
                              consequence=f"no {self.symbol} blocks meanwhile; Litecoin mining goes on")
        return backoff_s(failures, _MAX_RETRY_S)

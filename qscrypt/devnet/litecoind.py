"""Two Litecoin Core regtest nodes on loopback: the real coin daemon for tests and solo mining.

`getblocktemplate` refuses to work without a peer and during initial sync, so a usable daemon is
two nodes connected to each other with a chain past height 0. `start_pair` gives exactly that,
with a wallet on node 0 holding spendable coins.

Always the package's real daemon binary, never the `litecoind` on PATH: that is a wrapper script
that writes ~/.litecoin on every start.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from qscrypt.jsonrpc import JsonRpcClient, RpcCallError, RpcError, RpcTransportError

LITECOIND_ENV = "QSCRYPT_LITECOIND"
_KNOWN_BINARIES = (Path("/usr/lib/litecoin/litecoind"),)
WALLET = "miner"
COINBASE_MATURITY = 100
# BIP9 on regtest, bit 4, window 144: STARTED at 144, LOCKED_IN at 288, ACTIVE from 432.
MWEB_ACTIVATION_HEIGHT = 432
GBT_RULES = {"rules": ["mweb", "segwit"]}

_RPC_WARMING_UP = -28
_WALLET_NOT_FOUND = -18
_LOG_TAIL_LINES = 20
# generatetoaddress of a few hundred blocks (activate_mweb) takes seconds.
_RPC_TIMEOUT_S = 60.0


class LitecoinError(RuntimeError):
    """A regtest node could not be found, started or stopped (its RPC raises `RpcError`)."""


@dataclass
class Node:
    index: int
    datadir: Path
    p2p_port: int
    onion_port: int
    rpc_port: int
    rpc: JsonRpcClient
    process: subprocess.Popen[bytes] | None = None

    @property
    def debug_log(self) -> Path:
        return self.datadir / "regtest" / "debug.log"

    @property
    def stdout_log(self) -> Path:
        return self.datadir / "litecoind.out"

    def describe_logs(self) -> str:
        parts = [f"{path}:\n{_tail(path)}" for path in (self.stdout_log, self.debug_log)]
        return f"node {self.index} logs\n" + "\n".join(parts)


class RegtestPair:
    """Two `litecoind -regtest` nodes in `base_dir/node0` and `base_dir/node1`, peered."""

    def __init__(self, base_dir: Path, *, binary: Path | None = None) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.binary = binary or find_litecoind()
        self.user = "qscrypt"
        self.password = secrets.token_hex(16)
        ports = free_ports(6)
        self.nodes = [self._node(i, *ports[3 * i : 3 * i + 3]) for i in range(2)]
        self.mining_address: str | None = None
        self.mweb_pegin_txid: str | None = None
        self.timings: dict[str, float] = {}

    def __enter__(self) -> RegtestPair:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def wallet(self) -> JsonRpcClient:
        """RPC to node 0's mining wallet."""
        return self.nodes[0].rpc.for_wallet(WALLET)

    @property
    def log_paths(self) -> list[Path]:
        return [path for node in self.nodes for path in (node.stdout_log, node.debug_log)]

    def datadir(self, i: int) -> Path:
        return self.nodes[i].datadir

    def rpc_url(self, i: int) -> str:
        return self.nodes[i].rpc.url

    def rpc(self, i: int, method: str, *params: Any) -> Any:
        return self.nodes[i].rpc.call(method, *params)

    async def arpc(self, i: int, method: str, *params: Any) -> Any:
        return await self.nodes[i].rpc.acall(method, *params)

    def height(self, i: int = 0) -> int:
        return int(self.rpc(i, "getblockcount"))

    def start(self, timeout: float = 60.0) -> None:
        """Launch both nodes; return once both answer RPC and each has a peer."""
        began = time.monotonic()
        for node, peer in zip(self.nodes, reversed(self.nodes), strict=True):
            self._launch(node, peer)
        for node in self.nodes:
            self._wait(node, timeout, "answer RPC", functools.partial(_rpc_ready, node.rpc))
        self.timings["rpc_ready_s"] = time.monotonic() - began
        for node in self.nodes:
            self._wait(
                node, timeout, "connect to its peer",
                functools.partial(_peered, node.rpc),
            )  # fmt: skip
        self.timings["peered_s"] = time.monotonic() - began

    def fund(self, blocks: int = COINBASE_MATURITY + 1) -> str:
        """Mine to node 0's wallet until the chain is `blocks` high (mature coins from 101)."""
        began = time.monotonic()
        address = self._address()
        missing = blocks - self.height(0)
        if missing > 0:
            self.generate(missing)
        self.timings["fund_s"] = time.monotonic() - began
        return address

    def generate(self, count: int) -> list[str]:
        """Mine `count` blocks on node 0 to the wallet; return once node 1 has them too."""
        hashes: list[str] = self.rpc(0, "generatetoaddress", count, self._address())
        self.sync_blocks()
        return hashes

    def sync_blocks(self, timeout: float = 30.0) -> None:
        best = self.rpc(0, "getbestblockhash")
        self._wait(
            self.nodes[1], timeout, f"reach block {best}",
            lambda: self.rpc(1, "getbestblockhash") == best,
        )  # fmt: skip

    def sync_mempools(self, txids: Sequence[str], timeout: float = 60.0) -> None:
        for node in self.nodes:
            self._wait(
                node, timeout, f"see {', '.join(txids)} in its mempool",
                functools.partial(_in_mempool, node.rpc, set(txids)),
            )  # fmt: skip

    def stop(self, timeout: float = 30.0) -> None:
        """Ask each running node to stop, wait, and kill a node that does not."""
        running = [node for node in self.nodes if node.process and node.process.poll() is None]
        for node in running:
            with contextlib.suppress(RpcError):
                node.rpc.call("stop", timeout_s=5.0)
        for node in running:
            assert node.process is not None
            _wait_or_kill(node.process, timeout)
        for node in self.nodes:
            node.process = None

    def _node(self, index: int, p2p_port: int, onion_port: int, rpc_port: int) -> Node:
        return Node(
            index=index,
            datadir=self.base_dir / f"node{index}",
            p2p_port=p2p_port,
            onion_port=onion_port,
            rpc_port=rpc_port,
            # A session per async call: pair.arpc runs on whichever loop a test uses, and stop() is sync.
            rpc=JsonRpcClient(f"http://127.0.0.1:{rpc_port}", self.user, self.password,
                              timeout_s=_RPC_TIMEOUT_S, keep_alive=False),
        )

    def _launch(self, node: Node, peer: Node) -> None:
        node.datadir.mkdir(parents=True, exist_ok=True)
        args = [
            str(self.binary),
            "-regtest",
            f"-datadir={node.datadir}",
            "-server=1", "-listen=1", "-txindex=1",
            "-bind=127.0.0.1", f"-port={node.p2p_port}",
            # Without a port of its own for the (unused) onion service, every regtest node on
            # the machine binds 127.0.0.1:19444 for it and all but the first log a bind error.
            f"-bind=127.0.0.1:{node.onion_port}=onion",
            f"-connect=127.0.0.1:{peer.p2p_port}",
            # noban peers get transactions at once instead of after a random trickle delay.
            "-whitelist=noban@127.0.0.1",
            "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", f"-rpcport={node.rpc_port}",
            f"-rpcuser={self.user}", f"-rpcpassword={self.password}",
            "-rpcthreads=16", "-rpcworkqueue=256",
            "-fallbackfee=0.0001",
            "-keypool=50",  # the default 1000 makes createwallet take 1.4 s
            # Nothing beyond loopback: no DNS seeds, UPnP, Tor control or address discovery.
            "-dnsseed=0", "-upnp=0", "-listenonion=0", "-discover=0",
            "-printtoconsole=0",
        ]  # fmt: skip
        with node.stdout_log.open("ab") as out:
            # Its own session, like the embedded PostgreSQL: Ctrl-C at a terminal reaches the whole
            # process group, and a node stopping at once would fail the proxy's last RPCs; the
            # stack stops its nodes itself, after the proxy.
            node.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait(self, node: Node, timeout: float, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if node.process is not None and node.process.poll() is not None:
                raise LitecoinError(
                    f"litecoind node {node.index} exited with code {node.process.returncode} "
                    f"before it could {what}; {node.describe_logs()}"
                )
            # Not up yet, or warming up; refused credentials are final.
            with contextlib.suppress(RpcTransportError, RpcCallError):
                if done():
                    return
            if time.monotonic() > deadline:
                raise LitecoinError(
                    f"litecoind node {node.index} did not {what} within {timeout:.0f} s; "
                    f"{node.describe_logs()}"
                )
            time.sleep(0.05)

    def _address(self) -> str:
        if self.mining_address is None:
            _ensure_wallet(self.nodes[0].rpc, WALLET)
            self.mining_address = self.wallet.call("getnewaddress")
        return self.mining_address


def start_pair(base_dir: Path, blocks: int = COINBASE_MATURITY + 1) -> RegtestPair:
    """A started, peered and funded pair with its datadirs under `base_dir` (reused if present)."""
    pair = RegtestPair(base_dir)
    try:
        pair.start()
        pair.fund(blocks)
    except BaseException:
        pair.stop()
        raise
    return pair


def activate_mweb(pair: RegtestPair) -> str:
    """Bring a funded pair to the eve of MWEB activation; the txid of the peg-in it leaves.

    MWEB is ACTIVE from block 432, and that first MWEB block must carry a peg-in: without one in
    the mempool, template creation fails with `bad-txns-vin-empty` and the chain is stuck. So
    this mines to height 431, sends 1 LTC to the wallet's own MWEB address and waits until the
    peg-in is in both mempools. Block 432 is left for the code under test to mine.
    """
    began = time.monotonic()
    height = pair.height(0)
    if height >= MWEB_ACTIVATION_HEIGHT:
        raise LitecoinError(f"MWEB is active already: the chain is at height {height}")
    if height < MWEB_ACTIVATION_HEIGHT - 1:
        pair.generate(MWEB_ACTIVATION_HEIGHT - 1 - height)
    mweb_address = pair.wallet.call("getnewaddress", "", "mweb")
    txid: str = pair.wallet.call("sendtoaddress", mweb_address, 1)
    pair.sync_mempools([txid])
    pair.mweb_pegin_txid = txid
    pair.timings["activate_mweb_s"] = time.monotonic() - began
    return txid


def find_litecoind() -> Path:
    """The real litecoind binary: $QSCRYPT_LITECOIND, or the Debian package's daemon."""
    override = os.environ.get(LITECOIND_ENV)
    candidates = [Path(override)] if override else [*_KNOWN_BINARIES, *_dpkg_binaries()]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK) and not _is_script(path):
            return path
    looked = ", ".join(str(path) for path in candidates) or "nowhere"
    raise LitecoinError(
        f"litecoind not found (looked at {looked}): run `apt-get install litecoind`, "
        f"or set {LITECOIND_ENV} to the daemon binary"
    )


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held together while chosen, so never the same)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _dpkg_binaries() -> list[Path]:
    if shutil.which("dpkg") is None:
        return []
    listing = subprocess.run(["dpkg", "-L", "litecoind"], capture_output=True, text=True, check=False).stdout
    return [Path(line) for line in listing.splitlines() if line.endswith("/litecoind")]


def _is_script(path: Path) -> bool:
    with path.open("rb") as binary:
        return binary.read(2) == b"#!"


def _ensure_wallet(rpc: JsonRpcClient, name: str) -> None:
    """Load wallet `name`, creating it on first use (a reused datadir already has it)."""
    if name in rpc.call("listwallets"):
        return
    try:
        rpc.call("loadwallet", name)
    except RpcCallError as exc:
        if exc.code != _WALLET_NOT_FOUND:
            raise
        rpc.call("createwallet", name)


def _peered(rpc: JsonRpcClient) -> bool:
    return int(rpc.call("getconnectioncount")) >= 1


def _in_mempool(rpc: JsonRpcClient, txids: set[str]) -> bool:
    return txids <= set(rpc.call("getrawmempool"))


def _rpc_ready(rpc: JsonRpcClient) -> bool:
    try:
        rpc.call("getblockcount")
    except RpcCallError as exc:
        if exc.code == _RPC_WARMING_UP:
            return False
        raise
    return True


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(unreadable: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])

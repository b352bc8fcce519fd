"""A Dogecoin Core regtest node on loopback: the merged-mining (AuxPoW) peer for tests.

Dogecoin Core is built from the source snapshot in ../shared/peers (build-dogecoind.sh: no wallet,
no GUI) into ~/.cache/qscrypt-peers/dogecoin; $QSCRYPT_DOGECOIND names another binary. Without a
wallet the node still mines (`generatetoaddress`) and merge-mines (`createauxblock ADDRESS`,
`submitauxblock HASH AUXPOW`); an address to pay is made offline (`regtest_address`).

AuxPoW is accepted from height 20 on regtest (before it `createauxblock` answers "getauxblock
method is not yet available"), so `start` mines the chain to `AUXPOW_START_HEIGHT - 1` first. One
node needs no peer: regtest mines blocks on demand, and `createauxblock` asks for no connection.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from mining.hashing import sha256d
from qscrypt.devnet.litecoind import free_ports
from qscrypt.jsonrpc import JsonRpcClient, RpcCallError, RpcError, RpcTransportError

DOGECOIND_ENV = "QSCRYPT_DOGECOIND"
AUXPOW_START_HEIGHT = 20
REGTEST_P2PKH_VERSION = 111
_RPC_WARMING_UP = -28
_RPC_TIMEOUT_S = 60.0
_LOG_TAIL_LINES = 20
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class DogecoinError(RuntimeError):
    """The node could not be found, started or stopped (its RPC raises `RpcError`)."""


def default_binary() -> Path:
    override = os.environ.get(DOGECOIND_ENV)
    if override:
        return Path(override)
    cache = os.environ.get("QSCRYPT_PEERS_CACHE") or str(Path.home() / ".cache" / "qscrypt-peers")
    return Path(cache) / "dogecoin" / "dogecoind"


def regtest_address(seed: bytes) -> str:
    """A P2PKH regtest address nobody holds the key of (its hash160 is a hash of `seed`): blocks
    paid to it are visible to `getblock`, which is all a merged-mining test needs."""
    payload = bytes([REGTEST_P2PKH_VERSION]) + sha256d(seed)[:20]
    data = payload + sha256d(payload)[:4]
    number, text = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = _BASE58[digit] + text
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + text


class DogecoinNode:
    """One `dogecoind -regtest` in `datadir`."""

    def __init__(self, datadir: Path, *, binary: Path | None = None) -> None:
        self.datadir = Path(datadir).resolve()
        self.binary = binary or default_binary()
        self.user = "qscrypt"
        self.password = secrets.token_hex(16)
        self.p2p_port, self.rpc_port = free_ports(2)
        # A session per async call: tests call from whichever loop they run on.
        self.rpc = JsonRpcClient(f"http://127.0.0.1:{self.rpc_port}", self.user, self.password,
                                 timeout_s=_RPC_TIMEOUT_S, keep_alive=False)
        self.process: subprocess.Popen[bytes] | None = None
        self.mining_address = regtest_address(b"qscrypt devnet dogecoin " + self.datadir.name.encode())

    def __enter__(self) -> DogecoinNode:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def rpc_url(self) -> str:
        return self.rpc.url

    @property
    def stdout_log(self) -> Path:
        return self.datadir / "dogecoind.out"

    @property
    def debug_log(self) -> Path:
        return self.datadir / "regtest" / "debug.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def call(self, method: str, *params: Any) -> Any:
        return self.rpc.call(method, *params)

    async def acall(self, method: str, *params: Any) -> Any:
        return await self.rpc.acall(method, *params)

    def height(self) -> int:
        return int(self.call("getblockcount"))

    def start(self, timeout: float = 60.0) -> None:
        """Launch the node and return once it answers RPC."""
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise DogecoinError(f"dogecoind not found at {self.binary}: run "
                                "../shared/peers/build-dogecoind.sh (`make peers`), or set "
                                f"{DOGECOIND_ENV} to the daemon binary")
        self.datadir.mkdir(parents=True, exist_ok=True)
        args = [
            str(self.binary), "-regtest", f"-datadir={self.datadir}", "-server=1",
            f"-port={self.p2p_port}", f"-rpcport={self.rpc_port}",
            f"-rpcuser={self.user}", f"-rpcpassword={self.password}",
            "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", "-bind=127.0.0.1",
            "-discover=0", "-dnsseed=0", "-upnp=0", "-listenonion=0", "-printtoconsole=0",
            "-rpcthreads=8", "-txindex=1",  # getrawtransaction shows whom a block pays
        ]  # fmt: skip
        with self.stdout_log.open("ab") as out:
            # Its own session: a Ctrl-C at the terminal must not stop it under a running proxy.
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise DogecoinError(f"dogecoind exited with code {self.process.returncode} before it "
                                    f"answered RPC; {self.describe_logs()}")
            with contextlib.suppress(RpcTransportError):
                try:
                    self.call("getblockcount")
                    return
                except RpcCallError as exc:
                    if exc.code != _RPC_WARMING_UP:
                        raise
            if time.monotonic() > deadline:
                raise DogecoinError(f"dogecoind did not answer RPC within {timeout:.0f} s; "
                                    f"{self.describe_logs()}")
            time.sleep(0.05)

    def mine_to_auxpow(self) -> None:
        """Mine plain blocks until the next one may be merge-mined (height AUXPOW_START_HEIGHT - 1)."""
        missing = AUXPOW_START_HEIGHT - 1 - self.height()
        if missing > 0:
            self.generate(missing)

    def generate(self, count: int) -> list[str]:
        hashes: list[str] = self.call("generatetoaddress", count, self.mining_address)
        return hashes

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the node to stop; kill it if it does not within `timeout`."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(RpcError):
                self.rpc.call("stop", timeout_s=5.0)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None

    def describe_logs(self) -> str:
        parts = []
        for path in (self.stdout_log, self.debug_log):
            try:
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
            except OSError as exc:
                tail = f"(unreadable: {exc.strerror})"
            parts.append(f"{path}:\n{tail}")
        return "dogecoind logs\n" + "\n".join(parts)


def start_node(datadir: Path, binary: Path | None = None) -> DogecoinNode:
    """A started regtest node at the eve of AuxPoW (height 19), its datadir `datadir`."""
    node = DogecoinNode(datadir, binary=binary)
    try:
        node.start()
        node.mine_to_auxpow()
    except BaseException:
        node.stop()
        raise
    return node

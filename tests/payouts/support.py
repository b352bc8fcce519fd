"""Helpers for the payout tests: a receiving wallet on the regtest pair's second node, payout
configuration pointing at the first node's funded wallet, and blocks rows as the proxy writes them."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from payouts.config import CoinPayouts
from qscrypt.devnet.litecoind import WALLET, RegtestPair, _ensure_wallet
from qscrypt.jsonrpc import JsonRpcClient

RECEIVER = "receiver"


def receiver(pair: RegtestPair) -> JsonRpcClient:
    """Node 1's wallet that miners' payout addresses belong to (created on first use)."""
    _ensure_wallet(pair.nodes[1].rpc, RECEIVER)
    return pair.nodes[1].rpc.for_wallet(RECEIVER)


def coin_config(pair: RegtestPair, **overrides: Any) -> CoinPayouts:
    base = CoinPayouts(
        mode="solo",
        scheme="solo",
        network="regtest",
        fee_percent=1.0,
        minimum=0.001,
        rpc_url=pair.rpc_url(0),
        rpc_user=pair.user,
        rpc_password=pair.password,
        wallet=WALLET,
    )
    return replace(base, **overrides)


def toml(pair: RegtestPair, dsn: str, **keys: str) -> str:
    """A config file's text for `qscrypt payouts` on `pair`'s first node; `keys` (TOML values)
    replace or add to [payouts.coins.LTC]'s."""
    coin = {
        "mode": '"solo"', "scheme": '"solo"', "network": '"regtest"', "minimum": "0.001",
        "rpc_url": f'"{pair.rpc_url(0)}"', "rpc_user": f'"{pair.user}"', "rpc_password": f'"{pair.password}"',
        "wallet": f'"{WALLET}"',
    } | keys  # fmt: skip
    lines = ["[database]", f'dsn = "{dsn}"', "[payouts.coins.LTC]"] + [f"{k} = {v}" for k, v in coin.items()]
    return "\n".join(lines) + "\n"


async def record_block(
    conn: asyncpg.Connection, pair: RegtestPair, block_hash: str, worker: str, coin: str = "LTC"
) -> Decimal:
    """A `blocks` row for a real block of the pair, as the proxy writes one it found; its reward."""
    block = pair.rpc(0, "getblock", block_hash, 2)
    reward = sum(Decimal(str(out["value"])) for out in block["tx"][0]["vout"])
    await conn.execute(
        "INSERT INTO blocks (coin, height, hash, worker, upstream, reward, status, found_at) "
        "VALUES ($1, $2, $3, $4, 'ltc-solo', $5, 'accepted', $6)",
        coin,
        block["height"],
        block_hash,
        worker,
        reward,
        datetime.fromtimestamp(block["time"], UTC),
    )
    return reward


async def balance(conn: asyncpg.Connection, account: str, bucket: str, coin: str = "LTC") -> int:
    value = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0)::bigint FROM ledger_entries "
        "WHERE coin = $1 AND account = $2 AND bucket = $3",
        coin,
        account,
        bucket,
    )
    return int(value)


def received(wallet: JsonRpcClient, address: str) -> list[dict[str, Any]]:
    """The receiving wallet's transactions to `address` (mempool included)."""
    return [
        tx
        for tx in wallet.call("listtransactions", "*", 1000, 0, True)
        if tx.get("address") == address and tx.get("category") == "receive"
    ]

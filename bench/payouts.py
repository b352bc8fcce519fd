"""A payout run for many accounts: how long Qscrypt's own side takes, the daemon's time apart.

    python -m bench.payouts [--accounts N] [--max-outputs K]

A fresh embedded PostgreSQL (durable, as in production) and a fresh Litecoin Core regtest pair
(funded). N accounts (default 10,000; half payout addresses, half registered user names with a
payout address) each hold a balance of 0.001-0.002 LTC; one `run_payouts` settles, creates N
payouts (each with its ledger reservation), writes the batches and sends them with `sendmany`
(K outputs each, default 1000), and records the txids. Printed: the run's wall time, the time spent
waiting on the daemon (every RPC, measured around each call), their difference (Qscrypt's own
time; target <= 10 s), and as references measured in the same run the bulk insert of the N
balances into the ledger and the daemon's time per sendmany. The transactions are then checked on
the chain side: their outputs add up to what was paid, one per account.
"""

import argparse
import asyncio
import hashlib
import random
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from payouts import db
from payouts.accounts import POOL_ACCOUNT
from payouts.config import CoinPayouts
from payouts.run import run_payouts
from qscrypt.db.embedded import EmbeddedPostgres
from qscrypt.db.migrate import migrate
from qscrypt.devnet.litecoind import start_pair
from qscrypt.jsonrpc import JsonRpcClient

TARGET_S = 10.0
_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _regtest_p2pkh(rng: random.Random) -> str:
    """A regtest P2PKH address of a random key hash (nobody's wallet: the coins are only counted)."""
    payload = bytes([0x6F]) + rng.randbytes(20)
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number, text = int.from_bytes(raw, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = _ALPHABET[digit] + text
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + text


class TimedRpc:
    """The wallet client, with the time spent waiting on each call added up per method."""

    def __init__(self, client: JsonRpcClient) -> None:
        self.client = client
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    async def acall(self, method: str, *params: Any, timeout_s: float | None = None) -> Any:
        began = time.perf_counter()
        try:
            return await self.client.acall(method, *params, timeout_s=timeout_s)
        finally:
            self.seconds[method] = self.seconds.get(method, 0.0) + time.perf_counter() - began
            self.calls[method] = self.calls.get(method, 0) + 1


async def bench(dsn: str, pair_dir: Path, accounts: int, max_outputs: int) -> int:
    await migrate(dsn)
    print("starting a regtest pair and funding it ...", flush=True)
    # 40 mature coinbases (50 LTC each, before regtest's halving at 150): a wallet with many coins,
    # as a pool's is; chained on one coin's unconfirmed change, 1000-output transactions would hit
    # the mempool's ancestor size limit after three.
    pair = await asyncio.to_thread(start_pair, pair_dir, 140)
    try:
        rng = random.Random(17)
        names = [f"user{i:05d}" for i in range(accounts // 2)]
        addresses = [_regtest_p2pkh(rng) for _ in range(accounts)]
        holders = names + addresses[len(names) :]
        amounts = [rng.randint(100_000, 200_000) for _ in holders]
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await conn.executemany(
                    "INSERT INTO accounts (name, token_hash) VALUES ($1, $2)", [(n, "0" * 64) for n in names]
                )
                await conn.executemany(
                    "INSERT INTO account_addresses (account, coin, address) VALUES ($1, 'LTC', $2)",
                    list(zip(names, addresses, strict=False)),
                )
                began = time.perf_counter()
                async with conn.transaction():
                    await db.post(
                        conn,
                        [
                            ("LTC", "bench:grant", h, "balance", a)
                            for h, a in zip(holders, amounts, strict=True)
                        ]
                        + [("LTC", "bench:grant", POOL_ACCOUNT, "income", -sum(amounts))],
                    )
                grant_s = time.perf_counter() - began
            config = replace(
                CoinPayouts(network="regtest", minimum=0.001, fee_percent=0.0),
                rpc_url=pair.rpc_url(0),
                max_outputs=max_outputs,
            )
            rpc = TimedRpc(pair.wallet)
            began = time.perf_counter()
            report = await run_payouts(pool, "LTC", config, rpc, datetime.now(UTC))
            total_s = time.perf_counter() - began
            await rpc.client.close()
            async with pool.acquire() as conn:
                sent = await conn.fetchval("SELECT count(*) FROM payouts WHERE status = 'sent'")
        finally:
            await pool.close()
        # The chain side: every account got its amount in one of the transactions.
        outputs, paid = 0, Decimal(0)
        for txid in report.sent:
            tx = pair.wallet.call("gettransaction", txid, False, True)["decoded"]
            for out in tx["vout"]:
                if out["scriptPubKey"].get("address") in set(addresses) or any(
                    a in set(addresses) for a in out["scriptPubKey"].get("addresses", [])
                ):
                    outputs += 1
                    paid += Decimal(str(out["value"]))
        daemon_s = sum(rpc.seconds.values())
        ours_s = total_s - daemon_s
        per_send = rpc.seconds.get("sendmany", 0.0) / max(1, rpc.calls.get("sendmany", 0))
        print(
            f"accounts: {accounts}, payouts created: {report.created}, sent: {sent}, "
            f"transactions: {len(report.sent)} of up to {max_outputs} outputs"
        )
        print(
            f"chain check: {outputs} outputs to the accounts, {paid} LTC; "
            f"expected {accounts} outputs, {Decimal(sum(amounts)) / 10**8} LTC"
        )
        print(
            f"payout run: {total_s:.2f} s wall, daemon {daemon_s:.2f} s "
            f"({', '.join(f'{m} {rpc.calls[m]}x {s:.2f} s' for m, s in sorted(rpc.seconds.items()))})"
        )
        print(
            f"Qscrypt's own time: {ours_s:.2f} s (target <= {TARGET_S:.0f} s): "
            f"{'PASS' if ours_s <= TARGET_S else 'FAIL'}"
        )
        print(
            f"reference, same run: ledger bulk insert of {accounts} balances {grant_s:.2f} s; "
            f"daemon per sendmany {per_send:.2f} s"
        )
        ok = sent == accounts == outputs and paid == Decimal(sum(amounts)) / 10**8 and ours_s <= TARGET_S
        return 0 if ok else 1
    finally:
        await asyncio.to_thread(pair.stop)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--max-outputs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qscrypt-bench-payouts-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg")
        try:
            server.start()
            server.create_database("bench")
            return asyncio.run(bench(server.dsn("bench"), Path(tmp) / "ltc", args.accounts, args.max_outputs))
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())

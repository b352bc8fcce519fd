"""`qscrypt payouts`: run payouts (once, or every N seconds) and record what upstream pools paid.

`qscrypt` hands this package its `[payouts]` table as `args.section` and `[database]` as
`args.database`; the schema is migrated first.
"""

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from payouts.config import CoinPayouts, PayoutsConfig, to_units
from payouts.ledger import record_pool_payment
from payouts.run import run_payouts
from qscrypt.jsonrpc import JsonRpcClient, RpcError
from qscrypt.log import get_logger
from qscrypt.settings import ConfigError, load_section
from qscrypt.signals import stop_on_signals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", help="PostgreSQL DSN (overrides database.dsn)")
    sub = parser.add_subparsers(dest="payouts_command", required=True)
    run = sub.add_parser("run", help="settle earnings and pay every account due (sendmany per coin)")
    run.add_argument(
        "--coin", action="append", help="only this coin (repeatable); default: every configured one"
    )
    run.add_argument(
        "--every",
        type=float,
        default=None,
        help="run again every this many seconds until stopped (default: payouts.every_s; 0: once)",
    )
    run.add_argument("--no-send", action="store_true", help="settle and create payouts, but send nothing")
    imp = sub.add_parser("import-pool-payment", help="record what an upstream pool paid (pool mode)")
    imp.add_argument("--coin", required=True)
    imp.add_argument("--pool", required=True, help="the upstream's name (its shares form the PPLNS window)")
    imp.add_argument("--amount", required=True, help="in coins, e.g. 0.5")
    imp.add_argument("--reference", required=True, help="the pool's txid or another unique reference")
    imp.add_argument("--earned-at", help="RFC 3339 time the payment was earned up to (default: now)")


def wallet_of(config: CoinPayouts, symbol: str = "*") -> JsonRpcClient:
    """The coin's daemon (its `wallet` endpoint when one is named): it settles the coin's blocks
    (`getblock`) and pays (`sendmany`)."""
    if not config.rpc_url:
        raise ConfigError(f"payouts.coins.{symbol}.rpc_url", "is required (the coin's daemon)")
    client = JsonRpcClient(
        config.rpc_url,
        config.rpc_user,
        config.rpc_password,
        cookie_file=config.rpc_cookie_file,
        timeout_s=60.0,
    )
    return client.for_wallet(config.wallet) if config.wallet else client


def main(args: argparse.Namespace) -> Any:
    config = load_section(PayoutsConfig, dict(args.section or {}), "payouts")
    if args.payouts_command == "run":
        return _run(config, args)
    return _import(config, args)


async def _dsn(args: argparse.Namespace) -> str:
    from qscrypt.db import database_dsn
    from qscrypt.db.migrate import migrate

    dsn: str = args.dsn or await asyncio.to_thread(database_dsn, args.database)
    await migrate(dsn)
    return dsn


async def _run(config: PayoutsConfig, args: argparse.Namespace) -> int:
    symbols = [s.upper() for s in args.coin] if args.coin else sorted(config.coins)
    if not symbols:
        raise ConfigError("payouts.coins", "no coin configured: add a [payouts.coins.SYMBOL] table")
    coins = {s: config.coin(s) for s in symbols}
    for symbol, coin in coins.items():
        # Solo mode asks the coin's own daemon how deep each found block is (a DOGE block:
        # dogecoind), even with --no-send; paying needs its wallet.
        if not coin.rpc_url and (coin.mode == "solo" or not args.no_send):
            why = "the daemon that settles its blocks" if coin.mode == "solo" else "the paying wallet"
            raise ConfigError(f"payouts.coins.{symbol}.rpc_url", f"is required: {why}")
    every = config.every_s if args.every is None else args.every
    log = get_logger()
    try:
        pool = await asyncpg.create_pool(await _dsn(args), min_size=1, max_size=2)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"qscrypt: the database is unreachable: {exc}", file=sys.stderr)
        return 1
    failed = False
    try:
        with stop_on_signals() as stop:
            while True:
                for symbol, coin in coins.items():
                    wallet = wallet_of(coin, symbol)
                    try:
                        report = await run_payouts(
                            pool, symbol, coin, wallet, datetime.now(UTC), send=not args.no_send
                        )
                        print(json.dumps(report.summary()), flush=True)
                        failed = failed or bool(report.failed)
                    except (RpcError, OSError, RuntimeError) as exc:
                        log.error("payouts.run_failed", coin=symbol, error=str(exc))
                        failed = True
                    finally:
                        await wallet.close()
                if every <= 0:
                    break
                try:
                    await asyncio.wait_for(stop.wait(), every)
                    break
                except TimeoutError:
                    continue
    finally:
        await pool.close()
    return 1 if failed else 0


async def _import(config: PayoutsConfig, args: argparse.Namespace) -> int:
    symbol = args.coin.upper()
    coin = config.coin(symbol)
    if coin.mode != "pool":
        raise ConfigError(f"payouts.coins.{symbol}.mode", "pool payments are recorded in pool mode only")
    try:
        amount = to_units(Decimal(args.amount))
        earned_at = datetime.fromisoformat(args.earned_at) if args.earned_at else datetime.now(UTC)
    except (ValueError, InvalidOperation) as exc:
        print(f"qscrypt: --amount/--earned-at: {exc}", file=sys.stderr)
        return 2
    if earned_at.tzinfo is None or amount <= 0:
        print("qscrypt: --earned-at needs a time zone and --amount must be positive", file=sys.stderr)
        return 2
    try:
        conn = await asyncpg.connect(await _dsn(args))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"qscrypt: the database is unreachable: {exc}", file=sys.stderr)
        return 1
    try:
        payment_id, split = await record_pool_payment(
            conn, symbol, coin, args.pool, amount, earned_at, args.reference
        )
    except LookupError as exc:
        print(f"qscrypt: {exc}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    print(
        json.dumps(
            {
                "id": payment_id,
                "recorded": split is not None,
                "credits": dict(split.credits) if split else None,
                "fee": split.fee if split else None,
                "remainder": split.remainder if split else None,
            }
        )
    )
    return 0

"""Who a share earns for: a worker name is `ACCOUNT.RIG` (`.RIG` optional; a `+PROFILE` suffix
picks the proxy profile and is no part of it), and ACCOUNT is a payout address of the coin or a
registered user name. Pure: the proxy asks these before it says yes to `mining.authorize`, the API
before it registers a name."""

import hashlib
import re
import secrets
from collections.abc import Container, Iterable

from mining.address import AddressError, address_to_script
from mining.coins import Coin

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
"""Registered names: no '.' or '+', which separate the rig and the profile in a worker name."""
_NAME = re.compile(NAME_PATTERN)
POOL_ACCOUNT = "*pool"
"""The operator's own ledger account; no worker name can spell it."""


def account_of(worker: str) -> str:
    """The account of a worker name: `alice.rig1+night` -> `alice`."""
    return worker.partition("+")[0].partition(".")[0]


def address_problem(address: str, coin: Coin) -> str | None:
    """Why `address` cannot be paid on `coin`, or None. Stricter than the daemon (mining.address):
    surrounding whitespace is refused too, since the name is used as written."""
    if address != address.strip():
        return "address has whitespace around it"
    try:
        address_to_script(address, coin)
    except AddressError as exc:
        return str(exc)
    return None


def is_address(account: str, coins: Iterable[Coin]) -> bool:
    return any(address_problem(account, c) is None for c in coins)


def name_problem(name: str, coins: Iterable[Coin]) -> str | None:
    """Why `name` cannot be registered, or None."""
    if not _NAME.match(name):
        return "must start with a letter and hold only letters, digits, '_' and '-' (at most 32)"
    if is_address(name, coins):
        return "is a payout address: miners can mine to it without registering"
    return None


def refusal(worker: str, coins: Iterable[Coin], registered: Container[str]) -> str | None:
    """Why a miner authorizing as `worker` earns for no account, or None when it does."""
    account = account_of(worker)
    coins = list(coins)
    if not account:
        return "worker name must start with a payout address or a registered user name (ACCOUNT.RIG)"
    if account in registered or is_address(account, coins):
        return None
    chains = ", ".join(sorted({c.label for c in coins}))
    return (
        f"'{account}' is neither a {chains} payout address nor a registered user name: "
        f"mine as ADDRESS.RIG or register the name first"
    )


def new_token() -> tuple[str, str]:
    """A fresh account token and the sha256 hex stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

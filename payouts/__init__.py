"""Paying miners: accounts, the payout schemes (pure), the per-coin double-entry ledger, and payout
runs through the coin daemons' wallets. Imports qscrypt and mining only; api and cli use it."""

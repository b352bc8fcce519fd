"""Qscrypt's pure domain core: proof of work, targets, coinbase, merkle, headers, Stratum codec.

Nothing in this package does I/O or imports asyncio; every other package depends on it and it
depends on none of them.
"""

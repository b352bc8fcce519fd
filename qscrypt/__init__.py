"""Qscrypt: a profit-switching Stratum proxy for scrypt coins."""

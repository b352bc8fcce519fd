"""Bitcoin-family wire encodings shared by coinbase, block and script code."""

import struct


def compact_size(n: int) -> bytes:
    if n < 0:
        raise ValueError("compact size cannot be negative")
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


def push_data(data: bytes) -> bytes:
    """Minimal script push of `data`."""
    n = len(data)
    if n < 0x4C:
        return bytes([n]) + data
    if n <= 0xFF:
        return b"\x4c" + bytes([n]) + data
    if n <= 0xFFFF:
        return b"\x4d" + struct.pack("<H", n) + data
    return b"\x4e" + struct.pack("<I", n) + data


def script_number(n: int) -> bytes:
    """CScriptNum encoding (minimal, sign bit in the top byte), as BIP34 heights use."""
    if n == 0:
        return b""
    negative = n < 0
    value = abs(n)
    out = bytearray()
    while value:
        out.append(value & 0xFF)
        value >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if negative else 0)
    elif negative:
        out[-1] |= 0x80
    return bytes(out)


def bip34_height(height: int) -> bytes:
    """The coinbase scriptSig prefix BIP34 requires: a push of the block height."""
    if height < 0:
        raise ValueError("height cannot be negative")
    if 1 <= height <= 16:
        # Core's CScript() << height emits OP_1..OP_16 for these; the consensus check accepts only that.
        return bytes([0x50 + height])
    return push_data(script_number(height))


def swap_words(data: bytes) -> bytes:
    """Byte-swap each 4-byte word (Stratum's prevhash encoding)."""
    if len(data) % 4:
        raise ValueError("length must be a multiple of 4")
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))

"""Payout addresses → scriptPubKey, for the coinbase output a pool pays.

Base58check (P2PKH, P2SH), bech32 (witness v0, BIP173) and bech32m (v1+, BIP350). The policy is
stricter than the daemon's `validateaddress` wherever a valid address would be a bad payout:
- MWEB stealth addresses have no scriptPubKey, so a coinbase cannot pay them;
- witness versions without spending rules (v1 other than 32-byte taproot, v2..v16) are refused:
  anyone could take coins sent there today, and a soft fork could lock them up tomorrow;
- legacy P2SH version bytes (Litecoin's 0x05 '3…', 0xc4 '2…') are refused with the same script's
  address in the coin's own P2SH version: they are Bitcoin's P2SH versions too, so a '3…' address
  is as likely a mistyped Bitcoin address as an old Litecoin one;
- whitespace around a base58 address is tolerated, as the daemon's base58 decoder does; a bech32
  address with whitespace is refused, as the daemon does too. Upper-case bech32 is fine (BIP173).
Testnet and regtest share base58 versions, so such addresses are valid on both, as for the daemon.
"""

from mining.coins import COINS, Coin
from mining.hashing import sha256d

_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {c: i for i, c in enumerate(_BASE58_ALPHABET)}
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_INDEX = {c: i for i, c in enumerate(_BECH32_CHARSET)}
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3
_BECH32_MAX_LENGTH = 90
# Longer than any address (MWEB ones run to ~121): usernames can carry addresses, so bound the work.
_MAX_INPUT_LENGTH = 200
_CHECKSUM_LENGTH = 6
# C's isspace(), which Litecoin Core's base58 decoder skips around an address.
_WHITESPACE = " \t\n\v\f\r"
_HASH160_LENGTH = 20
_MWEB_HRPS = frozenset(c.mweb_hrp for c in COINS if c.mweb_hrp is not None)
_KNOWN_HRPS = _MWEB_HRPS | {c.bech32_hrp for c in COINS if c.bech32_hrp is not None}
_TAPROOT_PROGRAM_LENGTH = 32

_OP_DUP, _OP_HASH160, _OP_EQUALVERIFY, _OP_CHECKSIG, _OP_EQUAL = 0x76, 0xA9, 0x88, 0xAC, 0x87


class AddressError(ValueError):
    """An address a pool cannot pay; the message says why, in words a miner can act on."""


def address_to_script(address: str, coin: Coin) -> bytes:
    """The scriptPubKey that pays `address` on `coin`'s chain; AddressError when it cannot be paid."""
    if len(address) > _MAX_INPUT_LENGTH:
        raise AddressError(f"address is too long ({len(address)} characters)")
    stripped = address.strip(_WHITESPACE)
    if not stripped:
        raise AddressError("address is empty")
    if _looks_like_bech32(stripped):
        return _segwit_script(address, coin)
    return _base58_script(stripped, coin)


def _looks_like_bech32(text: str) -> bool:
    """Route an input to the decoder whose error will make sense to the person who typed it."""
    separator = text.rfind("1")
    if separator < 1:
        return False
    if text[:separator].lower() in _KNOWN_HRPS:
        return True
    # Another chain's bech32 address ("bc1…") deserves "unknown prefix", not a base58 complaint.
    lowered = text.lower()
    data = lowered[separator + 1 :]
    return (
        text in (lowered, text.upper())
        and len(data) >= _CHECKSUM_LENGTH
        and all(c in _BECH32_INDEX for c in data)
        and _bech32_polymod(_hrp_expand(lowered[:separator]) + [_BECH32_INDEX[c] for c in data])
        in (_BECH32_CONST, _BECH32M_CONST)
    )


# --- base58check -------------------------------------------------------------------------------


def _base58_script(text: str, coin: Coin) -> bytes:
    payload = _base58check_decode(text)
    if len(payload) != 1 + _HASH160_LENGTH:
        raise AddressError(
            f"base58 address carries {len(payload)} bytes, expected 21 (a version byte and a 20-byte hash)"
        )
    version, digest = payload[0], payload[1:]
    if version in coin.p2pkh_versions:
        return bytes([_OP_DUP, _OP_HASH160, len(digest)]) + digest + bytes([_OP_EQUALVERIFY, _OP_CHECKSIG])
    if version in coin.p2sh_versions:
        return bytes([_OP_HASH160, len(digest)]) + digest + bytes([_OP_EQUAL])
    if version in coin.legacy_p2sh_versions:
        modern = _base58check_encode(bytes([coin.p2sh_versions[0]]) + digest)
        raise AddressError(
            f"{text} uses the legacy P2SH version byte {version:#04x}, which Bitcoin uses too; "
            f"pay the same script as {modern} instead"
        )
    owners = [
        c for c in COINS
        if version in c.p2pkh_versions + c.p2sh_versions + c.legacy_p2sh_versions
    ]
    if owners:
        # Version bytes are shared between families (0x6f: Litecoin testnet, Dogecoin regtest):
        # the expected coin's own family is the likely mix-up, so it alone is named when it owns one.
        owners = [c for c in owners if c.name == coin.name] or owners
        raise AddressError(f"address is for {_describe(owners)}, expected {coin.label}")
    raise AddressError(f"unknown base58 version byte {version:#04x}: not a {coin.label} address")


def _base58check_decode(text: str) -> bytes:
    for char in text:
        if char in _WHITESPACE:
            raise AddressError("address contains whitespace")
        if char not in _BASE58_INDEX:
            raise AddressError(f"character {char!r} is not valid in a base58 address")
    number = 0
    for char in text:
        number = number * 58 + _BASE58_INDEX[char]
    leading_zeros = len(text) - len(text.lstrip("1"))
    raw = bytes(leading_zeros) + number.to_bytes((number.bit_length() + 7) // 8, "big")
    if len(raw) < 5:
        raise AddressError("address is too short")
    payload, checksum = raw[:-4], raw[-4:]
    if sha256d(payload)[:4] != checksum:
        raise AddressError("bad base58 checksum: the address is mistyped or incomplete")
    return payload


def _base58check_encode(payload: bytes) -> str:
    raw = payload + sha256d(payload)[:4]
    number = int.from_bytes(raw, "big")
    digits = ""
    while number:
        number, digit = divmod(number, 58)
        digits = _BASE58_ALPHABET[digit] + digits
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + digits


# --- bech32 / bech32m --------------------------------------------------------------------------


def _segwit_script(text: str, coin: Coin) -> bytes:
    hrp, values, const = _bech32_decode(text, coin)
    if hrp in _MWEB_HRPS:
        if hrp != coin.mweb_hrp:
            owners = [c for c in COINS if c.mweb_hrp == hrp]
            raise AddressError(
                f"MWEB address for {_describe(owners)}, expected {coin.label}; "
                "MWEB addresses cannot receive a coinbase output"
            )
        raise AddressError("MWEB addresses cannot receive a coinbase output; use a regular address")
    if hrp != coin.bech32_hrp:
        owners = [c for c in COINS if c.bech32_hrp == hrp]
        raise AddressError(f"address is for {_describe(owners)}, expected {coin.label}")
    if len(text) > _BECH32_MAX_LENGTH:
        raise AddressError(f"bech32 address is {len(text)} characters, the limit is {_BECH32_MAX_LENGTH}")
    if not values:
        raise AddressError("bech32 address has no witness version")
    version, program = values[0], _regroup_5_to_8(values[1:])
    if version > 16:
        raise AddressError(f"witness version {version} does not exist (the highest is 16)")
    if not 2 <= len(program) <= 40:
        raise AddressError(f"witness program length {len(program)} is outside 2..40 bytes")
    if version == 0 and len(program) not in (20, 32):
        raise AddressError(f"witness v0 program is {len(program)} bytes, it must be 20 or 32")
    if version == 0 and const != _BECH32_CONST:
        raise AddressError("witness v0 address must use the bech32 checksum, not bech32m (BIP350)")
    if version > 0 and const != _BECH32M_CONST:
        raise AddressError(f"witness v{version} address must use the bech32m checksum (BIP350)")
    if not _payable_witness(version, len(program), coin):
        raise AddressError(
            f"witness v{version} with a {len(program)}-byte program has no spending rules yet "
            f"(anyone could spend the coins); use a {coin.bech32_hrp}1q… or taproot address"
        )
    opcode = 0 if version == 0 else 0x50 + version
    return bytes([opcode, len(program)]) + program


def _payable_witness(version: int, program_length: int, coin: Coin) -> bool:
    if version == 0:
        return True
    return version == 1 and program_length == _TAPROOT_PROGRAM_LENGTH and coin.taproot


def _bech32_decode(text: str, coin: Coin) -> tuple[str, list[int], int]:
    """(hrp, data values without checksum, checksum constant), the hrp already known to the registry."""
    if any(not 33 <= ord(c) <= 126 for c in text):
        if any(c in _WHITESPACE for c in text):
            raise AddressError("bech32 address contains whitespace")
        raise AddressError("address contains a character that is not printable ASCII")
    if text != text.lower() and text != text.upper():
        raise AddressError("bech32 address mixes upper and lower case")
    text = text.lower()
    separator = text.rfind("1")
    hrp, data = text[:separator], text[separator + 1 :]
    if hrp not in _KNOWN_HRPS:
        raise AddressError(f"unknown address prefix {hrp!r}: not a {coin.label} address")
    if len(data) < _CHECKSUM_LENGTH:
        raise AddressError("bech32 address is too short to hold its checksum")
    for char in data:
        if char not in _BECH32_INDEX:
            raise AddressError(f"character {char!r} is not valid in a bech32 address")
    values = [_BECH32_INDEX[c] for c in data]
    const = _bech32_polymod(_hrp_expand(hrp) + values)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        raise AddressError("bad bech32 checksum: the address is mistyped or incomplete")
    return hrp, values[:-_CHECKSUM_LENGTH], const


def _bech32_polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                checksum ^= generator[i]
    return checksum


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup_5_to_8(values: list[int]) -> bytes:
    """5-bit groups back to bytes; BIP173 allows at most 4 padding bits, all zero."""
    accumulator = 0
    bits = 0
    out = bytearray()
    for value in values:
        accumulator = (accumulator << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((accumulator >> bits) & 0xFF)
    if bits > 4:
        raise AddressError("bech32 address has more than 4 padding bits")
    if accumulator & ((1 << bits) - 1):
        raise AddressError("bech32 address has non-zero padding bits")
    return bytes(out)


def _describe(coins: list[Coin]) -> str:
    """"litecoin testnet/regtest" for chains that share a prefix, "litecoin mainnet" for one."""
    names = dict.fromkeys(c.name for c in coins)
    return " or ".join(
        f"{name} " + "/".join(c.network_label for c in coins if c.name == name) for name in names
    )

"""Solo-mining work from a getblocktemplate answer: coinbase, Stratum job, and the block to submit.

The template is the `result` dict Litecoin Core returns for {"rules": ["mweb", "segwit"]}. The layout
rules (checked byte for byte against blocks Litecoin Core accepted, tests/mining/test_block.py):
- the coinbase is split around the extranonce as coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2;
- the merkle root covers the coinbase txid (legacy serialization) and every template txid in order,
  the MWEB HogEx (always last) included;
- the block is header ‖ compactSize(1 + n) ‖ coinbase (segwit serialization when the template has a
  witness commitment) ‖ each template `data` verbatim ‖ 0x01 ‖ mweb, when the template has "mweb".
"""

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mining.coins import Coin
from mining.job import Job
from mining.merkle import merkle_branch
from mining.serialize import bip34_height, compact_size, push_data
from mining.target import bits_to_target

COINBASE_TX_VERSION = 2  # what Litecoin Core's own miner writes
MAX_COINBASE_SCRIPT_SIG = 100  # consensus: a coinbase scriptSig is 2 to 100 bytes
# A one-byte push opcode (0x01..0x4b) keeps the extranonce at a fixed offset from coinb1's end.
MAX_EXTRANONCE_SIZE = 0x4B
_NULL_PREVOUT = bytes(32) + b"\xff\xff\xff\xff"
_FINAL_SEQUENCE = b"\xff\xff\xff\xff"
_LOCKTIME = bytes(4)
_SEGWIT_MARKER_FLAG = b"\x00\x01"
# The coinbase witness: one stack item, the 32-byte witness reserved value, all zeros (BIP141).
_WITNESS_RESERVED_VALUE = b"\x01\x20" + bytes(32)
_MWEB_PRESENT = b"\x01"


@dataclass(frozen=True, slots=True)
class CoinbaseParts:
    coinb1: bytes  # ends with the push opcode of the extranonce area
    coinb2: bytes  # starts with the tag push
    has_witness_commitment: bool


@dataclass(frozen=True, slots=True)
class BlockTemplateWork:
    """The header fields of a template, parsed once."""

    height: int
    version: int
    prevhash: bytes  # header byte order (the RPC's hex reversed)
    bits: int
    curtime: int
    coinbasevalue: int

    @classmethod
    def from_template(cls, template: Mapping[str, Any]) -> "BlockTemplateWork":
        return cls(
            height=_int_field(template, "height"),
            version=_int_field(template, "version", bits=32),
            prevhash=_hex_field(template, "previousblockhash", 32)[::-1],
            bits=int.from_bytes(_hex_field(template, "bits", 4), "big"),
            curtime=_int_field(template, "curtime", bits=32),
            coinbasevalue=_int_field(template, "coinbasevalue", bits=63),
        )

    @property
    def target(self) -> int:
        """The network target a header's proof of work must meet for the block to count."""
        return bits_to_target(self.bits)

    def job(self, job_id: str, parts: CoinbaseParts, branch: Sequence[bytes], clean_jobs: bool = True) -> Job:
        return Job(
            job_id=job_id,
            prevhash=self.prevhash,
            coinb1=parts.coinb1,
            coinb2=parts.coinb2,
            merkle_branch=tuple(branch),
            version=self.version,
            bits=self.bits,
            ntime=self.curtime,
            clean_jobs=clean_jobs,
        )


def build_coinbase(
    template: Mapping[str, Any], payout_script: bytes, tag: bytes, extranonce_size: int, coin: Coin,
    aux_commitment: bytes = b"",
) -> CoinbaseParts:
    """The coinbase paying the whole `coinbasevalue` to `payout_script`, split for Stratum.

    scriptSig = BIP34 height ‖ [push(aux_commitment)] ‖ push of `extranonce_size` bytes
    (extranonce1 ‖ extranonce2) ‖ push(tag). The merged-mining commitment (mining.auxpow) sits in
    coinb1, before the extranonce: every share of the job commits to the same aux blocks.
    """
    if not 1 <= extranonce_size <= MAX_EXTRANONCE_SIZE:
        raise ValueError(f"extranonce size must be 1 to {MAX_EXTRANONCE_SIZE} bytes, got {extranonce_size}")
    if not payout_script:
        raise ValueError("payout script is empty")
    height = _int_field(template, "height")
    value = _int_field(template, "coinbasevalue", bits=63)
    commitment = _optional_hex_field(template, "default_witness_commitment")
    # A daemon of another chain than the configured coin shows here first: fail before paying out.
    if commitment is not None and not coin.segwit:
        raise ValueError(f"template carries a witness commitment but {coin.label} has no segwit")
    if "mweb" in template and not coin.mweb:
        raise ValueError(f"template carries MWEB data but {coin.label} has no MWEB")
    height_push = bip34_height(height) + (push_data(aux_commitment) if aux_commitment else b"")
    tag_push = push_data(tag)
    script_sig_size = len(height_push) + 1 + extranonce_size + len(tag_push)
    if script_sig_size > MAX_COINBASE_SCRIPT_SIG:
        raise ValueError(
            f"coinbase scriptSig would be {script_sig_size} bytes (height and aux {len(height_push)}, "
            f"extranonce {1 + extranonce_size}, tag {len(tag_push)}), over the "
            f"{MAX_COINBASE_SCRIPT_SIG}-byte limit: shorten the coinbase tag"
        )
    outputs = [_output(value, payout_script)]
    if commitment is not None:
        outputs.append(_output(0, commitment))
    coinb1 = (
        struct.pack("<i", COINBASE_TX_VERSION)
        + compact_size(1)
        + _NULL_PREVOUT
        + compact_size(script_sig_size)
        + height_push
        + bytes([extranonce_size])
    )
    coinb2 = (
        tag_push
        + _FINAL_SEQUENCE
        + compact_size(len(outputs))
        + b"".join(outputs)
        + _LOCKTIME
    )
    return CoinbaseParts(coinb1, coinb2, has_witness_commitment=commitment is not None)


def stratum_branch(template: Mapping[str, Any]) -> list[bytes]:
    """The merkle branch of the coinbase over the template's txids (internal byte order)."""
    return merkle_branch([_hex_field(tx, "txid", 32)[::-1] for tx in _transactions(template)])


def witness_coinbase(legacy_coinbase: bytes) -> bytes:
    """The one-input coinbase in segwit serialization, with the all-zero witness reserved value."""
    if len(legacy_coinbase) < 10 or legacy_coinbase[4] != 1:
        raise ValueError("not a one-input transaction in legacy serialization")
    return (
        legacy_coinbase[:4]
        + _SEGWIT_MARKER_FLAG
        + legacy_coinbase[4:-4]
        + _WITNESS_RESERVED_VALUE
        + legacy_coinbase[-4:]
    )


def assemble_block(header: bytes, coinbase_legacy: bytes, template: Mapping[str, Any]) -> bytes:
    """The block for `submitblock`."""
    if len(header) != 80:
        raise ValueError(f"a block header is 80 bytes, got {len(header)}")
    transactions = [_hex_field(tx, "data") for tx in _transactions(template)]
    has_commitment = _optional_hex_field(template, "default_witness_commitment") is not None
    coinbase = witness_coinbase(coinbase_legacy) if has_commitment else coinbase_legacy
    mweb = _optional_hex_field(template, "mweb")
    return (
        header
        + compact_size(1 + len(transactions))
        + coinbase
        + b"".join(transactions)
        + (b"" if mweb is None else _MWEB_PRESENT + mweb)
    )


def _output(value: int, script: bytes) -> bytes:
    return struct.pack("<q", value) + compact_size(len(script)) + script


def _transactions(template: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    transactions = template.get("transactions", [])
    if not isinstance(transactions, list) or not all(isinstance(tx, Mapping) for tx in transactions):
        raise ValueError("template transactions must be a list of objects")
    return transactions


def _int_field(template: Mapping[str, Any], name: str, bits: int | None = None) -> int:
    value = template.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"template field {name!r} must be a non-negative integer, got {value!r}")
    if bits is not None and value >= 1 << bits:
        raise ValueError(f"template field {name!r} does not fit in {bits} bits: {value}")
    return value


def _hex_field(template: Mapping[str, Any], name: str, length: int | None = None) -> bytes:
    data = _optional_hex_field(template, name)
    if data is None:
        raise ValueError(f"template field {name!r} is missing")
    if length is not None and len(data) != length:
        raise ValueError(f"template field {name!r} must be {length} bytes, got {len(data)}")
    return data


def _optional_hex_field(template: Mapping[str, Any], name: str) -> bytes | None:
    value = template.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"template field {name!r} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"template field {name!r} is not valid hex") from None

"""Merged mining (AuxPoW): one parent block's proof of work counted by other chains too, pure.

Dogecoin (and Namecoin before it) accept a block of another scrypt chain as proof of work for a
block of their own when the parent's coinbase commits to it. The layout, as Dogecoin Core 1.14.7
checks it (src/auxpow.cpp, `CAuxPow::check`), and as `check_auxpow` here checks it again:

- the aux chains' block hashes are the leaves of an "aux merkle tree" of 2^h slots; each chain
  sits in the slot `expected_index(nonce, chain_id, h)` picks, so one chain id has one slot and
  several chains with different ids ride one parent block at once;
- the parent coinbase's scriptSig carries `fa be 6d 6d` ‖ aux root (display byte order, i.e.
  reversed) ‖ tree size 2^h (uint32 LE) ‖ nonce (uint32 LE), the marker once only;
- the AuxPoW sent with `submitauxblock` is the parent coinbase (legacy serialization) ‖ a block
  hash (not checked) ‖ the coinbase's merkle branch to the parent merkle root ‖ its index 0 ‖ the
  chain's branch in the aux tree ‖ its slot ‖ the 80-byte parent header;
- the parent's proof of work (scrypt, as Litecoin's) meets the aux block's target, and the parent
  header's chain id (version >> 16) is not the aux chain's own (Dogecoin: 98).

Hashes are in internal byte order (as sha256d gives them) unless named `_hex`: RPC hex is the
reverse.
"""

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mining.hashing import sha256d
from mining.serialize import compact_size
from mining.target import bits_to_target

MERGED_MINING_MARKER = b"\xfa\xbe\x6d\x6d"
COMMITMENT_SIZE = len(MERGED_MINING_MARKER) + 32 + 4 + 4
MAX_CHAIN_MERKLE_HEIGHT = 30  # Core refuses a longer aux branch
_U32 = 0xFFFFFFFF
_HEADER_SIZE = 80


class AuxPowError(ValueError):
    """An AuxPoW that Dogecoin Core would refuse (its own message), or bytes that are none."""


def expected_index(nonce: int, chain_id: int, height: int) -> int:
    """The slot of chain `chain_id` in an aux tree of 2^`height` leaves (CAuxPow::getExpectedIndex,
    in uint32 arithmetic: the C++ overflows on purpose)."""
    rand = nonce & _U32
    rand = (rand * 1103515245 + 12345) & _U32
    rand = (rand + chain_id) & _U32
    rand = (rand * 1103515245 + 12345) & _U32
    return rand % (1 << height)


def fold_branch(leaf: bytes, branch: Sequence[bytes], index: int) -> bytes:
    """The root a merkle branch leads to from `leaf` at `index` (CAuxPow::CheckMerkleBranch)."""
    node = leaf
    for sibling in branch:
        node = sha256d(sibling + node) if index & 1 else sha256d(node + sibling)
        index >>= 1
    return node


@dataclass(frozen=True, slots=True)
class AuxBlock:
    """An aux chain's block to merge-mine, from Dogecoin's `createauxblock ADDRESS`."""

    hash: bytes  # internal byte order
    chain_id: int
    prevhash_hex: str  # the block it builds on, as the RPC writes it
    height: int
    coinbasevalue: int
    bits: int
    target: int

    @property
    def hash_hex(self) -> str:
        return self.hash[::-1].hex()

    @classmethod
    def from_rpc(cls, answer: Mapping[str, Any]) -> "AuxBlock":
        """Parse a `createauxblock` answer; ValueError names the field that is wrong.

        `target` is the 256-bit target's bytes little-endian first (arith_uint256 dumped as it
        lies in memory), unlike every hash the RPC prints: it must equal what `bits` says."""
        if not isinstance(answer, Mapping):
            raise ValueError(f"createauxblock answered {type(answer).__name__}, not an object")
        block_hash = _hex(answer, "hash", 32)[::-1]
        prevhash = _hex(answer, "previousblockhash", 32)
        bits = int.from_bytes(_hex(answer, "bits", 4), "big")
        target = int.from_bytes(_hex(answer, "target", 32), "little")
        if target != bits_to_target(bits):
            raise ValueError(f"createauxblock target {answer['target']} is not what bits {answer['bits']} "
                             "say (it is read little-endian)")
        return cls(block_hash, _int(answer, "chainid", 0xFFFF), prevhash.hex(), _int(answer, "height", _U32),
                   _int(answer, "coinbasevalue", 2**63 - 1), bits, target)


@dataclass(frozen=True, slots=True)
class AuxTree:
    """The aux merkle tree of one parent job: every slot, the nonce that placed the chains."""

    leaves: tuple[bytes, ...]  # 2^height of them; an empty slot holds 32 zero bytes
    nonce: int
    slots: tuple[int, ...]  # the slot of each chain, in the order they were given

    @property
    def size(self) -> int:
        return len(self.leaves)

    @property
    def height(self) -> int:
        return self.size.bit_length() - 1

    @property
    def root(self) -> bytes:
        layer = list(self.leaves)
        while len(layer) > 1:
            layer = [sha256d(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
        return layer[0]

    def branch(self, slot: int) -> list[bytes]:
        """The siblings on the path from `slot` to the root, bottom first."""
        if not 0 <= slot < self.size:
            raise ValueError(f"slot {slot} is outside a tree of {self.size}")
        branch = []
        layer = list(self.leaves)
        index = slot
        while len(layer) > 1:
            branch.append(layer[index ^ 1])
            layer = [sha256d(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
            index >>= 1
        return branch

    def commitment(self) -> bytes:
        """What the parent coinbase's scriptSig carries: marker ‖ root (reversed) ‖ size ‖ nonce."""
        return MERGED_MINING_MARKER + self.root[::-1] + struct.pack("<II", self.size, self.nonce)


def build_aux_tree(chains: Sequence[tuple[int, bytes]], nonce: int = 0) -> AuxTree:
    """The smallest tree that gives each (chain id, aux block hash) a slot of its own."""
    if not chains:
        raise ValueError("an aux tree needs at least one chain")
    ids = [chain_id for chain_id, _ in chains]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"chain id {twice[0]} twice: a chain id has one slot, so two chains sharing it "
                         "cannot be merge-mined on the same parent block")
    for height in range(MAX_CHAIN_MERKLE_HEIGHT + 1):
        slots = [expected_index(nonce, chain_id, height) for chain_id in ids]
        if len(set(slots)) == len(slots):
            break
    else:  # distinct ids below 2^30 always separate by height 30: the multiplier is odd
        raise ValueError(f"chain ids {ids} share a slot at every tree height with nonce {nonce}")
    leaves = [bytes(32)] * (1 << height)
    for slot, (_, block_hash) in zip(slots, chains, strict=True):
        if len(block_hash) != 32:
            raise ValueError(f"an aux block hash is 32 bytes, got {len(block_hash)}")
        leaves[slot] = block_hash
    return AuxTree(tuple(leaves), nonce, tuple(slots))


@dataclass(frozen=True, slots=True)
class AuxPow:
    """The proof `submitauxblock HASH AUXPOW` takes, field by field (CAuxPow's serialization)."""

    coinbase: bytes  # the parent coinbase, legacy serialization (txid = sha256d of it)
    coinbase_branch: tuple[bytes, ...]  # to the parent merkle root (the Stratum branch)
    chain_branch: tuple[bytes, ...]  # to the aux root
    chain_index: int
    parent_header: bytes
    parent_hash: bytes = bytes(32)  # CMerkleTx::hashBlock: serialized, never checked
    coinbase_index: int = 0  # the coinbase is transaction 0

    def serialize(self) -> bytes:
        if len(self.parent_header) != _HEADER_SIZE:
            raise ValueError(f"a parent header is {_HEADER_SIZE} bytes, got {len(self.parent_header)}")
        return (
            self.coinbase
            + self.parent_hash
            + _hash_vector(self.coinbase_branch)
            + struct.pack("<i", self.coinbase_index)
            + _hash_vector(self.chain_branch)
            + struct.pack("<i", self.chain_index)
            + self.parent_header
        )

    @classmethod
    def parse(cls, data: bytes) -> "AuxPow":
        reader = _Reader(data)
        coinbase = reader.transaction()
        parent_hash = reader.take(32)
        coinbase_branch = reader.hashes()
        coinbase_index = reader.int32()
        chain_branch = reader.hashes()
        chain_index = reader.int32()
        header = reader.take(_HEADER_SIZE)
        if reader.left:
            raise AuxPowError(f"{reader.left} bytes after the parent header")
        return cls(coinbase, coinbase_branch, chain_branch, chain_index, header, parent_hash, coinbase_index)


def build_auxpow(coinbase: bytes, coinbase_branch: Sequence[bytes], tree: AuxTree, chain: int,
                 parent_header: bytes) -> AuxPow:
    """The AuxPoW of the `chain`-th chain of `tree` (in the order build_aux_tree got them)."""
    slot = tree.slots[chain]
    return AuxPow(coinbase, tuple(coinbase_branch), tuple(tree.branch(slot)), slot, parent_header,
                  parent_hash=sha256d(parent_header))


def check_auxpow(auxpow: AuxPow, aux_hash: bytes, chain_id: int, strict_chain_id: bool = True) -> None:
    """Raise AuxPowError with Dogecoin Core's message where CAuxPow::check refuses `auxpow` for the
    aux block `aux_hash` (internal order) of chain `chain_id`. The proof of work is not checked."""
    if auxpow.coinbase_index != 0:
        raise AuxPowError("AuxPow is not a generate")
    header = auxpow.parent_header
    if strict_chain_id and struct.unpack_from("<i", header)[0] >> 16 == chain_id:
        raise AuxPowError("Aux POW parent has our chain ID")
    if len(auxpow.chain_branch) > MAX_CHAIN_MERKLE_HEIGHT:
        raise AuxPowError("Aux POW chain merkle branch too long")
    root = fold_branch(aux_hash, auxpow.chain_branch, auxpow.chain_index)[::-1]
    if fold_branch(sha256d(auxpow.coinbase), auxpow.coinbase_branch, auxpow.coinbase_index) != header[36:68]:
        raise AuxPowError("Aux POW merkle root incorrect")
    script = coinbase_script_sig(auxpow.coinbase)
    head = script.find(MERGED_MINING_MARKER)
    at = script.find(root)
    if at < 0:
        raise AuxPowError("Aux POW missing chain merkle root in parent coinbase")
    if head >= 0:
        if script.find(MERGED_MINING_MARKER, head + 1) >= 0:
            raise AuxPowError("Multiple merged mining headers in coinbase")
        if head + len(MERGED_MINING_MARKER) != at:
            raise AuxPowError("Merged mining header is not just before chain merkle root")
    elif at > 20:
        raise AuxPowError("Aux POW chain merkle root must start in the first 20 bytes of the parent coinbase")
    tail = script[at + 32 :]
    if len(tail) < 8:
        raise AuxPowError("Aux POW missing chain merkle tree size and nonce in parent coinbase")
    size, nonce = struct.unpack_from("<II", tail)
    height = len(auxpow.chain_branch)
    if size != 1 << height:
        raise AuxPowError("Aux POW merkle branch size does not match parent coinbase")
    if auxpow.chain_index != expected_index(nonce, chain_id, height):
        raise AuxPowError("Aux POW wrong index")


def coinbase_script_sig(transaction: bytes) -> bytes:
    """The scriptSig of a legacy-serialized transaction's first input."""
    reader = _Reader(transaction)
    reader.take(4)
    if reader.compact() < 1:
        raise AuxPowError("the parent coinbase has no input (or is in segwit serialization)")
    reader.take(36)
    return reader.take(reader.compact())


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left:
            raise AuxPowError(f"truncated: {n} bytes wanted at offset {self.pos}, {self.left} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def compact(self) -> int:
        first = self.take(1)[0]
        if first < 0xFD:
            return first
        size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        return int.from_bytes(self.take(size), "little")

    def int32(self) -> int:
        value: int = struct.unpack("<i", self.take(4))[0]
        return value

    def hashes(self) -> tuple[bytes, ...]:
        count = self.compact()
        if count * 32 > self.left:
            raise AuxPowError(f"a branch of {count} hashes does not fit in {self.left} bytes")
        return tuple(self.take(32) for _ in range(count))

    def transaction(self) -> bytes:
        """A whole legacy-serialized transaction, as bytes."""
        start = self.pos
        self.take(4)
        inputs = self.compact()
        if inputs == 0:
            raise AuxPowError("the parent coinbase is in segwit serialization: AuxPoW carries the legacy one")
        for _ in range(inputs):
            self.take(36)
            self.take(self.compact())
            self.take(4)
        for _ in range(self.compact()):
            self.take(8)
            self.take(self.compact())
        self.take(4)
        return self.data[start : self.pos]


def _hash_vector(hashes: Sequence[bytes]) -> bytes:
    if any(len(h) != 32 for h in hashes):
        raise ValueError("a merkle branch holds 32-byte hashes")
    return compact_size(len(hashes)) + b"".join(hashes)


def _hex(answer: Mapping[str, Any], name: str, length: int) -> bytes:
    value = answer.get(name)
    if not isinstance(value, str):
        raise ValueError(f"createauxblock field {name!r} must be a hex string, got {value!r}")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"createauxblock field {name!r} is not valid hex") from None
    if len(data) != length:
        raise ValueError(f"createauxblock field {name!r} must be {length} bytes, got {len(data)}")
    return data


def _int(answer: Mapping[str, Any], name: str, highest: int) -> int:
    value = answer.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= highest:
        raise ValueError(f"createauxblock field {name!r} must be an integer 0..{highest}, got {value!r}")
    return value

"""Merkle roots and Stratum merkle branches (Bitcoin-style, odd layers duplicate their last hash)."""

from collections.abc import Sequence

from mining.hashing import sha256d


def merkle_root_from_branch(coinbase_hash: bytes, branch: Sequence[bytes]) -> bytes:
    """Fold the coinbase txid (internal byte order) up a Stratum branch."""
    root = coinbase_hash
    for sibling in branch:
        root = sha256d(root + sibling)
    return root


def merkle_branch(txids: Sequence[bytes]) -> list[bytes]:
    """The Stratum branch for a block whose transactions after the coinbase have these txids.

    `txids` are internal byte order and exclude the coinbase: the branch is the list of
    siblings on the path of leaf 0, which is all a miner needs since it changes only the coinbase.
    """
    branch: list[bytes] = []
    # The coinbase's place stays empty: its hash is the one thing a branch is made without.
    layer: list[bytes] = [b"", *txids]
    while len(layer) > 1:
        branch.append(layer[1])
        if len(layer) % 2:
            layer.append(layer[-1])
        # Pairs after the first never involve the coinbase, so they can be hashed now.
        layer = [b""] + [sha256d(layer[i] + layer[i + 1]) for i in range(2, len(layer), 2)]
    return branch


def merkle_root(txids: Sequence[bytes]) -> bytes:
    """Root over all txids (coinbase first), internal byte order."""
    if not txids:
        raise ValueError("a block has at least the coinbase")
    layer = list(txids)
    while len(layer) > 1:
        if len(layer) % 2:
            layer.append(layer[-1])
        layer = [sha256d(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]

"""Coin descriptions: everything that differs between scrypt chains, held as data.

Adding a scrypt coin is one more `Coin` in `COINS`; adding a coin with another proof of work is one
more entry in `_POW_FUNCTIONS`. Code elsewhere asks the coin (address versions, getblocktemplate
rules, segwit, MWEB) instead of branching on its symbol.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

from mining.hashing import scrypt_pow
from mining.target import SHARE_DIFF1_TARGET

_POW_FUNCTIONS: dict[str, Callable[[bytes], bytes]] = {"scrypt": scrypt_pow}

# Litecoin Core's chain names, as `getblockchaininfo` reports them, and how people say them.
NETWORKS = ("main", "test", "regtest")
_NETWORK_LABELS = {"main": "mainnet", "test": "testnet", "regtest": "regtest"}
_NETWORK_ALIASES = {"mainnet": "main", "testnet": "test"}


@dataclass(frozen=True, slots=True)
class Coin:
    symbol: str  # ticker, upper case
    name: str  # chain family, lower case, for messages
    network: str  # one of NETWORKS
    algorithm: str  # names the proof-of-work function (a key of _POW_FUNCTIONS)
    p2pkh_versions: tuple[int, ...]
    p2sh_versions: tuple[int, ...]  # the first one is the version addresses are written with
    rpc_port: int
    # P2SH version bytes the daemon still accepts from before the coin had its own (Litecoin's
    # were Bitcoin's 0x05 / 0xc4). Payout decoding refuses them: see mining.address.
    legacy_p2sh_versions: tuple[int, ...] = ()
    bech32_hrp: str | None = None  # None: no segwit addresses
    mweb_hrp: str | None = None  # stealth addresses that have no scriptPubKey
    taproot: bool = False  # witness v1 32-byte programs have spending rules
    segwit: bool = False  # coinbase carries the witness commitment; blocks use segwit serialization
    mweb: bool = False  # templates may carry an "mweb" extension block after the transactions
    gbt_rules: tuple[str, ...] = ()  # getblocktemplate {"rules": [...]} the daemon insists on
    # What `mining.set_difficulty` 1 means to miners of this algorithm (scrypt: 0xFFFF·2^224).
    share_diff1_target: int = SHARE_DIFF1_TARGET
    # The chain id of a coin that takes merged-mined (AuxPoW) blocks; None: it takes none.
    aux_chain_id: int | None = None
    # Confirmations before a coinbase may be spent: Litecoin's COINBASE_MATURITY, Dogecoin's
    # nCoinbaseMaturity (of the consensus params in force since block 145,000 on main and test).
    coinbase_maturity: int = 100

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"unknown network {self.network!r}, expected one of {NETWORKS}")
        if self.algorithm not in _POW_FUNCTIONS:
            raise ValueError(f"no proof-of-work function for algorithm {self.algorithm!r}")

    @property
    def network_label(self) -> str:
        return _NETWORK_LABELS[self.network]

    @property
    def label(self) -> str:
        """How messages name the chain: "litecoin regtest"."""
        return f"{self.name} {self.network_label}"

    def pow_hash(self, header: bytes) -> bytes:
        """The proof-of-work hash of an 80-byte header, compared as little-endian against targets."""
        return _POW_FUNCTIONS[self.algorithm](header)


# Version bytes and HRPs: Litecoin Core chainparams.cpp (the address vectors confirm them);
# Dogecoin Core chainparams.cpp for Dogecoin, which never activated segwit.
LTC_MAIN = Coin(
    symbol="LTC",
    name="litecoin",
    network="main",
    algorithm="scrypt",
    p2pkh_versions=(0x30,),
    p2sh_versions=(0x32,),
    rpc_port=9332,
    legacy_p2sh_versions=(0x05,),
    bech32_hrp="ltc",
    mweb_hrp="ltcmweb",
    taproot=True,
    segwit=True,
    mweb=True,
    gbt_rules=("mweb", "segwit"),
)
# Testnet and regtest share base58 versions and the MWEB HRP; only their bech32 HRPs differ.
LTC_TEST = replace(
    LTC_MAIN, network="test", p2pkh_versions=(0x6F,), p2sh_versions=(0x3A,), rpc_port=19332,
    legacy_p2sh_versions=(0xC4,), bech32_hrp="tltc", mweb_hrp="tmweb",
)
LTC_REGTEST = replace(LTC_TEST, network="regtest", rpc_port=19443, bech32_hrp="rltc")
DOGE_MAIN = Coin(
    symbol="DOGE",
    name="dogecoin",
    network="main",
    algorithm="scrypt",
    p2pkh_versions=(0x1E,),
    p2sh_versions=(0x16,),
    rpc_port=22555,
    aux_chain_id=98,
    coinbase_maturity=240,
)
# Dogecoin testnet and regtest differ in the P2PKH version only (0x71 against Bitcoin's 0x6f).
DOGE_TEST = replace(DOGE_MAIN, network="test", p2pkh_versions=(0x71,), p2sh_versions=(0xC4,), rpc_port=44555)
DOGE_REGTEST = replace(
    DOGE_TEST, network="regtest", p2pkh_versions=(0x6F,), rpc_port=18332, coinbase_maturity=60
)

COINS: tuple[Coin, ...] = (LTC_MAIN, LTC_TEST, LTC_REGTEST, DOGE_MAIN, DOGE_TEST, DOGE_REGTEST)


def coin(symbol: str, network: str = "main") -> Coin:
    """Look a coin up by ticker (any case) and network ("main", "test", "regtest"; "mainnet"/"testnet")."""
    wanted_symbol = symbol.upper()
    wanted_network = _NETWORK_ALIASES.get(network.lower(), network.lower())
    for candidate in COINS:
        if candidate.symbol == wanted_symbol and candidate.network == wanted_network:
            return candidate
    known = ", ".join(f"{c.symbol}/{c.network}" for c in COINS)
    raise ValueError(f"unknown coin {symbol}/{network} (known: {known})")

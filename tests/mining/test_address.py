"""Payout address decoding (mining/address.py) against every entry of shared/vectors/ltc_addresses.json.

Policy, asserted entry by entry below: decode what Litecoin Core decodes, except addresses a
coinbase should not pay: MWEB (no scriptPubKey), witness programs with no spending rules yet
(v1 other than 32 bytes, v2..v16), and legacy P2SH version bytes ('3…' main, '2…' test/regtest,
which Bitcoin uses too: refused with the same script's address in Litecoin's own P2SH version).
"""

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mining.address import AddressError, address_to_script
from mining.coins import COINS, DOGE_MAIN, DOGE_REGTEST, LTC_MAIN, LTC_REGTEST, LTC_TEST, Coin, coin

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"
BOOK: dict[str, Any] = json.loads((VECTORS / "ltc_addresses.json").read_text())
NETWORKS = ("main", "test", "regtest")
LTC = {network: coin("LTC", network) for network in NETWORKS}

MWEB_REFUSAL = "MWEB addresses cannot receive a coinbase output"
FUTURE_WITNESS_REFUSAL = "has no spending rules yet"
LEGACY_P2SH_REFUSAL = "legacy P2SH version byte"


def _ids(entry: dict[str, Any]) -> str:
    return f"{entry['network']}:{entry['address'].strip()[:24]}"


def _refusal(entry: dict[str, Any]) -> str:
    with pytest.raises(AddressError) as caught:
        address_to_script(entry["address"], LTC[entry["network"]])
    return str(caught.value)


@pytest.mark.parametrize("entry", BOOK["valid"], ids=_ids)
def test_valid_addresses_decode_to_the_daemons_script(entry: dict[str, Any]) -> None:
    assert address_to_script(entry["address"], LTC[entry["network"]]).hex() == entry["script_pubkey"]


# Each invalid entry's `why` → what our message must say about it. First match wins.
INVALID_MESSAGES: list[tuple[str, str]] = [
    (r"^empty string|^single space", r"empty"),
    (r"MWEB address validated on", MWEB_REFUSAL),
    (r"\(wrong network\)|Bitcoin testnet P2(PKH|SH) \(version", r"^address is for litecoin \S+, expected"),
    (r"Bitcoin mainnet P2SH", r"^address is for litecoin mainnet, expected"),
    (r"Bitcoin mainnet P2PKH", r"unknown base58 version byte 0x00"),
    (r"Bitcoin (main|test)net P2(WPKH|WSH|TR)", r"unknown address prefix '(bc|tb)'"),
    (r"mixed case", r"mixes upper and lower case"),
    (r"space inside", r"contains whitespace"),
    (r"bech32 address with (leading|trailing) (space|newline|tab)", r"bech32 address contains whitespace"),
    (r"not in base58 alphabet|separator removed|HRP removed", r"not valid in a base58 address"),
    # All-lower-case base58 may or may not still spell base58; either way the base58 decoder says so.
    (r"lower-cased", r"not valid in a base58 address|bad base58 checksum"),
    (r"not in bech32 charset", r"not valid in a bech32 address"),
    (r"v0 P2WPKH program encoded with bech32m", r"v0 address must use the bech32 checksum"),
    (r"program encoded with bech32 checksum", r"v1 address must use the bech32m checksum"),
    (r"witness v0 with \d+-byte program", r"v0 program is \d+ bytes, it must be 20 or 32"),
    (r"with (1|41)-byte program", r"outside 2\.\.40 bytes"),
    (r"witness version 17", r"witness version 17 does not exist"),
    (r"padding bits", r"padding bits"),
    (r"wrong length", r"expected 21 \(a version byte and a 20-byte hash\)"),
    (r"Dogecoin P2PKH", r"^address is for dogecoin mainnet, expected litecoin"),
    (r"checksum|truncated|appended", r"bad (base58|bech32) checksum"),
]


@pytest.mark.parametrize("entry", BOOK["invalid"], ids=_ids)
def test_invalid_addresses_are_refused_with_a_clear_reason(entry: dict[str, Any]) -> None:
    message = _refusal(entry)
    expected = next((said for why, said in INVALID_MESSAGES if re.search(why, entry["why"])), None)
    assert expected is not None, f"no message rule for {entry['why']!r}"
    assert re.search(expected, message), f"{entry['why']!r} gave {message!r}"
    if "wrong network" in entry["why"] and "MWEB" not in entry["why"]:
        assert message.endswith(f"expected {LTC[entry['network']].label}")


def _policy(entry: dict[str, Any]) -> str | None:
    """What our policy says about a daemon-accepted input: None to accept it, else the refusal."""
    answer = entry["daemon_answer"]
    if answer.get("ismweb"):
        return MWEB_REFUSAL
    version, program = answer.get("witness_version"), answer.get("witness_program", "")
    if version is not None and not (version == 0 or (version == 1 and len(program) == 64)):
        return FUTURE_WITNESS_REFUSAL
    legacy = BOOK["prefixes"][entry["network"]]["base58"]["p2sh_legacy_also_accepted"]["leading_chars"]
    if entry["address"].strip()[0] in legacy:
        return LEGACY_P2SH_REFUSAL
    return None


@pytest.mark.parametrize("entry", BOOK["accepted_variants"], ids=_ids)
def test_daemon_accepted_variants_follow_the_documented_policy(entry: dict[str, Any]) -> None:
    assert entry["daemon_answer"]["isvalid"]
    refusal = _policy(entry)
    if refusal is None:
        script = address_to_script(entry["address"], LTC[entry["network"]])
        assert script.hex() == entry["daemon_answer"]["scriptPubKey"]
        return
    message = _refusal(entry)
    assert refusal in message
    if refusal == LEGACY_P2SH_REFUSAL:
        # The refusal names the same script in Litecoin's own P2SH version, and that one is payable.
        suggested = re.search(r"pay the same script as (\S+) instead", message)
        assert suggested is not None
        assert suggested[1][0] in BOOK["prefixes"][entry["network"]]["base58"]["p2sh"]["leading_chars"]
        script = address_to_script(suggested[1], LTC[entry["network"]])
        assert script.hex() == entry["daemon_answer"]["scriptPubKey"]
        named = re.search(r"same script hash as \w+ (\w+) re-encoded", entry["why"])
        assert named is None or named[1] == suggested[1]


@pytest.mark.parametrize("entry", BOOK["not_payable"], ids=_ids)
def test_mweb_addresses_are_not_payable(entry: dict[str, Any]) -> None:
    assert entry["daemon_answer"]["validateaddress"]["isvalid"]
    assert MWEB_REFUSAL in _refusal(entry)


@pytest.mark.parametrize("entry", BOOK["valid"], ids=_ids)
def test_cross_network_decisions_match_the_daemon(entry: dict[str, Any]) -> None:
    for network in NETWORKS:
        key = f"{entry['network']} {entry['type']} -> validated on {network}"
        summary = BOOK["cross_network_summary"][key]
        if summary["accepted"]:
            assert summary["rejected"] == 0
            assert address_to_script(entry["address"], LTC[network]).hex() == entry["script_pubkey"]
        else:
            wrong_network = rf"^address is for litecoin .*, expected {LTC[network].label}$"
            with pytest.raises(AddressError, match=wrong_network):
                address_to_script(entry["address"], LTC[network])


@pytest.mark.parametrize("entry", BOOK["valid"], ids=_ids)
def test_whitespace_around_base58_only_and_upper_case_bech32(entry: dict[str, Any]) -> None:
    padded = f" \t{entry['address']}\r\n"
    if entry["type"] in ("p2pkh", "p2sh"):
        assert address_to_script(padded, LTC[entry["network"]]).hex() == entry["script_pubkey"]
    else:
        with pytest.raises(AddressError, match="whitespace"):
            address_to_script(padded, LTC[entry["network"]])
        upper = entry["address"].upper()
        assert address_to_script(upper, LTC[entry["network"]]).hex() == entry["script_pubkey"]


def test_address_error_is_a_value_error() -> None:
    assert issubclass(AddressError, ValueError)


ALL_ADDRESSES = [e["address"] for part in ("valid", "invalid", "accepted_variants") for e in BOOK[part]]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=130) | st.sampled_from(ALL_ADDRESSES), st.sampled_from(NETWORKS))
def test_any_text_gives_a_script_or_an_address_error(text: str, network: str) -> None:
    try:
        script = address_to_script(text, LTC[network])
    except AddressError:
        return
    assert 4 <= len(script) <= 42


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BOOK["valid"]), st.data())
def test_any_single_character_substitution_is_refused(entry: dict[str, Any], data: st.DataObject) -> None:
    address = entry["address"]
    index = data.draw(st.integers(0, len(address) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != address[index]))
    mutated = address[:index] + replacement + address[index + 1 :]
    with pytest.raises(AddressError):
        address_to_script(mutated, LTC[entry["network"]])


@pytest.mark.parametrize("address", ["L" * 10_000, "ltc1" + "q" * 10_000])
def test_overlong_input_is_refused_before_decoding(address: str) -> None:
    with pytest.raises(AddressError, match="too long"):
        address_to_script(address, LTC_MAIN)


def _base58check(payload: bytes) -> str:
    """An independent encoder, to craft Dogecoin addresses from known hashes."""
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number, text = int.from_bytes(raw, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = alphabet[digit] + text
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + text


def test_dogecoin_addresses() -> None:
    digest = bytes.fromhex("05240cc72f70b6075646e7197981732319124833")  # LKh8pxsZ…'s hash
    p2pkh, p2sh = _base58check(b"\x1e" + digest), _base58check(b"\x16" + digest)
    assert p2pkh == next(e["address"] for e in BOOK["invalid"] if "Dogecoin" in e["why"])
    assert p2sh[0] in "9A"
    assert address_to_script(p2pkh, DOGE_MAIN).hex() == f"76a914{digest.hex()}88ac"
    assert address_to_script(p2sh, DOGE_MAIN).hex() == f"a914{digest.hex()}87"
    # The same hash as a Litecoin address is Litecoin's, and Dogecoin has no bech32 or MWEB.
    with pytest.raises(AddressError, match=r"^address is for litecoin mainnet, expected dogecoin mainnet$"):
        address_to_script("LKh8pxsZwbSEz9PUbMUx1NX26eWsPprcsz", DOGE_MAIN)
    with pytest.raises(AddressError, match=r"^address is for dogecoin mainnet, expected litecoin mainnet$"):
        address_to_script(p2pkh, LTC_MAIN)
    with pytest.raises(AddressError, match=r"^address is for litecoin mainnet, expected dogecoin mainnet$"):
        address_to_script("ltc1qre4hlqmt6sa2pt3lnvrwc7avjwq6k384t43ezp", DOGE_MAIN)
    with pytest.raises(AddressError, match=MWEB_REFUSAL):
        address_to_script(BOOK["not_payable"][0]["address"], DOGE_MAIN)


# --- the coin registry the decoder reads --------------------------------------------------------


def test_coin_lookup() -> None:
    assert coin("ltc") is LTC_MAIN
    assert coin("LTC", "testnet") is LTC_TEST
    assert coin("Ltc", "REGTEST") is LTC_REGTEST
    assert coin("doge", "mainnet") is DOGE_MAIN
    assert coin("DOGE", "regtest") is DOGE_REGTEST
    with pytest.raises(ValueError, match="unknown coin BTC/regtest"):
        coin("BTC", "regtest")


def test_coins_match_the_vectors_prefixes() -> None:
    for network in NETWORKS:
        prefixes, ltc = BOOK["prefixes"][network], LTC[network]
        base58 = prefixes["base58"]
        assert ltc.p2pkh_versions == (base58["p2pkh"]["version"],)
        assert ltc.p2sh_versions == (base58["p2sh"]["version"],)
        assert ltc.legacy_p2sh_versions == (base58["p2sh_legacy_also_accepted"]["version"],)
        assert (ltc.bech32_hrp, ltc.mweb_hrp) == (prefixes["bech32_hrp"], prefixes["mweb_hrp"])
        assert ltc.gbt_rules == ("mweb", "segwit") and ltc.segwit and ltc.mweb and ltc.taproot
    doge = DOGE_MAIN
    assert (doge.gbt_rules, doge.segwit, doge.mweb, doge.bech32_hrp) == ((), False, False, None)
    assert LTC_REGTEST.label == "litecoin regtest" and DOGE_MAIN.label == "dogecoin mainnet"
    assert len({(c.symbol, c.network) for c in COINS}) == len(COINS)


def test_a_coin_needs_a_known_network_and_proof_of_work() -> None:
    with pytest.raises(ValueError, match="network"):
        Coin("X", "x", "mainnet", "scrypt", (1,), (2,), rpc_port=1)
    with pytest.raises(ValueError, match="proof-of-work"):
        Coin("X", "x", "main", "sha256d", (1,), (2,), rpc_port=1)

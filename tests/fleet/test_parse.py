"""The cgminer API parser and the firmware families, without sockets: the real L3+ answers, in
text and in JSON, and every malformed shape (truncated, NUL-terminated, STATUS=E, missing
sections, wrong units)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.cgminer import AnswerError, parse, request
from fleet.families import ReadingError, family_of, read
from tests.fleet.answers import STATUS_E, l3_joined_text, l3_json, l3_text

L3_CHAIN_RATES_MHS = (138.80, 137.19, 138.77, 138.84)


def l3_replies(json_format: bool) -> dict:
    text = l3_text()
    replies = {}
    for command in ("summary", "pools", "stats"):
        raw = l3_json(command) if json_format else text[command]
        replies.update(parse(raw, command))
    return replies


@pytest.mark.parametrize("json_format", [False, True], ids=["text", "json"])
def test_l3_reading_in_hs_with_its_quirks(json_format: bool) -> None:
    reading = read(l3_replies(json_format))
    assert reading.family == "bmminer"
    assert reading.model == "Antminer L3+ Blissz v1.02"
    assert reading.firmware == "cgminer 4.10.0"
    # Labelled GHS, but MH/s: its own hash counter (Total MH / Elapsed = 477.9 M) says so.
    assert reading.rate_unit == "MH"
    assert reading.hashrate_hs == pytest.approx(553.61e6)
    assert reading.hashrate_avg_hs == pytest.approx(477.92e6)
    assert reading.total_hashes == pytest.approx(2143090353e6)
    assert reading.total_hashes / reading.elapsed_s == pytest.approx(reading.hashrate_avg_hs, rel=1e-3)
    assert any("labelled GHS are MH/s" in p for p in reading.problems), reading.problems
    # Four boards whose rates add up to the device's.
    assert [c.index for c in reading.chains] == [1, 2, 3, 4]
    assert [c.hashrate_hs for c in reading.chains] == pytest.approx([r * 1e6 for r in L3_CHAIN_RATES_MHS])
    assert sum(c.hashrate_hs for c in reading.chains) == pytest.approx(reading.hashrate_hs, rel=1e-3)
    assert [c.temp_board_c for c in reading.chains] == [48, 47, 39, 40]
    assert [c.temp_chip_c for c in reading.chains] == [56, 57, 49, 49]
    assert reading.temp_max_c == 57
    assert reading.fans_rpm == (2166, 2220)
    assert [c.hw_errors for c in reading.chains] == [1494, 127132, 1101955, 2562839]
    assert reading.hw_errors == 3793420
    # chain_acs: 'o' good, 'x' bad; 72 chips a board.
    assert [c.chips for c in reading.chains] == [72, 72, 72, 72]
    assert [c.chips_bad for c in reading.chains] == [13, 12, 1, 13]
    assert reading.chips_bad == 39
    assert [c.frequency_mhz for c in reading.chains] == [425] * 4
    assert (reading.accepted, reading.rejected, reading.stale) == (615041, 824, 12)
    assert reading.difficulty_accepted == 37011587072.0
    assert len(reading.pools) == 3
    assert [p.active for p in reading.pools] == [True, False, False]
    assert reading.pools[0].user == "account.s03" and reading.pools[0].url == "stratum+tcp://192.0.2.10:3333"
    assert reading.pools[2].accepted == 98
    json.dumps(reading.to_json(), allow_nan=False)


def test_without_its_hash_counter_the_scrypt_antminer_model_says_ghs_is_mhs() -> None:
    replies = l3_replies(json_format=True)
    summary = replies["summary"].sections["SUMMARY"][0]
    del summary["Total MH"]
    reading = read(replies)
    assert reading.rate_unit == "MH" and reading.hashrate_hs == pytest.approx(553.61e6)
    assert "rates labelled GHS are MH/s on Antminer L3+ Blissz v1.02" in reading.problems


def test_a_configured_rate_unit_wins() -> None:
    reading = read(l3_replies(json_format=False), rate_unit="GH")
    assert reading.rate_unit == "GH" and reading.hashrate_hs == pytest.approx(553.61e9)


def test_nul_terminated_and_newline_and_padding_are_the_same_answer() -> None:
    text = l3_text()["summary"]
    plain = parse(text, "summary")["summary"]
    for raw in (text + b"\0", text + b"\n\0\0\0", text + b"\0garbage after the end"):
        assert parse(raw, "summary")["summary"] == plain


@pytest.mark.parametrize("json_format", [False, True], ids=["text", "json"])
def test_joined_summary_pools(json_format: bool) -> None:
    raw = l3_json("summary+pools") if json_format else l3_joined_text("summary+pools")
    replies = parse(raw, "summary+pools")
    assert set(replies) == {"summary", "pools"}
    assert len(replies["pools"].all("POOLS")) == 3
    reading = read(replies)
    assert reading.hashrate_hs == pytest.approx(553.61e6) and len(reading.pools) == 3
    assert reading.chains == ()  # no stats asked: no chains, and no crash


def test_bfgminer_joined_layout_is_one_object_per_command() -> None:
    """BFGMiner's README.RPC: {"summary":{"STATUS":[…],"SUMMARY":[…],"id":1},"devs":{…},"id":1}."""
    raw = json.dumps({
        "summary": {"STATUS": [{"STATUS": "S", "When": 1, "Code": 11, "Msg": "Summary",
                                "Description": "bfgminer 5.5.0"}],
                    "SUMMARY": [{"Elapsed": 60, "MHS av": 0.0035, "MHS 20s": 0.0036, "Total MH": 0.21,
                                 "Accepted": 4, "Rejected": 0, "Hardware Errors": 0}], "id": 1},
        "pools": {"STATUS": [{"STATUS": "S", "When": 1, "Code": 7, "Msg": "1 Pool(s)",
                              "Description": "bfgminer 5.5.0"}],
                  "POOLS": [{"POOL": 0, "URL": "stratum+tcp://127.0.0.1:3333", "Status": "Alive",
                             "Priority": 0, "Accepted": 4, "Rejected": 0, "User": "rig"}], "id": 1},
        "id": 1}).encode() + b"\0"
    reading = read(parse(raw, "summary+pools"))
    assert reading.family == "bfgminer"
    assert reading.hashrate_hs == pytest.approx(3600.0)
    assert reading.hashrate_avg_hs == pytest.approx(3500.0)
    assert reading.pools[0].active and reading.pools[0].user == "rig"


def test_family_of() -> None:
    assert family_of("bfgminer 5.5.0", []) == "bfgminer"
    assert family_of("bmminer 2.0.0", []) == "bmminer"
    assert family_of("cgminer 4.10.0", [{"Type": "Antminer L7"}]) == "bmminer"
    assert family_of("cgminer 4.11.1", [{"STATS": 0, "ID": "BTM0"}]) == "cgminer"


@pytest.mark.parametrize("cut", [1, 100, 400, -1])
def test_truncated_text_is_a_clear_error(cut: int) -> None:
    text = l3_text()["stats"]
    with pytest.raises(AnswerError, match="truncated"):
        parse(text[:cut], "stats")


@pytest.mark.parametrize("cut", [1, 50, 300, -3])
def test_truncated_json_is_a_clear_error(cut: int) -> None:
    raw = l3_json("summary+pools")
    with pytest.raises(AnswerError, match="not complete JSON"):
        parse(raw[:cut], "summary+pools")


def test_empty_answer() -> None:
    for raw in (b"", b"\0", b"  \n"):
        with pytest.raises(AnswerError, match="empty answer"):
            parse(raw, "summary")


def test_status_e_is_returned_and_makes_no_reading() -> None:
    replies = parse(STATUS_E, "summary")
    assert replies["summary"].status.failed and replies["summary"].status.message == "Invalid command"
    with pytest.raises(ReadingError, match=r"STATUS=E .*Invalid command"):
        read(replies)
    # A joined command a firmware cannot join: one E status for every part.
    joined = parse(STATUS_E, "summary+pools")
    assert joined["summary"] is joined["pools"] and joined["pools"].status.failed


def test_stats_status_e_leaves_the_summary_reading() -> None:
    replies = parse(l3_json("summary+pools"), "summary+pools")
    replies.update(parse(STATUS_E, "stats"))
    reading = read(replies)
    assert reading.hashrate_hs == pytest.approx(553.61e6) and reading.chains == ()
    assert any(p.startswith("stats answered STATUS=E") for p in reading.problems)


def test_missing_sections() -> None:
    no_summary = b'{"STATUS":[{"STATUS":"S","Code":11,"Msg":"Summary","Description":"x"}],"id":1}\0'
    with pytest.raises(ReadingError, match="no SUMMARY section"):
        read(parse(no_summary, "summary"))
    with pytest.raises(AnswerError, match="no STATUS section"):
        parse(b'{"SUMMARY":[{"MHS av":1}],"id":1}', "summary")
    with pytest.raises(AnswerError, match="not STATUS"):
        parse(b"SUMMARY=1,Elapsed=5|", "summary")
    with pytest.raises(AnswerError, match="no 'pools' part"):
        only_summary = {"summary": [json.loads(l3_json("summary")[:-1])], "id": 1}
        parse(json.dumps(only_summary).encode(), "summary+pools")
    with pytest.raises(AnswerError, match="no 'pools' part"):
        parse(b"CMD=summary|" + l3_text()["summary"], "summary+pools")
    with pytest.raises(ReadingError, match="no summary answer"):
        read(parse(l3_text()["pools"], "pools"))


def test_missing_fields_are_named_not_fatal() -> None:
    raw = (b'{"STATUS":[{"STATUS":"S","Description":"cgminer 4.11.1"}],'
           b'"SUMMARY":[{"MHS 5s":12.5}],"id":1}')
    reading = read(parse(raw, "summary"))
    assert reading.hashrate_hs == pytest.approx(12.5e6)
    assert reading.elapsed_s is None and reading.accepted is None
    assert "summary: no 'Elapsed'" in reading.problems and "summary: no 'Accepted'" in reading.problems


def test_wrong_units() -> None:
    # A rate that is not a number, rates in two units, a unit prefix nobody uses.
    raw = (b'{"STATUS":[{"STATUS":"S","Description":"cgminer"}],"SUMMARY":[{"MHS av":"fast",'
           b'"KHS 5s":"nan","Elapsed":10,"Accepted":1,"Rejected":0,"Hardware Errors":0}],"id":1}')
    reading = read(parse(raw, "summary"))
    assert reading.hashrate_hs is None and reading.hashrate_avg_hs is None
    assert any("MHS, MHS" in p or "several units" in p for p in reading.problems), reading.problems
    assert any("'fast' is not a number" in p for p in reading.problems), reading.problems
    # A label a power of 1000 off the device's own counter is corrected, and said so.
    raw = (b'{"STATUS":[{"STATUS":"S","Description":"cgminer"}],"SUMMARY":[{"KHS av":5000000,'
           b'"KHS 5s":5100000,"Total MH":5000,"Elapsed":1000,"Accepted":1,"Rejected":0,'
           b'"Hardware Errors":0}],"id":1}')
    reading = read(parse(raw, "summary"))
    assert reading.hashrate_avg_hs == pytest.approx(5e6) and reading.rate_unit == "H"
    assert "rates labelled KHS are H/s (Total MH / Elapsed says so)" in reading.problems
    # No rate field at all.
    raw = b'{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"Elapsed":10,"Accepted":1}],"id":1}'
    reading = read(parse(raw, "summary"))
    assert reading.hashrate_hs is None and "summary: no hashrate field (e.g. 'MHS av')" in reading.problems


def test_malformed_shapes_raise_only_answer_error() -> None:
    for raw in (b"[1,2]", b'"summary"', b"{}", b'{"STATUS":"S"}', b'{"STATUS":[{"STATUS":"Q"}]}',
                b"STATUS=S,Code|", b"\xff\xfe|", b"{" * 5000, b'{"STATUS":[{"STATUS":"S"}],"id":1} trailing'):
        with pytest.raises(AnswerError):
            parse(raw, "summary")


def test_text_escapes() -> None:
    raw = (b"STATUS=S,When=1,Code=7,Msg=1 Pool(s),Description=cgminer|"
           b"POOL=0,URL=stratum+tcp://h:1,Status=Alive,User=a\\,b\\|c\\=d,Accepted=1|")
    pool = parse(raw, "pools")["pools"].all("POOLS")[0]
    assert pool["User"] == "a,b|c=d" and pool["Accepted"] == "1"


def test_request() -> None:
    assert request("summary+pools") == b'{"command":"summary+pools"}'
    assert request("stats", json_format=False) == b"stats"
    with pytest.raises(ValueError):
        request('summary"}')


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
_fields = st.dictionaries(st.sampled_from(["MHS av", "GHS 5s", "KHS 5s", "Total MH", "Elapsed", "Accepted",
                                           "Rejected", "Hardware Errors", "POOL", "URL", "Status", "Priority",
                                           "Stratum Active", "Type", "chain_rate1", "chain_acs1", "temp1",
                                           "temp2_1", "fan1", "temp_max", "chain_hw1", "x"]), _json_values,
                          max_size=8)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(status=st.sampled_from(["S", "W", "I", "E", "F"]), summary=st.lists(_fields, max_size=2),
       pools=st.lists(_fields, max_size=3), stats=st.lists(_fields, max_size=3), cut=st.integers(0, 2000),
       text=st.booleans())
def test_any_answer_is_a_reading_or_a_clear_error(status: str, summary: list, pools: list, stats: list,
                                                  cut: int, text: bool) -> None:
    """Whatever a device sends — fields of any type, cut anywhere — parse and read raise nothing but
    AnswerError or ReadingError."""
    def answer(name: str, items: list) -> bytes:
        if text:
            sections = [f"STATUS={status},Description=cgminer"] + [
                ",".join(f"{k}={v}" for k, v in item.items()) for item in items]
            return ("|".join(sections) + "|").encode()
        return json.dumps({"STATUS": [{"STATUS": status, "Description": "cgminer"}], name: items,
                           "id": 1}).encode()

    raws = {"summary": answer("SUMMARY", summary), "pools": answer("POOLS", pools),
            "stats": answer("STATS", stats)}
    raws["summary"] = raws["summary"][:cut] if cut < len(raws["summary"]) else raws["summary"]
    replies = {}
    for command, raw in raws.items():
        try:
            replies.update(parse(raw, command))
        except AnswerError:
            continue
    try:
        reading = read(replies)
    except ReadingError:
        return
    json.dumps(reading.to_json(), allow_nan=False)

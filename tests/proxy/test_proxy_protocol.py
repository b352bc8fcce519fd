"""The PROXY protocol parser on bytes: every v1 and v2 shape HAProxy sends, the malformed ones,
and headers split over reads — and the `[proxy.listen]` keys that turn it on."""

import ipaddress
import socket
import struct

import pytest

from proxy.config import ListenConfig
from proxy.proxy_protocol import (
    V2_SIGNATURE,
    HeaderParser,
    ProxyHeader,
    ProxyProtocolError,
    TrustedSources,
    looks_like_header,
)
from qscrypt.settings import ConfigError

STRATUM = b'{"id":1,"method":"mining.subscribe","params":[]}\n'
CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def v2(command: int = 1, family: int = 0x11, body: bytes = b"", version: int = 2) -> bytes:
    return V2_SIGNATURE + bytes([(version << 4) | command, family]) + struct.pack(">H", len(body)) + body


def v2_tcp4(src: str, sport: int, dst: str, dport: int, tlvs: bytes = b"") -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport) + tlvs
    return v2(body=body)


def v2_tcp6(src: str, sport: int, dst: str, dport: int, tlvs: bytes = b"") -> bytes:
    body = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + \
        struct.pack(">HH", sport, dport) + tlvs
    return v2(family=0x21, body=body)


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack(">H", len(value)) + value


def parse(data: bytes, required: bool = True) -> tuple[ProxyHeader | None, bytes]:
    """The header and what is left behind it, fed in one piece."""
    parser = HeaderParser(required)
    taken = parser.feed(data)
    assert parser.done
    return parser.header, data[taken:]


# -- v1 ---------------------------------------------------------------------------------------------


def test_v1_tcp4_names_the_client_and_leaves_the_stream() -> None:
    header, rest = parse(b"PROXY TCP4 203.0.113.9 10.0.0.5 51234 3333\r\n" + STRATUM)
    assert header == ProxyHeader(1, "PROXY", ("203.0.113.9", 51234), ("10.0.0.5", 3333), 44)
    assert rest == STRATUM


def test_v1_tcp6_and_an_ipv4_mapped_address_becomes_ipv4() -> None:
    header, rest = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 3334\r\n" + CLIENT_HELLO)
    assert header is not None and header.source == ("2001:db8::7", 40000)
    assert header.destination == ("2001:db8::1", 3334)
    assert rest == CLIENT_HELLO
    mapped, _ = parse(b"PROXY TCP6 ::ffff:198.51.100.4 ::1 1 2\r\n")
    assert mapped is not None and mapped.source == ("198.51.100.4", 1)


def test_v1_unknown_carries_no_address_whatever_follows_it() -> None:
    for line in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"):
        header, rest = parse(line + STRATUM)
        assert header == ProxyHeader(1, "PROXY", None, None, len(line))
        assert rest == STRATUM


def test_v1_longest_allowed_line_is_read() -> None:
    line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff " \
           b"65535 65535\r\n"
    assert len(line) == 104
    header, rest = parse(line)
    assert header is not None and header.source == ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)
    assert rest == b""


@pytest.mark.parametrize(("line", "why"), [
    (b"PROXY TCP4 203.0.113.9 10.0.0.5 51234\r\n", "fields"),
    (b"PROXY TCP4 203.0.113.9 10.0.0.5 51234 3333 extra\r\n", "fields"),
    (b"PROXY TCP4  203.0.113.9 10.0.0.5 1 2\r\n", "fields"),
    (b"PROXY TCP5 203.0.113.9 10.0.0.5 1 2\r\n", "TCP4, TCP6 or UNKNOWN"),
    (b"PROXY UDP4 203.0.113.9 10.0.0.5 1 2\r\n", "TCP4, TCP6 or UNKNOWN"),
    (b"PROXY TCP4 2001:db8::1 10.0.0.5 1 2\r\n", "not an TCP4 address"),
    (b"PROXY TCP6 203.0.113.9 ::1 1 2\r\n", "not an TCP6 address"),
    (b"PROXY TCP4 203.0.113.256 10.0.0.5 1 2\r\n", "not an TCP4 address"),
    (b"PROXY TCP4 203.0.113.9 10.0.0.5 65536 2\r\n", "not a TCP port"),
    (b"PROXY TCP4 203.0.113.9 10.0.0.5 0123 2\r\n", "not a TCP port"),
    (b"PROXY TCP4 203.0.113.9 10.0.0.5 -1 2\r\n", "not a TCP port"),
    (b"PROXY TCP4 203.0.113.9 10.0.0.5 1 \xd9\xa3\r\n", "not ASCII"),
    (b"PROXY TCP4 203.0.113.9 10.0.0.5 1 2\n", "CRLF"),
    (b"PROXY TCP4 203.0.113.9 10.0.0.5 1 2\rX", "CRLF"),
    (b"PROXY " + b"A" * 101, "longer than 107"),
    (b"PROXY TCP4 " + b"1" * 100 + b"\r\n", "longer than 107"),
])
def test_v1_malformed_lines_are_refused_with_the_reason(line: bytes, why: str) -> None:
    with pytest.raises(ProxyProtocolError, match=why):
        HeaderParser().feed(line)


# -- v2 ---------------------------------------------------------------------------------------------


def test_v2_tcp4_with_tlvs_skipped() -> None:
    tlvs = tlv(0x01, b"h2") + tlv(0x05, b"unique-id-123") + tlv(0x20, b"\x01" + b"\x00" * 4) + tlv(0x04, b"")
    data = v2_tcp4("198.51.100.23", 60001, "192.0.2.1", 3333, tlvs)
    header, rest = parse(data + STRATUM)
    assert header == ProxyHeader(2, "PROXY", ("198.51.100.23", 60001), ("192.0.2.1", 3333), len(data))
    assert rest == STRATUM


def test_v2_tcp6() -> None:
    header, rest = parse(v2_tcp6("2001:db8::42", 5, "2001:db8::1", 3334) + CLIENT_HELLO)
    assert header is not None and header.source == ("2001:db8::42", 5)
    assert rest == CLIENT_HELLO


def test_v2_local_ignores_any_address() -> None:
    for data in (v2(command=0, family=0x00), v2(command=0, family=0x11, body=b"\x00" * 12)):
        header, rest = parse(data + STRATUM)
        assert header == ProxyHeader(2, "LOCAL", None, None, len(data))
        assert rest == STRATUM


def test_v2_unix_and_unspecified_families_carry_no_ip() -> None:
    unix = v2(family=0x31, body=b"/run/a".ljust(108, b"\0") + b"/run/b".ljust(108, b"\0"))
    for data in (unix, v2(family=0x00)):
        header, _ = parse(data)
        assert header is not None and header.command == "PROXY" and header.source is None


@pytest.mark.parametrize(("data", "why"), [
    (v2(version=1), "version 1"),
    (v2(command=2), "unknown command"),
    (v2(family=0x41), "unknown family"),
    (v2(family=0x13), "unknown family"),
    (v2(family=0x12, body=b"\x00" * 12), "datagram"),
    (v2(family=0x11, body=b"\x00" * 11), "cannot hold its addresses"),
    (v2(family=0x21, body=b"\x00" * 35), "cannot hold its addresses"),
    (v2(body=b"\x00" * 12 + b"\x05\x00\x09abc"), "TLV runs past"),
    (v2(body=b"\x00" * 12 + b"\x05\x00"), "ends inside a TLV"),
    (V2_SIGNATURE + b"\x21\x11\x10\x00", "over the 4096-byte limit"),
])
def test_v2_malformed_headers_are_refused_with_the_reason(data: bytes, why: str) -> None:
    with pytest.raises(ProxyProtocolError, match=why):
        HeaderParser().feed(data + STRATUM)


def test_an_oversized_v2_header_is_refused_from_its_length_alone() -> None:
    # Refused at its 16 fixed bytes: nothing of the announced 65,535 is waited for.
    with pytest.raises(ProxyProtocolError, match="65551 bytes"):
        HeaderParser().feed(V2_SIGNATURE + b"\x21\x11\xff\xff")


# -- split reads, missing and foreign headers ---------------------------------------------------------


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.9 10.0.0.5 51234 3333\r\n",
    v2_tcp4("198.51.100.23", 60001, "192.0.2.1", 3333, tlv(0x05, b"x" * 40)),
    v2_tcp6("2001:db8::42", 5, "2001:db8::1", 3334),
])
@pytest.mark.parametrize("piece", [1, 2, 5, 13, 17])
def test_a_header_split_over_reads_is_taken_piece_by_piece(header: bytes, piece: int) -> None:
    stream = header + STRATUM
    parser = HeaderParser()
    at, rest = 0, b""
    while not parser.done:
        chunk = stream[at:at + piece]
        taken = parser.feed(chunk)
        # Until the header is complete everything fed is header; then only its tail is taken.
        assert taken == len(chunk) or parser.done
        at += len(chunk)
        rest = chunk[taken:]
    assert parser.taken == len(header)
    assert rest + stream[at:] == STRATUM
    assert parser.header is not None and parser.header.source is not None


def test_a_peeking_reader_gets_the_whole_buffer_again_and_takes_only_the_new_header_bytes() -> None:
    # A shell peeks (bytes stay in the socket) and drops what the parser took: what it sees next
    # starts where the taken bytes ended.
    header = v2_tcp4("198.51.100.23", 60001, "192.0.2.1", 3333)
    parser = HeaderParser()
    assert parser.feed(header[:10]) == 10
    assert parser.feed(header[10:] + STRATUM) == len(header) - 10
    assert parser.feed(STRATUM) == 0


@pytest.mark.parametrize("data", [STRATUM, CLIENT_HELLO, b"GET / HTTP/1.1\r\n", b"PROXX",
                                  b"\r\n\r\n\x00\r\nQUIX"])
def test_no_header_where_one_is_required_is_refused(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError, match=r"required from this source"):
        HeaderParser(required=True).feed(data)


def test_no_header_where_optional_takes_nothing() -> None:
    header, rest = parse(STRATUM, required=False)
    assert header is None and rest == STRATUM
    header, rest = parse(b"PROXY TCP4 203.0.113.9 10.0.0.5 1 2\r\n" + STRATUM, required=False)
    assert header is not None and rest == STRATUM


def test_a_signature_broken_after_its_first_read_is_refused() -> None:
    parser = HeaderParser(required=False)
    assert parser.feed(b"PRO") == 3
    with pytest.raises(ProxyProtocolError, match="malformed"):
        parser.feed(b"TOCOL")


def test_looks_like_header_on_first_bytes() -> None:
    assert looks_like_header(b"P") and looks_like_header(b"PROXY TCP4") and looks_like_header(b"\r\n\r")
    assert looks_like_header(V2_SIGNATURE + b"\x21")
    assert not looks_like_header(b"") and not looks_like_header(STRATUM)
    assert not looks_like_header(CLIENT_HELLO) and not looks_like_header(b"PROXYTCP4")


# -- trusted sources and their config ----------------------------------------------------------------


def test_trusted_sources_match_networks_and_mapped_addresses() -> None:
    sources = TrustedSources(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"])
    assert sources.trusts("127.0.0.1") and sources.trusts("10.200.3.4") and sources.trusts("2001:db8::9")
    assert sources.trusts("::ffff:10.1.1.1")
    assert not sources.trusts("127.0.0.2") and not sources.trusts("11.0.0.1") and not sources.trusts("?")
    assert not TrustedSources([])


@pytest.mark.parametrize(("cidr", "index"), [("10.0.0.1/8", 1), ("not-an-ip", 1), ("10.0.0.0/33", 1)])
def test_a_bad_trusted_network_names_its_key(cidr: str, index: int) -> None:
    with pytest.raises(ConfigError) as caught:
        ListenConfig(proxy_protocol_from=["127.0.0.1", cidr])
    assert caught.value.key == f"proxy.listen.proxy_protocol_from[{index}]"
    assert cidr in str(caught.value)


def test_the_header_timeout_is_bounded() -> None:
    with pytest.raises(ConfigError, match="proxy_protocol_timeout_s"):
        ListenConfig(proxy_protocol_timeout_s=0)

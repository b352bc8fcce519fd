"""The PROXY protocol (HAProxy's, versions 1 and 2) that a load balancer puts in front of a
connection to say whom it is relaying: sans-I/O, fed bytes, never reading past the header.

Spec: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt. A load balancer in TCP mode
opens its own connection to the proxy, so without this header every miner would look like the
balancer's address: one IP for the caps, the bans, the logs and the `shares` rows.

- v1 is one text line, at most 107 bytes with its CRLF:
  `PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n` or `PROXY UNKNOWN …\\r\\n`.
- v2 is binary: a 12-byte signature, version/command, family/transport, a big-endian length, then
  the addresses and optional TLVs (skipped: nothing in them is needed here).
- `LOCAL` (v2) and `UNKNOWN` (v1), and families that are no IP address (AF_UNIX, unspecified), carry
  no client address: the connection's own peer stands (HAProxy's health checks send LOCAL).

`HeaderParser.feed` takes bytes as they come (from a peek at the socket, or a protocol's
`data_received`) and answers how many of them are header; the rest belongs to the stream behind
it (a Stratum line, a TLS ClientHello) and is left for it. Everything it took while the header is
unfinished is header, so a shell that peeks can drop what was taken without over-reading.
"""

import ipaddress
import socket
import struct
from collections.abc import Iterable
from typing import NamedTuple

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX_BYTES = 107
"""The longest v1 line the spec allows, CRLF included."""
V2_FIXED_BYTES = 16
V2_MAX_BYTES = 4096
"""Larger v2 headers are refused: HAProxy's, with every TLV it can add, stay far below this, and
a header is read into memory before the connection has proved anything."""

_V2_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
_AF_INET, _AF_INET6, _AF_UNIX, _AF_UNSPEC = 0x1, 0x2, 0x3, 0x0
_STREAM, _DGRAM, _TRANSPORT_UNSPEC = 0x1, 0x2, 0x0
_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_ADDRESS_BYTES = {_AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216, _AF_UNSPEC: 0}


class ProxyProtocolError(ValueError):
    """A header that is malformed, too long, missing where required, or not of a TCP stream."""


class ProxyHeader(NamedTuple):  # a tuple: made once per connection, cheaper than a dataclass
    version: int
    """1 or 2."""
    command: str
    """"PROXY", or "LOCAL" (v2: the balancer speaking for itself, e.g. a health check)."""
    source: tuple[str, int] | None = None
    """The client's address and port; None when the header carries none (LOCAL, UNKNOWN, AF_UNIX)."""
    destination: tuple[str, int] | None = None
    length: int = 0
    """Bytes of the header on the wire."""


def looks_like_header(data: bytes) -> bool:
    """Whether the first bytes of a connection are (the start of) a PROXY header: a Stratum line
    opens with `{`, a TLS record with 0x16, so neither is ever mistaken for one."""
    first = data[:1]
    if first == b"P":
        return V1_PREFIX.startswith(data[:6])
    if first == b"\r":
        return V2_SIGNATURE.startswith(data[:12])
    return False


class HeaderParser:
    """One connection's header. `required`: a connection without one is an error; otherwise it
    ends the parse with `header` None and takes no bytes (the stream starts at once)."""

    def __init__(self, required: bool = True) -> None:
        self.required = required
        self.done = False
        self.header: ProxyHeader | None = None
        self._buffer = bytearray()

    @property
    def taken(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> int:
        """Take the header's bytes from the front of `data`; returns how many were taken. Once
        `done`, `header` is set (or None: no header, where none is required)."""
        if self.done:
            return 0
        start = len(self._buffer)
        # The whole header nearly always comes in one read: parse `data` itself, no copy.
        buffered = data if not start else bytes(self._buffer) + data
        if not looks_like_header(buffered):
            if start == 0 and not self.required:
                self.done = True
                return 0
            if start > 0:
                raise ProxyProtocolError("malformed PROXY protocol signature")
            raise ProxyProtocolError("no PROXY protocol header: one is required from this source")
        if buffered.startswith(V2_SIGNATURE):
            end = self._parse_v2(buffered)
        elif buffered.startswith(V1_PREFIX):
            end = self._parse_v1(buffered)
        else:
            end = None  # a prefix of a signature so far: wait for more
        if end is None:
            self._buffer += data
            return len(data)
        self._buffer = bytearray(buffered[:end])
        self.done = True
        return end - start

    def _parse_v1(self, buffered: bytes) -> int | None:
        crlf = buffered.find(b"\r\n")
        if crlf < 0:
            if len(buffered) >= V1_MAX_BYTES:
                raise ProxyProtocolError(f"PROXY v1 header longer than {V1_MAX_BYTES} bytes")
            if b"\n" in buffered or b"\r" in buffered[:-1]:
                raise ProxyProtocolError("PROXY v1 header not ended by CRLF")
            return None
        end = crlf + 2
        if end > V1_MAX_BYTES:
            raise ProxyProtocolError(f"PROXY v1 header longer than {V1_MAX_BYTES} bytes")
        try:
            line = buffered[:crlf].decode("ascii")
        except UnicodeDecodeError:
            raise ProxyProtocolError("PROXY v1 header is not ASCII") from None
        parts = line.split(" ")
        if len(parts) >= 2 and parts[1] == "UNKNOWN":  # anything after UNKNOWN is to be ignored
            self.header = ProxyHeader(1, "PROXY", length=end)
            return end
        if len(parts) != 6:
            raise ProxyProtocolError(f"PROXY v1 header has {len(parts)} fields, not 6: {line[:60]!r}")
        _, family, src, dst, sport, dport = parts
        if family not in ("TCP4", "TCP6"):
            raise ProxyProtocolError(f"PROXY v1 protocol {family[:10]!r} is not TCP4, TCP6 or UNKNOWN")
        af = socket.AF_INET if family == "TCP4" else socket.AF_INET6
        source = (_v1_address(src, af, family), _v1_port(sport))
        destination = (_v1_address(dst, af, family), _v1_port(dport))
        self.header = ProxyHeader(1, "PROXY", source, destination, end)
        return end

    def _parse_v2(self, buffered: bytes) -> int | None:
        if len(buffered) < V2_FIXED_BYTES:
            return None
        version_command, family_transport, length = struct.unpack_from(">BBH", buffered, 12)
        if version_command >> 4 != 2:
            raise ProxyProtocolError(f"PROXY v2 header with version {version_command >> 4}, not 2")
        command = _V2_COMMANDS.get(version_command & 0xF)
        if command is None:
            raise ProxyProtocolError(f"PROXY v2 header with unknown command {version_command & 0xF}")
        end = V2_FIXED_BYTES + int(length)
        if end > V2_MAX_BYTES:
            raise ProxyProtocolError(f"PROXY v2 header of {end} bytes, over the {V2_MAX_BYTES}-byte limit")
        if len(buffered) < end:
            return None
        family, transport = family_transport >> 4, family_transport & 0xF
        if family not in _ADDRESS_BYTES or transport not in (_STREAM, _DGRAM, _TRANSPORT_UNSPEC):
            raise ProxyProtocolError(
                f"PROXY v2 header with unknown family/transport 0x{family_transport:02x}")
        if command == "LOCAL":  # addresses, if any, are to be ignored
            self.header = ProxyHeader(2, "LOCAL", length=end)
            return end
        if transport == _DGRAM:
            raise ProxyProtocolError("PROXY v2 header for a datagram (UDP) connection, not a stream")
        address_bytes = _ADDRESS_BYTES[family]
        if length < address_bytes:
            raise ProxyProtocolError(f"PROXY v2 header of {length} bytes cannot hold its addresses "
                                     f"({address_bytes} bytes)")
        body = buffered[V2_FIXED_BYTES:end]
        _check_tlvs(body[address_bytes:])
        source = destination = None
        if family == _AF_INET and transport == _STREAM:
            src, dst, sport, dport = struct.unpack_from(">4s4sHH", body)
            source = (socket.inet_ntop(socket.AF_INET, src), sport)
            destination = (socket.inet_ntop(socket.AF_INET, dst), dport)
        elif family == _AF_INET6 and transport == _STREAM:
            src, dst, sport, dport = struct.unpack_from(">16s16sHH", body)
            source = (_unmapped(src), sport)
            destination = (_unmapped(dst), dport)
        # AF_UNIX or unspecified: no IP to speak of; the connection's own address stands.
        self.header = ProxyHeader(2, "PROXY", source, destination, end)
        return end


def _check_tlvs(data: bytes) -> None:
    """TLVs are skipped, but only well-formed ones: a length running past the header is corrupt."""
    at = 0
    while at < len(data):
        if len(data) - at < 3:
            raise ProxyProtocolError("PROXY v2 header ends inside a TLV")
        (size,) = struct.unpack_from(">H", data, at + 1)
        at += 3 + size
        if at > len(data):
            raise ProxyProtocolError("PROXY v2 TLV runs past the end of the header")


def _v1_address(text: str, af: socket.AddressFamily, family: str) -> str:
    try:
        packed = socket.inet_pton(af, text)
    except OSError:
        raise ProxyProtocolError(f"PROXY v1 address {text[:45]!r} is not an {family} address") from None
    return _unmapped(packed) if af == socket.AF_INET6 else socket.inet_ntop(af, packed)


def _v1_port(text: str) -> int:
    # Decimal, no sign, no leading zero (the spec's words), 0..65535.
    if not text.isascii() or not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0") \
            or int(text) > 65535:
        raise ProxyProtocolError(f"PROXY v1 port {text[:8]!r} is not a TCP port")
    return int(text)


def _unmapped(packed: bytes) -> str:
    """An IPv6 address, written as the kernel writes it; an IPv4 client seen through an IPv6
    socket (::ffff:a.b.c.d) is that IPv4 address: one miner is one key for the caps and bans
    however the balancer reached it."""
    if packed[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed)


class TrustedSources:
    """The networks allowed to send a PROXY header (the load balancers)."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, ip: str) -> bool:
        known = self._cache.get(ip)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        trusted = any(address in network for network in self.networks)
        if len(self._cache) < 4096:  # the balancers are few; anything else need not be remembered
            self._cache[ip] = trusted
        return trusted

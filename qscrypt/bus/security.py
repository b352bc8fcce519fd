"""Who a bus client is, as the broker authenticated it: the SASL user, or the CN of the client cert.

With mTLS or SASL on, a worker's id is not a free-form flag but the identity the broker checked, so
shares are credited to the holder of the credential. Reading the CN needs no crypto library: the
subject is a fixed place in the certificate's DER, walked here with a few lines of ASN.1.
"""

import base64
import re
from pathlib import Path

from qscrypt.bus.config import BusConfig

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
_OID_COMMON_NAME = bytes((0x06, 0x03, 0x55, 0x04, 0x03))  # 2.5.4.3


class IdentityError(ValueError):
    pass


def authenticated_identity(config: BusConfig) -> str | None:
    """The principal the broker will see, or None when the connection authenticates no one."""
    if config.security_protocol.startswith("SASL"):
        return config.sasl_username
    if config.ssl_certfile is not None:
        return certificate_common_name(config.ssl_certfile)
    return None


def certificate_common_name(path: Path) -> str:
    """The subject CN of the first certificate in a PEM file (the leaf, by convention)."""
    match = _PEM_CERT.search(path.read_bytes())
    if match is None:
        raise IdentityError(f"{path}: no PEM certificate")
    der = base64.b64decode(b"".join(match.group(1).split()))
    try:
        return _subject_cn(der)
    except (IndexError, ValueError) as exc:
        raise IdentityError(f"{path}: cannot read the subject CN: {exc}") from None


def _subject_cn(der: bytes) -> str:
    certificate, _ = _element(der, 0)
    tbs_start, _ = _element(der, certificate.start)
    fields = list(_children(der, tbs_start.start, tbs_start.end))
    if fields and der[fields[0].tag_at] == 0xA0:  # explicit [0] version, absent in v1 certificates
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    subject = fields[4]
    for rdn in _children(der, subject.start, subject.end):
        for attribute in _children(der, rdn.start, rdn.end):
            oid, value = list(_children(der, attribute.start, attribute.end))[:2]
            if der[oid.tag_at:oid.end] == _OID_COMMON_NAME:
                return der[value.start:value.end].decode("utf-8")
    raise ValueError("the subject has no CN")


class _Span:
    __slots__ = ("end", "start", "tag_at")

    def __init__(self, tag_at: int, start: int, end: int) -> None:
        self.tag_at = tag_at  # where the tag byte is
        self.start = start  # first content byte
        self.end = end


def _element(der: bytes, at: int) -> tuple[_Span, int]:
    length = der[at + 1]
    start = at + 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[start:start + size], "big")
        start += size
    end = start + length
    if end > len(der):
        raise ValueError("truncated DER")
    return _Span(at, start, end), end


def _children(der: bytes, start: int, end: int) -> list[_Span]:
    out = []
    while start < end:
        span, start = _element(der, start)
        out.append(span)
    return out

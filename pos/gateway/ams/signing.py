"""The v1 payments API's header signature (Antom / Alipay+ "ams").

Every request and response is signed over one line of text built from the
call, never over re-serialised JSON:

    POST <path>\\n<client-id>.<request-time or response-time>.<exact body>

with SHA256withRSA (PKCS#1 v1.5). The signature travels in a header:

    Signature: algorithm=RSA256,keyVersion=<n>,signature=<url-encoded base64>

The request carries `client-id` and `request-time`; the response carries
`client-id`, `response-time` and `signature` (lower-case names: the official
SDK reads them so). Verification always runs over the raw bytes received.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["ALGORITHM", "SignatureHeader", "sign_content", "sign", "verify", "signature_header",
           "parse_signature_header", "header"]

ALGORITHM = "RSA256"


def sign_content(method: str, path: str, client_id: str, moment: str, body: bytes) -> bytes:
    """The bytes that are signed: `<METHOD> <path>\\n<client-id>.<time>.<body>`."""
    return f"{method} {path}\n{client_id}.{moment}.".encode() + body


def sign(content: bytes, private_key: rsa.RSAPrivateKey) -> str:
    """Standard base64 of the SHA256withRSA signature of `content` (not yet url-encoded)."""
    return base64.b64encode(private_key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(content: bytes, signature_b64: str, public_key: rsa.RSAPublicKey) -> bool:
    """True if `signature_b64` (standard base64, already url-decoded) signs `content`. Never raises."""
    try:
        raw = base64.b64decode(signature_b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False
    if base64.b64encode(raw).decode("ascii") != signature_b64:  # only the canonical spelling
        return False
    try:
        public_key.verify(raw, content, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class SignatureHeader:
    algorithm: str
    key_version: str
    signature: str      # standard base64, url-decoded


def signature_header(signature_b64: str, key_version: int | str) -> str:
    """The `Signature` header's value for a base64 signature."""
    quoted = urllib.parse.quote(signature_b64, safe="")
    return f"algorithm={ALGORITHM},keyVersion={key_version},signature={quoted}"


def parse_signature_header(value: str | None) -> SignatureHeader | None:
    """Read `algorithm=...,keyVersion=...,signature=...`; None when it is not of that form."""
    if not value:
        return None
    fields: dict[str, str] = {}
    for part in value.split(","):
        name, sep, item = part.strip().partition("=")
        if not sep:
            return None
        fields[name.strip()] = item.strip()
    if "signature" not in fields or not fields["signature"]:
        return None
    return SignatureHeader(fields.get("algorithm", ""), fields.get("keyVersion", ""),
                           urllib.parse.unquote(fields["signature"]))


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever its case (HTTP names are case-insensitive)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None

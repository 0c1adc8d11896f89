"""RSA2 signing of the gateway's JSON envelope (reference §4).

RSA2 is SHA256withRSA, PKCS#1 v1.5, over the exact UTF-8 bytes of the JSON text
of the `request` (or `response`) value; the signature is single standard
base64 (§4.2, §4.3). The wire text is built by concatenation and read back by
cutting the raw substring, never by re-serialising parsed JSON (§4.4), because
any change of whitespace or escaping breaks the signature.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pos.core.errors import UserError

__all__ = [
    "MIN_KEY_BITS",
    "SignedTextError",
    "compact_json",
    "sign_text",
    "build_signed",
    "split_signed",
    "verify",
    "load_private_key",
    "load_public_key",
    "generate_keypair",
    "private_key_pem",
    "public_key_pem",
]

# §4.1: "RSA, 2048-bit"; shorter keys are refused rather than silently used.
MIN_KEY_BITS = 2048

_HASHES = {"RSA2": hashes.SHA256, "RSA": hashes.SHA1}  # §4.2: RSA (SHA1) only for 2.0.0 peers
_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


class SignedTextError(ValueError):
    """A signed envelope is not in the expected `{"<root>":{...},"signature":"..."}` form."""


def compact_json(obj: Any) -> str:
    """The one serialisation we sign: compact, UTF-8 characters kept, '/' not escaped (§4.4)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sign_text(text: str, private_key: rsa.RSAPrivateKey, *, sign_type: str = "RSA2") -> str:
    """Sign the UTF-8 bytes of `text`; return single standard base64."""
    signature = private_key.sign(text.encode("utf-8"), padding.PKCS1v15(), _HASHES[sign_type]())
    return base64.b64encode(signature).decode("ascii")


def build_signed(root: str, head: dict[str, Any], body: dict[str, Any],
                 private_key: rsa.RSAPrivateKey, *, sign_type: str = "RSA2") -> bytes:
    """Serialise {"head","body"} once, sign it, and assemble the wire text by concatenation (§4.4)."""
    inner = compact_json({"head": head, "body": body})
    b64 = sign_text(inner, private_key, sign_type=sign_type)
    return ('{"' + root + '":' + inner + ',"signature":"' + b64 + '"}').encode("utf-8")


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def split_signed(raw_text: str, root: str) -> tuple[str, str]:
    """Cut the raw JSON text of `root`'s value and the signature string out of an envelope.

    Walks the top-level object member by member with the JSON decoder only to
    find where each value ends; the returned inner text is the exact substring
    that was signed. Raises SignedTextError if the text is not an object with
    exactly one `root` member and one string `signature` member.
    """
    if not isinstance(raw_text, str):
        raise SignedTextError("envelope must be text")
    i = _skip_ws(raw_text, 0)
    if i >= len(raw_text) or raw_text[i] != "{":
        raise SignedTextError("envelope is not a JSON object")
    members: dict[str, tuple[int, int, Any]] = {}
    i = _skip_ws(raw_text, i + 1)
    try:
        while True:
            if raw_text[i] != '"':
                raise SignedTextError(f"expected a member name at offset {i}")
            key, i = _DECODER.raw_decode(raw_text, i)
            i = _skip_ws(raw_text, i)
            if raw_text[i] != ":":
                raise SignedTextError(f"expected ':' at offset {i}")
            start = _skip_ws(raw_text, i + 1)
            value, end = _DECODER.raw_decode(raw_text, start)
            if key in members:
                raise SignedTextError(f"member {key!r} appears twice")
            members[key] = (start, end, value)
            i = _skip_ws(raw_text, end)
            if raw_text[i] == ",":
                i = _skip_ws(raw_text, i + 1)
                continue
            if raw_text[i] == "}":
                break
            raise SignedTextError(f"expected ',' or '}}' at offset {i}")
    except IndexError:
        raise SignedTextError("envelope ends too early") from None
    except json.JSONDecodeError as exc:
        raise SignedTextError(f"envelope is not valid JSON: {exc.msg} at offset {exc.pos}") from None
    if _skip_ws(raw_text, i + 1) != len(raw_text):
        raise SignedTextError("text after the envelope")
    if root not in members:
        raise SignedTextError(f"envelope has no {root!r} member")
    start, end, value = members[root]
    if not isinstance(value, dict):
        raise SignedTextError(f"{root!r} is not a JSON object")
    signature = members.get("signature", (0, 0, None))[2]
    if not isinstance(signature, str) or not signature:
        raise SignedTextError("envelope has no signature")
    return raw_text[start:end], signature


def _b64(text: str) -> bytes | None:
    """Strict standard base64: only the canonical spelling of the bytes is accepted.

    A decoder ignores the unused low bits of the last character, so without the
    round-trip check a changed character could still verify.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def verify(inner_text: str, sig_b64: str, public_key: rsa.RSAPublicKey, *,
           sign_type: str = "RSA2", allow_double_base64: bool = False) -> bool:
    """True if `sig_b64` is a valid signature of the UTF-8 bytes of `inner_text`.

    Never raises on bad input. With allow_double_base64 a signature that was
    base64-encoded twice (the docs' sample, §4.3) is also accepted.
    """
    if sign_type not in _HASHES or not isinstance(sig_b64, str) or not isinstance(inner_text, str):
        return False
    data = inner_text.encode("utf-8")
    candidates = [_b64(sig_b64)]
    if allow_double_base64 and candidates[0] is not None:
        with contextlib.suppress(UnicodeDecodeError):
            candidates.append(_b64(candidates[0].decode("ascii")))
    for raw in candidates:
        if raw is None:
            continue
        try:
            public_key.verify(raw, data, padding.PKCS1v15(), _HASHES[sign_type]())
            return True
        except InvalidSignature:
            continue
    return False


def _read_key_file(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {p}: file not found: install it, or run 'pos keys generate DIR' "
                        "for a sandbox") from None
    except IsADirectoryError:
        raise UserError(f"{what} {p}: is a folder, not a PEM key file") from None
    except PermissionError:
        raise UserError(f"{what} {p}: cannot be read by this user: check its owner and mode") from None


def _check_size(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, path: Path, what: str) -> None:
    if key.key_size < MIN_KEY_BITS:
        raise UserError(f"{what} {path}: RSA key is {key.key_size} bits; the gateway needs at least "
                        f"{MIN_KEY_BITS} bits (RSA2): generate a new key pair")


def _ours(path: str | os.PathLike[str]) -> bool:
    """The file belongs to this process's user and nobody else can write it."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def load_private_key(path: str | os.PathLike[str], *, trust_own_file: bool = False) -> rsa.RSAPrivateKey:
    """Load an unencrypted PEM RSA private key (PKCS#1 or PKCS#8) of at least 2048 bits.

    `trust_own_file` (the gateway clients, on every start of the daemon): when the
    file is ours (owned by this user, writable by nobody else: the installer's
    `chown pos`, `chmod 600`), skip OpenSSL's consistency check of the RSA
    parameters (50-80 ms a start). Such a file was put there by `pos keys generate`
    or the technician, and `pos doctor` loads it with the full check (checks "keys"
    and "key pair", which also signs a test text and verifies it with the public
    half); a key whose parameters do not agree makes no signature Alipay accepts,
    so at worst a pay is refused for its signature and no money moves. A file
    someone else could have written is always checked in full.
    """
    what = "private key"
    data = _read_key_file(path, what)
    try:
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=trust_own_file and _ours(path))
    except TypeError:
        raise UserError(f"{what} {path}: is encrypted; the terminal needs an unencrypted key "
                        "file with mode 0600") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(f"{what} {path}: is not a PEM private key (expected '-----BEGIN PRIVATE KEY-----' "
                        "or '-----BEGIN RSA PRIVATE KEY-----')") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UserError(f"{what} {path}: is not an RSA key; RSA2 needs an RSA key of at least {MIN_KEY_BITS} bits")
    _check_size(key, Path(path), what)
    return key


def load_public_key(path: str | os.PathLike[str]) -> rsa.RSAPublicKey:
    """Load a PEM RSA public key (SubjectPublicKeyInfo or PKCS#1) of at least 2048 bits."""
    what = "public key"
    data = _read_key_file(path, what)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(f"{what} {path}: is not a PEM public key (expected '-----BEGIN PUBLIC KEY-----')") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise UserError(f"{what} {path}: is not an RSA key; RSA2 needs an RSA key of at least {MIN_KEY_BITS} bits")
    _check_size(key, Path(path), what)
    return key


def generate_keypair(bits: int = MIN_KEY_BITS) -> tuple[rsa.RSAPrivateKey, rsa.RSAPublicKey]:
    """A fresh RSA key pair (public exponent 65537)."""
    if bits < MIN_KEY_BITS:
        raise UserError(f"RSA keys must have at least {MIN_KEY_BITS} bits, not {bits}")
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return private, private.public_key()


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

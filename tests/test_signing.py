"""RSA2 signing: byte-exact envelopes (§4.4), strict verification, openssl cross-checks, key loading."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from pos.core.errors import UserError
from pos.gateway.signing import (
    SignedTextError,
    build_signed,
    generate_keypair,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
    sign_text,
    split_signed,
    verify,
)

PRIVATE, PUBLIC = generate_keypair()
OTHER_PRIVATE, OTHER_PUBLIC = generate_keypair()
HEAD = {"version": "2.0.4", "function": "alipay.intl.acquiring.offline.pay", "clientId": "C1",
        "reqTime": "2024-05-01T12:30:05+08:00", "reqMsgId": "m-1", "reserve": "{}", "signType": "RSA2"}
BODY = {"merchantId": "2188", "merchantTransId": "T/1", "order": {"orderTitle": "咖啡 x2 / latte",
                                                                  "orderAmount": {"currency": "SGD", "value": "1250"}}}

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def test_build_signed_is_concatenation_of_compact_utf8_json() -> None:
    wire = build_signed("request", HEAD, BODY, PRIVATE)
    text = wire.decode("utf-8")
    inner = json.dumps({"head": HEAD, "body": BODY}, separators=(",", ":"), ensure_ascii=False)
    assert text.startswith('{"request":' + inner + ',"signature":"')
    assert text.endswith('"}')
    assert "咖啡" in text and "\\u" not in text and "\\/" not in text
    cut, sig = split_signed(text, "request")
    assert cut == inner
    assert verify(cut, sig, PUBLIC)
    assert not verify(cut, sig, OTHER_PUBLIC)


def test_split_cuts_raw_text_even_when_pretty_printed_or_reordered() -> None:
    inner = '{ "head" : {"a": 1},\n  "body": {"b": "x/y"} }'
    sig = sign_text(inner, PRIVATE)
    for raw in ('{\n  "response" :  ' + inner + ' ,\n "signature": "' + sig + '"\n}',
                '{"signature":"' + sig + '","response":' + inner + '}'):
        cut, got = split_signed(raw, "response")
        assert cut == inner and got == sig
        assert verify(cut, got, PUBLIC)


@pytest.mark.parametrize("raw, why", [
    ("", "not a JSON object"),
    ("[]", "not a JSON object"),
    ('{"request":{"a":1}}', "no signature"),
    ('{"request":{"a":1},"signature":""}', "no signature"),
    ('{"signature":"abc"}', "no 'request'"),
    ('{"request":{"a":1},"request":{"a":2},"signature":"x"}', "twice"),
    ('{"request":[1],"signature":"x"}', "not a JSON object"),
    ('{"request":{"a":1},"signature":"x"} trailing', "after the envelope"),
    ('{"request":{"a":1,"signature":"x"', "not valid JSON"),
    ('{"request":{"a":1}', "ends too early"),
])
def test_split_refuses_malformed_envelopes(raw: str, why: str) -> None:
    with pytest.raises(SignedTextError, match=why):
        split_signed(raw, "request")


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_changed_byte_of_the_signed_text_fails_verification(data: st.DataObject) -> None:
    inner = json.dumps({"head": HEAD, "body": BODY}, separators=(",", ":"), ensure_ascii=False).encode()
    sig = sign_text(inner.decode(), PRIVATE)
    pos = data.draw(st.integers(0, len(inner) - 1))
    mask = data.draw(st.integers(1, 255))
    tampered = bytearray(inner)
    tampered[pos] ^= mask
    text = bytes(tampered).decode("utf-8", errors="replace")
    assert not verify(text, sig, PUBLIC)


def test_signature_must_be_canonical_single_base64_unless_double_is_tolerated() -> None:
    inner = '{"head":{},"body":{}}'
    sig = sign_text(inner, PRIVATE)
    assert len(sig) == 344  # 256 bytes, standard base64 with padding (§4.3)
    double = base64.b64encode(sig.encode()).decode()
    assert not verify(inner, double, PUBLIC)
    assert verify(inner, double, PUBLIC, allow_double_base64=True)
    # A non-canonical last character decodes to the same bytes; it is refused.
    last = sig[-3]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(last) ^ 1]
    assert base64.b64decode(sig[:-3] + twin + "==") == base64.b64decode(sig)
    assert not verify(inner, sig[:-3] + twin + "==", PUBLIC)
    for bad in ("", "!!!", sig.replace("+", "-"), sig[:-2], "A" * 344):
        assert not verify(inner, bad, PUBLIC)


@needs_openssl
def test_openssl_verifies_our_signature_on_the_exact_bytes(tmp_path: Path) -> None:
    wire = build_signed("request", HEAD, BODY, PRIVATE).decode("utf-8")
    inner, sig = split_signed(wire, "request")
    (tmp_path / "data").write_bytes(inner.encode("utf-8"))
    (tmp_path / "sig").write_bytes(base64.b64decode(sig))
    (tmp_path / "pub.pem").write_bytes(public_key_pem(PUBLIC))
    done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"),
                           "-signature", str(tmp_path / "sig"), str(tmp_path / "data")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "Verified OK" in done.stdout
    (tmp_path / "data").write_bytes(inner.replace("1250", "1251").encode("utf-8"))
    done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"),
                           "-signature", str(tmp_path / "sig"), str(tmp_path / "data")],
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0


@needs_openssl
def test_we_verify_a_signature_made_by_openssl(tmp_path: Path) -> None:
    inner = json.dumps({"head": HEAD, "body": BODY}, separators=(",", ":"), ensure_ascii=False)
    (tmp_path / "data").write_bytes(inner.encode("utf-8"))
    (tmp_path / "key.pem").write_bytes(private_key_pem(PRIVATE))
    subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(tmp_path / "key.pem"), "-out",
                    str(tmp_path / "sig"), str(tmp_path / "data")], check=True, capture_output=True)
    sig = base64.b64encode((tmp_path / "sig").read_bytes()).decode()
    assert verify(inner, sig, PUBLIC)
    assert sig == sign_text(inner, PRIVATE)  # PKCS#1 v1.5 is deterministic: byte-identical


def test_key_loading_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="file not found.*pos keys generate"):
        load_private_key(tmp_path / "missing.pem")
    with pytest.raises(UserError, match="is a folder"):
        load_public_key(tmp_path)
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(UserError, match="not a PEM private key"):
        load_private_key(tmp_path / "junk.pem")
    with pytest.raises(UserError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pem")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "small.pem").write_bytes(private_key_pem(small))
    (tmp_path / "small_pub.pem").write_bytes(public_key_pem(small.public_key()))
    with pytest.raises(UserError, match="1024 bits.*at least 2048"):
        load_private_key(tmp_path / "small.pem")
    with pytest.raises(UserError, match="1024 bits.*at least 2048"):
        load_public_key(tmp_path / "small_pub.pem")
    eck = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(eck.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    with pytest.raises(UserError, match="not an RSA key"):
        load_private_key(tmp_path / "ec.pem")
    enc = PRIVATE.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(b"pw"))
    (tmp_path / "enc.pem").write_bytes(enc)
    with pytest.raises(UserError, match="encrypted"):
        load_private_key(tmp_path / "enc.pem")
    with pytest.raises(UserError, match="at least 2048"):
        generate_keypair(1024)


def test_pkcs1_pem_keys_load_too(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_bytes(PRIVATE.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                                           serialization.NoEncryption()))
    key = load_private_key(tmp_path / "k.pem")
    assert verify("x", sign_text("x", key), PUBLIC)

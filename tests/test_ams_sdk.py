"""Interoperability with code we did not write: Alipay's official Python SDK against our v1 sandbox.

`global-open-sdk-python` is installed from the package index into a venv of
its own (.venv-sdk: it pins an older `cryptography`, and its `enum34`
dependency breaks Python 3, so that is removed). The SDK always speaks HTTPS
on port 443 and sends the full URL as the request target, so the sandbox is
served over TLS on 127.0.0.1:443 with a test CA the SDK trusts through
SSL_CERT_FILE. Checked both ways:

- the SDK as a client: pay, inquiryPayment and refund against our sandbox,
  whose checks of its signatures (indented JSON, verified over raw bytes) pass,
  and whose answers its verifier accepts (lower-case headers);
- the signature tools: the SDK's verifies a request our client signed, ours
  verifies one the SDK signed.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from pos.config import GatewaySection
from pos.core.money import Money
from pos.core.outcomes import Succeeded, Unknown
from pos.gateway.ams import AmsGateway
from pos.gateway.ams.signing import parse_signature_header, sign_content, verify
from pos.gateway.keys import ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC
from pos.gateway.transport import Reply, Transport
from pos.sandbox.scenarios import SandboxOptions
from pos.sandbox.server import SandboxServer
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import SandboxKeys, make_code
from tests.sdk import support

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
CLIENT_ID = "SANDBOX_SDK0001"


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    try:
        return support.sdk_python()
    except support.SdkUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def tls_sandbox(tmp_path: Path, sandbox_keys: SandboxKeys) -> Iterator[tuple[SandboxServer, Path]]:
    ca, cert, key = support.tls_files(tmp_path)
    try:
        server = SandboxServer(merchant_public_key=sandbox_keys.merchant_public,
                               alipay_private_key=sandbox_keys.alipay_private, options=SandboxOptions(),
                               port=443, protocol="ams", ssl_certfile=str(cert), ssl_keyfile=str(key))
    except OSError as exc:
        pytest.skip(f"the SDK only speaks to port 443, and 127.0.0.1:443 cannot be used here: {exc}")
    server.start()
    try:
        yield server, ca
    finally:
        server.stop()


class RecordingTransport(Transport):
    """The real transport, recording what it sends."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, data: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> Reply | Unknown:
        self.sent.append((url, data, dict(headers)))
        return super().post(url, data, headers, timeout)


def test_the_official_sdk_against_our_sandbox_and_signatures_both_ways(
        sdk_python: Path, tls_sandbox: tuple[SandboxServer, Path], sandbox_keys: SandboxKeys, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, ca = tls_sandbox
    # Our client over the same TLS server first: a request of ours, signed, for the SDK to check.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    settings = GatewaySection(protocol="ams", url="https://127.0.0.1", client_id=CLIENT_ID,
                              private_key=str(sandbox_keys.path(MERCHANT_PRIVATE)),
                              merchant_public_key=str(sandbox_keys.path(MERCHANT_PUBLIC)),
                              alipay_public_key=str(sandbox_keys.path(ALIPAY_PUBLIC)))
    session = RecordingTransport(settings.url)
    ours = AmsGateway(settings, transport=session).pay(merchant_trans_id="POS-OURS-1", identity_code=make_code("00"),
                                                     amount=Money(300, "SGD"), order_title="Tea")
    assert isinstance(ours, Succeeded)
    url, body, headers = session.sent[0]
    parsed = parse_signature_header(headers["Signature"])
    assert parsed is not None
    pkcs1 = support.pkcs1_pem(sandbox_keys.merchant_private)        # the SDK reads PKCS#1 only
    cfg = {
        "url": "https://127.0.0.1", "client_id": CLIENT_ID, "merchant_private_key": pkcs1,
        "merchant_public_key": sandbox_keys.path(MERCHANT_PUBLIC).read_text(),
        "alipay_public_key": sandbox_keys.path(ALIPAY_PUBLIC).read_text(),
        "code": make_code("00"), "request_id": "SDK-PAY-1",
        "ours": {"path": urllib.parse.urlsplit(url).path, "client_id": headers["client-id"],
                 "time": headers["request-time"], "body": body.decode(),
                 "signature": headers["Signature"].split("signature=", 1)[1]},
    }
    (tmp_path / "sdk.json").write_text(json.dumps(cfg))
    env = {**os.environ, "SSL_CERT_FILE": str(ca)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(sdk_python), str(REPO / "tests" / "sdk" / "sdk_client.py"), str(tmp_path / "sdk.json")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    # The SDK as a client: its signatures passed our checks, ours passed its verifier.
    assert out["pay"]["result"]["resultStatus"] == "S" and out["pay"]["paymentRequestId"] == "SDK-PAY-1"
    assert out["inquiryPayment"]["paymentStatus"] == "SUCCESS"
    assert out["refund"]["result"]["resultStatus"] == "S" and out["refund"]["refundAmount"]["value"] == "500"
    payments = {p["merchantTransId"]: p for p in server.ledger.to_json(server.protocol.now())["payments"]}
    assert payments["SDK-PAY-1"]["status"] == "SUCCESS" and payments["SDK-PAY-1"]["refunded"]["value"] == "500"
    # The SDK's own Order Code Payment (the merchant-presented QR): the code comes back in orderCodeForm.
    code = out["orderCode"]
    assert code["result"]["resultCode"] == "PAYMENT_IN_PROCESS" and code["result"]["resultStatus"] == "U"
    assert code["orderCodeForm"]["codeDetails"][0]["codeValue"].startswith("https://127.0.0.1:443/sandbox/cashier/")
    assert payments["SDK-PAY-1-QR"]["status"] == "PROCESSING"
    assert payments["SDK-PAY-1-QR"]["store"], "the SDK's order.merchant.store reached the ledger"
    # The signature tools, both ways.
    assert out["ours_verified"] is True
    theirs = out["theirs"]
    assert verify(sign_content("POST", theirs["path"], theirs["client_id"], theirs["time"], theirs["body"].encode()),
                  urllib.parse.unquote(theirs["signature"]), sandbox_keys.merchant_public)

"""v1 client cost per call next to the official SDK's, against the same local v1 sandbox.

The SDK speaks HTTPS on port 443 only, so both clients call the v1 sandbox
over TLS on 127.0.0.1:443 (a test CA; the SDK trusts it through SSL_CERT_FILE,
ours through REQUESTS_CA_BUNDLE). Each makes signed inquiryPayment calls for
an order that does not exist (ORDER_NOT_EXIST: signed both ways, nothing
created) for a few seconds. Our client keeps one keep-alive connection; the
SDK opens a new TLS connection per call, as it always does.
Run: `python -m tests.bench_ams` (part of `make bench`).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from pos.config import GatewaySection
from pos.gateway.ams import AmsGateway
from pos.gateway.keys import generate_key_folder
from pos.gateway.signing import load_private_key, load_public_key
from pos.sandbox.server import SandboxServer
from tests.sdk import support

__all__ = ["main"]

CLIENT_ID = "SANDBOX_BENCH01"


def main(seconds: float = 4.0) -> dict[str, float | str | None]:
    """Print the two costs; returns them (ms a call; None and a note when one was not measured)."""
    try:
        python = support.sdk_python()
    except support.SdkUnavailable as exc:
        print(f"v1 client vs official SDK: not measured ({exc})")
        return {"ours_ms": None, "sdk_ms": None, "note": str(exc)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_key_folder(folder / "keys")
        ca, cert, key = support.tls_files(folder)
        try:
            server = SandboxServer(merchant_public_key=load_public_key(folder / "keys" / "merchant_public.pem"),
                                   alipay_private_key=load_private_key(folder / "keys" / "alipay_private.pem"),
                                   port=443, protocol="ams", ssl_certfile=str(cert), ssl_keyfile=str(key))
        except OSError as exc:
            print(f"v1 client vs official SDK: not measured (127.0.0.1:443: {exc})")
            return {"ours_ms": None, "sdk_ms": None, "note": f"127.0.0.1:443: {exc}"}
        with server:
            os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
            try:
                settings = GatewaySection(protocol="ams", url="https://127.0.0.1", client_id=CLIENT_ID,
                                          private_key=str(folder / "keys" / "merchant_private.pem"),
                                          alipay_public_key=str(folder / "keys" / "alipay_public.pem"))
                with AmsGateway(settings) as gw:
                    calls, start = 0, time.perf_counter()
                    while (elapsed := time.perf_counter() - start) < seconds:
                        gw.query(merchant_trans_id="BENCH-NONE")
                        calls += 1
                ours_ms = elapsed / calls * 1000
            finally:
                del os.environ["REQUESTS_CA_BUNDLE"]
            cfg = {"url": "https://127.0.0.1", "client_id": CLIENT_ID,
                   "merchant_private_key": support.pkcs1_pem(load_private_key(folder / "keys" /
                                                                              "merchant_private.pem")),
                   "alipay_public_key": (folder / "keys" / "alipay_public.pem").read_text()}
            (folder / "sdk.json").write_text(json.dumps(cfg))
            done = subprocess.run([str(python), str(support.REPO / "tests" / "sdk" / "sdk_bench.py"),
                                   str(folder / "sdk.json"), str(seconds)], capture_output=True, text=True,
                                  timeout=seconds + 60, env={**os.environ, "SSL_CERT_FILE": str(ca)})
    if done.returncode != 0:
        print(f"v1 client: {ours_ms:6.2f} ms a signed call; official SDK: failed ({done.stderr.strip()[-200:]})")
        return {"ours_ms": ours_ms, "sdk_ms": None, "note": f"the SDK failed: {done.stderr.strip()[-200:]}"}
    sdk = json.loads(done.stdout)
    sdk_ms = sdk["seconds"] / sdk["calls"] * 1000
    print(f"v1 inquiryPayment over TLS on 127.0.0.1:443, signed and verified both ways: "
          f"ours {ours_ms:6.2f} ms a call (keep-alive), official SDK {sdk_ms:6.2f} ms a call "
          f"(new connection each)")
    return {"ours_ms": ours_ms, "sdk_ms": sdk_ms, "note": ""}


if __name__ == "__main__":
    main()

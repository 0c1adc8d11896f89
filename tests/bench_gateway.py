"""Gateway benchmark: signed pay requests per second through the sandbox, plus sign/verify rates.

Both sides sign and verify (the client signs the request and verifies the
answer; the sandbox verifies the request and signs the answer), over real HTTP
on 127.0.0.1 with one keep-alive session. Runs for about 10 seconds.
Run: `python -m tests.bench_gateway`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pos.config import Config, GatewaySection
from pos.core.money import Money
from pos.core.outcomes import Succeeded
from pos.gateway.factory import open_gateway
from pos.gateway.keys import generate_key_folder
from pos.gateway.signing import load_private_key, load_public_key, sign_text, verify
from pos.sandbox.scenarios import make_code
from pos.sandbox.server import SandboxServer

__all__ = ["main"]


def _rate(fn, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def main(seconds: float = 4.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_key_folder(folder)
        priv, pub = load_private_key(folder / "merchant_private.pem"), load_public_key(folder / "merchant_public.pem")
        text = '{"head":{"function":"alipay.intl.acquiring.offline.pay"},"body":{"order":"x"}}'
        sig = sign_text(text, priv)
        print(f"sign (RSA2, 2048 bit):   {_rate(lambda: sign_text(text, priv), seconds / 2):8.0f} /s")
        print(f"verify (RSA2, 2048 bit): {_rate(lambda: verify(text, sig, pub), seconds / 2):8.0f} /s")
        server = SandboxServer(merchant_public_key=pub,
                               alipay_private_key=load_private_key(folder / "alipay_private.pem"))
        with server:
            settings = GatewaySection(url=server.url, private_key=str(folder / "merchant_private.pem"),
                                      alipay_public_key=str(folder / "alipay_public.pem"), sandbox=True)
            gw = open_gateway(Config(gateway=settings))
            try:
                counter = iter(range(10**9))
                failures = 0

                def one() -> None:
                    nonlocal failures
                    res = gw.pay(merchant_trans_id=f"BENCH-{next(counter)}", identity_code=make_code("00"),
                                 amount=Money(100, "USD"), order_title="bench")
                    failures += not isinstance(res, Succeeded)

                rate = _rate(one, seconds)
            finally:
                gw.close()
        print(f"signed pay round trips through the sandbox: {rate:8.0f} /s (failures: {failures})")


if __name__ == "__main__":
    main()

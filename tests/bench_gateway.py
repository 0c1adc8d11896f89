"""Gateway benchmark: signed pay requests per second through the sandbox, plus sign/verify rates,
and the transport's own cost a call (pos/gateway/transport.py, no signing, against a minimal
keep-alive server in a process of its own).

Both sides sign and verify (the client signs the request and verifies the
answer; the sandbox verifies the request and signs the answer), over real HTTP
on 127.0.0.1 with one keep-alive session. Runs for about 10 seconds.
Run: `python -m tests.bench_gateway`.
"""

from __future__ import annotations

import subprocess
import sys
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

__all__ = ["main", "transport_call"]

# A keep-alive HTTP server answering every POST with 600 bytes in one write, in its own process.
_SERVER = r"""
import socket, sys, threading
BODY = b'{"answer":"' + b"x" * 600 + b'"}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
def serve(sock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
            while b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                               if l.lower().startswith(b"content-length:")), 0)
                if len(rest) < length:
                    break
                data = rest[length:]
                sock.sendall(ANSWER)
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
"""


def transport_call(calls: int = 2000, rounds: int = 5) -> tuple[float, float]:
    """The transport's median wall time and CPU time a call, in ms (POST of 800 bytes, 600 back)."""
    from pos.gateway.transport import Reply, Transport

    server = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        transport = Transport(url)
        body = b"{" + b'"k":"v",' * 100 + b'"z":1}'
        headers = {"Content-Type": "application/json; charset=UTF-8"}
        for _ in range(200):
            transport.post(url + "/pay", body, headers, (5.0, 5.0))
        walls, cpus = [], []
        for _ in range(rounds):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                answer = transport.post(url + "/pay", body, headers, (5.0, 5.0))
            walls.append((time.perf_counter() - wall) / calls * 1e3)
            cpus.append((time.process_time() - cpu) / calls * 1e3)
            assert isinstance(answer, Reply) and answer.status == 200
        transport.close()
        return sorted(walls)[rounds // 2], sorted(cpus)[rounds // 2]
    finally:
        server.kill()
        server.wait()


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
    wall, cpu = transport_call()
    print(f"transport call (no signing, keep-alive server in its own process): {wall:.3f} ms, "
          f"{cpu:.3f} ms of CPU (median of 5 x 2000)")


if __name__ == "__main__":
    main()

"""The gateway transport (pos/gateway/transport.py): CA bundle and proxy settled once; a real proxy on loopback."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pos.config import load_config
from pos.core.errors import ConfigError
from pos.core.outcomes import Unknown
from pos.gateway.transport import Reply, Transport, ca_bundle, proxy_for


def test_ca_bundle_is_chosen_as_requests_chose_it() -> None:
    import certifi

    assert ca_bundle({}) == certifi.where()
    assert ca_bundle({"REQUESTS_CA_BUNDLE": "/x/ca.pem", "CURL_CA_BUNDLE": "/y"}) == "/x/ca.pem"
    assert ca_bundle({"CURL_CA_BUNDLE": "/y/ca.pem"}) == "/y/ca.pem"
    assert ca_bundle({"SSL_CERT_FILE": "/z/ca.pem"}) == certifi.where()   # requests never read it either


def test_proxy_from_the_key_else_the_environment_never_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY",
                 "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://open-sea.alipay.com") == ""
    assert proxy_for("https://open-sea.alipay.com", "http://p.example:3128") == "http://p.example:3128"
    monkeypatch.setenv("HTTPS_PROXY", "http://env.example:8080")
    assert proxy_for("https://open-sea.alipay.com") == "http://env.example:8080"
    assert proxy_for("https://open-sea.alipay.com", "http://p.example:3128") == "http://p.example:3128"
    monkeypatch.setenv("NO_PROXY", ".alipay.com")
    assert proxy_for("https://open-sea.alipay.com") == ""
    # The sandbox on this machine: never through a proxy, whatever is configured.
    for url in ("http://127.0.0.1:18080", "http://localhost:9", "http://[::1]:8080"):
        assert proxy_for(url, "http://p.example:3128") == ""


@pytest.mark.parametrize("proxy", ["proxy.example:3128", "ftp://p.example", "http://p.example\\\\@q.example",
                                   "http://p.example:99999", "http://p .example", "http://p.example/path"])
def test_a_bad_proxy_key_is_refused_with_its_name(tmp_path: Path, proxy: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'[gateway]\nproxy = "{proxy}"\n')
    with pytest.raises(ConfigError, match=r"\[gateway\] proxy"):
        load_config(path)


def test_a_good_proxy_key_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[gateway]\nproxy = "http://user:pw@proxy.example:3128/"\n')
    assert load_config(path).gateway.proxy == "http://user:pw@proxy.example:3128"


class _Proxy(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Proxy.seen.append((self.path, self.headers.get("Proxy-Authorization")))
        body = b'{"via":"proxy"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_proxy() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_configured_proxy_carries_the_call_with_its_credentials(http_proxy: str) -> None:
    _Proxy.seen.clear()
    user_proxy = http_proxy.replace("http://", "http://store:s3cret@")
    transport = Transport("http://gateway.example", proxy=user_proxy)
    try:
        for _ in range(2):
            reply = transport.post("http://gateway.example/api/pay.htm", b"{}", {"Content-Type": "application/json"},
                                   (2.0, 2.0))
            assert isinstance(reply, Reply) and reply.status == 200 and reply.body == b'{"via":"proxy"}'
    finally:
        transport.close()
    # Basic store:s3cret
    assert _Proxy.seen == [("http://gateway.example/api/pay.htm", "Basic c3RvcmU6czNjcmV0")] * 2


def test_an_unreachable_proxy_is_unknown_no_answer() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    transport = Transport("http://gateway.example", proxy=f"http://127.0.0.1:{port}")
    answer = transport.post("http://gateway.example/x", b"{}", {}, (1.0, 1.0))
    assert isinstance(answer, Unknown) and answer.no_answer and "connection" in answer.reason
    transport.close()


class _Gateway(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"answer":"' + b"x" * 200 + b'"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _gateway_behind_fault_proxy() -> Iterator[Any]:
    """A `_Gateway` on loopback behind a fault proxy that trickles an answer a byte per 0.3 s when told to."""
    from tests.fault_proxy import FaultProxy

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with FaultProxy(f"http://127.0.0.1:{server.server_address[1]}", trickle_interval=0.3) as proxy:
            yield proxy
    finally:
        server.shutdown()
        server.server_close()


def test_concurrent_trickled_calls_each_end_at_their_deadline_and_the_pool_recovers() -> None:
    with _gateway_behind_fault_proxy() as proxy:
        proxy.fault = "trickle"
        transport = Transport(proxy.url)
        answers: dict[float, Any] = {}
        ended: dict[float, float] = {}

        def call(read: float) -> None:
            started = time.monotonic()
            answers[read] = transport.post(proxy.url + "/pay", b"{}", {}, (0.5, read))
            ended[read] = time.monotonic() - started

        workers = [threading.Thread(target=call, args=(read,), daemon=True) for read in (0.5, 1.5, 2.5)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=15)
        for read in (0.5, 1.5, 2.5):
            answer = answers[read]
            assert isinstance(answer, Unknown) and "deadline" in answer.reason and answer.no_answer
            # Each at its own deadline (connect + read), not at the others'.
            assert 0.5 + read - 0.1 <= ended[read] < 0.5 + read + 1.5, (read, ended[read])
        proxy.fault = "pass"
        reply = transport.post(proxy.url + "/pay", b"{}", {}, (1.0, 1.0))
        assert isinstance(reply, Reply) and reply.status == 200 and reply.body.startswith(b'{"answer"')
        transport.close()


def test_a_call_armed_after_one_answered_in_time_still_ends_at_its_own_deadline() -> None:
    """The deadline thread, woken by a first call and left sleeping towards that call's (disarmed)
    deadline, is not woken by a later call whose deadline comes after it: it still ends that call
    at its own deadline, neither at the first call's nor never."""
    with _gateway_behind_fault_proxy() as proxy:
        transport = Transport(proxy.url)
        proxy.fault = "pass"
        quick = transport.post(proxy.url + "/pay", b"{}", {}, (0.4, 0.4))   # deadline 0.8 s, answered now
        assert isinstance(quick, Reply) and quick.status == 200
        proxy.fault = "trickle"
        started = time.monotonic()
        slow = transport.post(proxy.url + "/pay", b"{}", {}, (0.5, 1.0))   # deadline 1.5 s
        took = time.monotonic() - started
        assert isinstance(slow, Unknown) and "deadline" in slow.reason and slow.no_answer
        assert 1.4 <= took < 3.0, took
        transport.close()


def test_an_answer_too_large_is_cut_and_its_connection_not_reused() -> None:
    from pos.gateway.transport import MAX_ANSWER

    class KeepAlive(_Gateway):
        sizes = [MAX_ANSWER + 100_000, 20]

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = b"y" * KeepAlive.sizes.pop(0)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    transport = Transport(url)
    try:
        big = transport.post(url + "/pay", b"{}", {}, (2.0, 2.0))
        assert isinstance(big, Reply) and len(big.body) == MAX_ANSWER + 1
        small = transport.post(url + "/pay", b"{}", {}, (2.0, 2.0))
        assert isinstance(small, Reply) and small.status == 200 and small.body == b"y" * 20
    finally:
        transport.close()
        server.shutdown()
        server.server_close()

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


# -- the direct connection (http.client): what it must guarantee itself ---------------------------

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


class _Scripted:
    """A gateway on loopback speaking raw HTTP: `handler(conn, sock, request)` answers each request
    (`conn` counts connections from 0) and returns False to stop serving that connection."""

    def __init__(self, handler: Any) -> None:
        import socket

        self.handler = handler
        self.requests: list[tuple[int, bytes]] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            conn, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._serve, args=(conn, sock), daemon=True).start()

    def _serve(self, conn: int, sock: Any) -> None:
        from tests.fault_proxy import _read_http

        with sock:
            while request := _read_http(sock):
                self.requests.append((conn, request))
                if not self.handler(conn, sock, request):
                    return

    def close(self) -> None:
        self._listener.close()


def test_a_connection_the_gateway_closed_while_idle_is_left_before_anything_is_written_on_it() -> None:
    """The gateway's idle timeout: its FIN is seen before the next request is written, so the request
    goes once, on a new connection; nothing is written on the closed one."""
    import socket

    closed = threading.Event()
    after_close: list[bytes] = []

    def handler(conn: int, sock: socket.socket, request: bytes) -> bool:
        sock.sendall(_OK)
        if conn == 0:   # keep-alive answer, then the gateway closes its side and listens on
            sock.shutdown(socket.SHUT_WR)
            closed.set()
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
            after_close.append(rest)
            return False
        return True

    server = _Scripted(handler)
    transport = Transport(server.url)
    try:
        first = transport.post(server.url + "/pay", b'{"n":1}', {}, (2.0, 2.0))
        assert isinstance(first, Reply) and first.status == 200
        assert closed.wait(5)
        time.sleep(0.1)   # the FIN crosses loopback
        second = transport.post(server.url + "/pay", b'{"n":2}', {}, (2.0, 2.0))
        assert isinstance(second, Reply) and second.status == 200 and second.body == b'{"ok":true}'
    finally:
        transport.close()
    deadline = time.monotonic() + 5
    while not after_close and time.monotonic() < deadline:
        time.sleep(0.01)
    assert after_close == [b""]   # the closed connection carried nothing more: it was left, not written on
    assert [(conn, request.endswith(body)) for (conn, request), body in
            zip(server.requests, (b'{"n":1}', b'{"n":2}'), strict=True)] == [(0, True), (1, True)]
    server.close()


def test_a_request_that_may_have_reached_the_gateway_is_never_sent_again() -> None:
    """The gateway reads the second request on a kept connection and closes without answering:
    Unknown (no answer), and the request is not repeated on a new connection."""
    import socket

    def handler(conn: int, sock: socket.socket, request: bytes) -> bool:
        if len(server.requests) == 2:
            return False   # read, never answered: the connection is closed
        sock.sendall(_OK)
        return True

    server = _Scripted(handler)
    transport = Transport(server.url)
    try:
        assert isinstance(transport.post(server.url + "/pay", b"{}", {}, (2.0, 2.0)), Reply)
        lost = transport.post(server.url + "/pay", b'{"pay":2}', {}, (2.0, 2.0))
        assert isinstance(lost, Unknown) and lost.no_answer and "transport error" in lost.reason
        time.sleep(0.2)
        assert len(server.requests) == 2 and server.connections == 1   # no second attempt anywhere
        third = transport.post(server.url + "/pay", b"{}", {}, (2.0, 2.0))   # a new call: a new connection
        assert isinstance(third, Reply) and server.connections == 2
    finally:
        transport.close()
        server.close()


def test_headers_and_body_leave_in_one_write() -> None:
    """One write a request: a second segment would wake the gateway twice (and meet delayed ACKs)."""
    import socket

    server = _Scripted(lambda conn, sock, request: sock.sendall(_OK) or True)
    transport = Transport(server.url)
    writes: list[bytes] = []

    class Recorded:
        def __init__(self, sock: socket.socket) -> None:
            self._sock = sock

        def sendall(self, data: bytes) -> None:
            writes.append(bytes(data))
            self._sock.sendall(data)

        def send(self, data: bytes) -> int:
            writes.append(bytes(data))
            return self._sock.send(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._sock, name)

    direct: Any = transport._direct
    connect = direct._connect
    direct._connect = lambda *args: Recorded(connect(*args))
    try:
        for body in (b'{"first":1}', b'{"second":2}'):
            reply = transport.post(server.url + "/pay", body, {"Content-Type": "application/json"}, (2.0, 2.0))
            assert isinstance(reply, Reply) and reply.status == 200
    finally:
        transport.close()
        server.close()
    assert [w.startswith(b"POST /pay HTTP/1.1\r\n") for w in writes] == [True, True]
    assert [w.partition(b"\r\n\r\n")[2] for w in writes] == [b'{"first":1}', b'{"second":2}']
    assert server.connections == 1 and [r for _, r in server.requests] == writes
    head = writes[0].partition(b"\r\n\r\n")[0].decode().split("\r\n")
    assert f"Host: {server.url.removeprefix('http://')}" in head and "Content-Length: 11" in head
    assert any(line.startswith("User-Agent: pos-terminal/") for line in head)


def test_threads_sharing_a_client_each_get_their_own_answer() -> None:
    """Several gateway workers share one client: a connection carries one call at a time."""
    import socket

    def echo(conn: int, sock: socket.socket, request: bytes) -> bool:
        body = request.partition(b"\r\n\r\n")[2]
        time.sleep(0.002)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return True

    server = _Scripted(echo)
    transport = Transport(server.url)
    wrong: list[Any] = []

    def worker(n: int) -> None:
        for i in range(20):
            body = f'{{"worker":{n},"call":{i}}}'.encode()
            reply = transport.post(server.url + "/pay", body, {}, (2.0, 2.0))
            if not (isinstance(reply, Reply) and reply.body == body):
                wrong.append(reply)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    transport.close()
    server.close()
    assert wrong == [] and len(server.requests) == 80
    assert server.connections <= 4   # kept and reused, never more than the calls in flight


@pytest.mark.parametrize("answer,reused", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 7\r\n\r\n{\"a\":1}", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}", False),
])
def test_an_answer_read_whole_keeps_its_connection_only_when_the_gateway_keeps_it(answer: bytes,
                                                                                    reused: bool) -> None:
    import socket

    def handler(conn: int, sock: socket.socket, request: bytes) -> bool:
        sock.sendall(answer)
        return b"Connection: close" not in answer and b"HTTP/1.0" not in answer

    server = _Scripted(handler)
    transport = Transport(server.url)
    try:
        for _ in range(2):
            reply = transport.post(server.url + "/pay", b"{}", {}, (2.0, 2.0))
            assert isinstance(reply, Reply) and reply.status == 200 and reply.body == b'{"a":1}'
    finally:
        transport.close()
        server.close()
    assert server.connections == (1 if reused else 2)


def test_a_truncated_answer_is_unknown_and_its_connection_dropped() -> None:
    import socket

    def handler(conn: int, sock: socket.socket, request: bytes) -> bool:
        if conn == 0:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"cut\":")
            return False
        sock.sendall(_OK)
        return True

    server = _Scripted(handler)
    transport = Transport(server.url)
    try:
        cut = transport.post(server.url + "/pay", b"{}", {}, (2.0, 2.0))
        assert isinstance(cut, Unknown) and cut.no_answer and cut.reason == "transport error: IncompleteRead"
        whole = transport.post(server.url + "/pay", b"{}", {}, (2.0, 2.0))
        assert isinstance(whole, Reply) and whole.body == b'{"ok":true}'
    finally:
        transport.close()
        server.close()


@contextlib.contextmanager
def _tls_gateway(cert: Path, key: Path, handler: type[http.server.BaseHTTPRequestHandler] = _Gateway
                 ) -> Iterator[int]:
    """A gateway over TLS on 127.0.0.1 with `cert`, serving within the context; its port."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _one_call(base: str) -> Any:
    """One pay posted by a Transport made for `base` now (its CA bundle chosen then), then closed."""
    transport = Transport(base)
    try:
        return transport.post(f"{base}/pay", b"{}", {}, (2.0, 2.0))
    finally:
        transport.close()


def test_tls_is_verified_against_the_bundle_chosen_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """certifi does not know the test CA: refused; REQUESTS_CA_BUNDLE names it: answered, the connection kept;
    a name the certificate does not carry (localhost for a certificate of 127.0.0.1): refused."""
    from tests.sdk import support

    ca, cert, key = support.tls_files(tmp_path)
    connections: list[int] = []

    class Handler(_Gateway):
        def setup(self) -> None:
            connections.append(1)
            super().setup()

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with _tls_gateway(cert, key, Handler) as port:
        refused = _one_call(f"https://127.0.0.1:{port}")
        assert isinstance(refused, Unknown) and refused.no_answer and refused.reason.startswith("connection error")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
        trusted = Transport(f"https://127.0.0.1:{port}")
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")   # chosen at start: a later change is not read
        connections.clear()
        for _ in range(2):
            reply = trusted.post(f"https://127.0.0.1:{port}/pay", b"{}", {}, (2.0, 2.0))
            assert isinstance(reply, Reply) and reply.status == 200 and reply.body.startswith(b'{"answer"')
        assert len(connections) == 1
        trusted.close()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
        wrong = _one_call(f"https://localhost:{port}")
        assert isinstance(wrong, Unknown) and wrong.reason.startswith("connection error")


def test_tls_is_verified_against_a_hashed_ca_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REQUESTS_CA_BUNDLE naming a folder of roots hashed for OpenSSL (as /etc/ssl/certs is): OpenSSL finds
    the root a handshake needs there (README "Performance": no bundle parsed whole); an empty folder: refused."""
    import subprocess

    from tests.sdk import support

    ca, cert, key = support.tls_files(tmp_path)
    subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca)], capture_output=True,
                                  text=True, check=True).stdout.strip()
    roots, empty = tmp_path / "roots", tmp_path / "empty"
    roots.mkdir()
    empty.mkdir()
    (roots / f"{subject_hash}.0").write_bytes(ca.read_bytes())
    with _tls_gateway(cert, key) as port:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(roots))
        reply = _one_call(f"https://127.0.0.1:{port}")
        assert isinstance(reply, Reply) and reply.status == 200
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(empty))
        refused = _one_call(f"https://127.0.0.1:{port}")
        assert isinstance(refused, Unknown) and refused.reason.startswith("connection error")


def test_a_compressed_answer_is_decoded_as_urllib3_decoded_it() -> None:
    import gzip
    import socket

    packed = gzip.compress(b'{"a":1}')

    def handler(conn: int, sock: socket.socket, request: bytes) -> bool:
        assert b"\r\nAccept-Encoding: identity\r\n" in request
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed)
        return True

    server = _Scripted(handler)
    transport = Transport(server.url)
    try:
        reply = transport.post(server.url + "/pay", b"{}", {}, (2.0, 2.0))
        assert isinstance(reply, Reply) and reply.body == b'{"a":1}' and reply.headers["Content-Encoding"] == "gzip"
    finally:
        transport.close()
        server.close()


def test_an_https_gateway_through_a_proxy_is_reached_by_connect_and_verified(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A real CONNECT proxy on loopback carries the TLS connection to gateway.example (the gateway's
    certificate checked for that name, against the bundle chosen at start), with the proxy's credentials;
    the tunnel is kept for the next call."""
    import socket

    from tests.sdk import support

    ca, cert, key = support.tls_files(tmp_path, "gateway.example")
    with _tls_gateway(cert, key) as gateway_port:
        connects: list[list[str]] = []
        listener = socket.create_server(("127.0.0.1", 0))

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        def tunnel(client: socket.socket) -> None:
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(4096)
            connects.append(head.partition(b"\r\n\r\n")[0].decode().split("\r\n"))
            upstream = socket.create_connection(("127.0.0.1", gateway_port))   # whatever was asked for
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
            pipe(client, upstream)

        def accept() -> None:
            with contextlib.suppress(OSError):
                while True:
                    threading.Thread(target=tunnel, args=(listener.accept()[0],), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        proxy = f"http://store:s3cret@127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
        transport = Transport("https://gateway.example", proxy=proxy)
        try:
            for _ in range(2):
                reply = transport.post("https://gateway.example/api/pay.htm", b"{}", {}, (2.0, 2.0))
                assert isinstance(reply, Reply) and reply.status == 200 and reply.body.startswith(b'{"answer"')
            transport.close()
            monkeypatch.delenv("REQUESTS_CA_BUNDLE")   # certifi's bundle does not know the test CA
            transport = Transport("https://gateway.example", proxy=proxy)
            refused = transport.post("https://gateway.example/api/pay.htm", b"{}", {}, (2.0, 2.0))
            assert isinstance(refused, Unknown) and refused.no_answer and refused.reason.startswith("connection error")
        finally:
            transport.close()
            listener.close()
    assert len(connects) == 2 and connects[0][0].startswith("CONNECT gateway.example:443 HTTP/1.")
    assert "Proxy-Authorization: Basic c3RvcmU6czNjcmV0" in connects[0]


@pytest.mark.parametrize("headers", [{"X-Note": "a\r\nHost: evil.example"}, {"Bad Name": "x"}, {"Content-Length": "1"},
                                     {"X-Note": "caf\u00e9 \u2615"}])
def test_a_header_that_would_change_the_request_is_refused_and_nothing_is_sent(headers: dict[str, str]) -> None:
    server = _Scripted(lambda conn, sock, request: sock.sendall(_OK) or True)
    transport = Transport(server.url)
    try:
        refused = transport.post(server.url + "/pay", b"{}", headers, (2.0, 2.0))
        assert isinstance(refused, Unknown) and refused.reason.startswith("transport error")
        assert isinstance(transport.post(server.url + "/pay", b"{}", {}, (2.0, 2.0)), Reply)
    finally:
        transport.close()
        server.close()
    assert len(server.requests) == 1

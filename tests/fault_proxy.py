"""A fault-injecting TCP proxy on 127.0.0.1 between the terminal and the sandbox gateway.

    with FaultProxy(sandbox_server.url) as proxy:
        gateway_settings.url = proxy.url
        proxy.script(["pass", "trickle", "drop_after"])   # the next three exchanges
        proxy.fault = "reset"                               # every exchange after the script

Connections are kept alive as the gateway keeps them: the client's next request may come on
the same connection, and every exchange draws its fault, the first on a fresh connection or a
later one on a reused connection alike (`reused` counts the faults that hit a reused one).
With `keep_alive=False` each answer says `Connection: close`: one exchange per connection.
A fault that breaks the answer (drop, reset, truncate, trickle) closes the connection. Faults:

- pass: forwarded untouched
- delay: the request waits `delay` seconds before it is forwarded
- drop_before: the request never reaches the gateway; the connection is closed (on a reused
  connection this is what a gateway's idle timeout looks like to the client)
- drop_after: the gateway got the request and answered; the answer is thrown away
- reset: half the answer, then a TCP reset
- truncate: half the answer, then a clean close
- trickle: the answer one byte every `trickle_interval` seconds (forever if it is long enough)
- stale: the gateway got the request; the terminal gets the previous exchange's answer instead

`counts` tells how many exchanges saw each fault (the soak prints it); `reused` how many of
them came on a reused connection; `requests` keeps the last thousand requests as sent.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["FAULTS", "FaultProxy"]

FAULTS = ("pass", "delay", "drop_before", "drop_after", "reset", "truncate", "trickle", "stale")


def _read_http(sock: socket.socket, limit: int = 4 * 1024 * 1024) -> bytes:
    """One HTTP message (headers + Content-Length body) from sock; b'' if the peer closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
        if len(data) > limit:
            return b""
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _with_connection(message: bytes, value: bytes) -> bytes:
    """The message with its `Connection` header set to value."""
    head, _, body = message.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: " + value]) + b"\r\n\r\n" + body


class FaultProxy:
    def __init__(self, upstream_url: str, *, delay: float = 0.5, trickle_interval: float = 0.2,
                 keep_alive: bool = True) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = delay
        self.trickle_interval = trickle_interval
        self.fault = "pass"
        self._script: deque[str] = deque()
        self._last_answer = b""
        self._lock = threading.Lock()
        self.keep_alive = keep_alive
        self.counts: Counter[str] = Counter()
        self.reused: Counter[str] = Counter()
        self.requests: deque[bytes] = deque(maxlen=1000)   # the last requests seen, whatever their fault
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, faults: Iterable[str]) -> None:
        """The faults of the next exchanges, in order; then `fault` again."""
        with self._lock:
            for fault in faults:
                if fault not in FAULTS:
                    raise ValueError(f"unknown fault {fault!r}")
                self._script.append(fault)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_fault(self, reused: bool) -> str:
        with self._lock:
            fault = self._script.popleft() if self._script else self.fault
            self.counts[fault] += 1
            if reused:
                self.reused[fault] += 1
            return fault

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        """The exchanges of one client connection, in turn, until one closes it."""
        try:
            client.settimeout(30)
            exchanges = 0
            while not self._stop.is_set():
                request = _read_http(client)
                if not request:
                    return
                if not self._exchange(client, request, reused=exchanges > 0):
                    return
                exchanges += 1
        except OSError:
            pass
        finally:
            client.close()

    def _exchange(self, client: socket.socket, request: bytes, *, reused: bool) -> bool:
        """One request and its answer, with the fault drawn for it; False when the connection is done."""
        fault = self._next_fault(reused)
        self.requests.append(request)
        if fault == "drop_before":
            return False
        if fault == "delay":
            time.sleep(self.delay)
        with socket.create_connection(self._upstream, timeout=30) as up:
            up.sendall(_with_connection(request, b"close"))
            answer = _read_http(up)
        if not answer:
            return False
        # The proxy talks to the gateway one connection per exchange and keeps the client's as the client asks.
        keep = self.keep_alive and b"\r\nconnection: close" not in request.partition(b"\r\n\r\n")[0].lower()
        answer = _with_connection(answer, b"keep-alive" if keep else b"close")
        stale, self._last_answer = self._last_answer, answer
        if fault == "drop_after":
            return False
        if fault == "stale":
            client.sendall(stale or answer[: len(answer) // 2])
            return keep and bool(stale)
        if fault == "reset":
            client.sendall(answer[: len(answer) // 2])
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if fault == "truncate":
            client.sendall(answer[: len(answer) // 2])
            return False
        if fault == "trickle":
            for i in range(len(answer)):
                if self._stop.is_set():
                    return False
                client.sendall(answer[i:i + 1])
                time.sleep(self.trickle_interval)
            return False
        client.sendall(answer)
        return keep

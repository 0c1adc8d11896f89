"""Serve a WSGI app with cheroot in a background thread, on a socket bound first.

The till interface runs in the daemon beside every sale, so it is served by a
threaded WSGI server: cheroot (CherryPy's production server, pure Python) costs
the daemon about 1.5 MB, where uvicorn with asyncio and anyio cost about 8 MB
before a framework. Idle keep-alive connections wait in cheroot's selector, not
on a thread; a request runs on one of a pool of threads, which starts small and
grows, up to a size the caller gives for everything that may wait at once (the
till's long-polls) plus room for the rest.

Binding before starting means port 0 gives a free port that is known (`.port`)
before the first request, and a port already in use is reported as one clear
error instead of a log line from inside the server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import server, wsgi
from cheroot.workers import threadpool

__all__ = ["WsgiApp", "WsgiServer", "listening_socket", "server_url"]

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# cheroot's pool module as it is, past its type stubs (its worker class is untyped, its stop marker private).
_THREADPOOL: Any = threadpool


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (port 0: a free one, known before the first request), or one
    OSError saying the address is taken. Nagle is off (TCP_NODELAY, which accepted connections
    inherit): each answer goes out at once, not after a delayed ACK (40 ms)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def server_url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class _Request(server.HTTPRequest):
    """cheroot's request, closing the connection when the app's answer says `Connection: close`.

    cheroot otherwise reads what is left of a request's body before it answers, to keep the
    connection; an app that refuses a request before reading its body (no token, 100 MB declared)
    says `Connection: close` and is answered at once (RFC 9112 9.6 lets a server close so)."""

    def send_headers(self) -> None:
        if any(key.lower() == b"connection" and value.lower() == b"close" for key, value in self.outheaders):
            self.close_connection = True
        super().send_headers()


class _Connection(server.HTTPConnection):
    RequestHandlerClass = _Request


class _GrowingPool(threadpool.ThreadPool):
    """cheroot's pool of request threads, one more thread (up to `max`) when a connection would
    otherwise wait in the queue for one, started at once; and a stop that waits for no request
    longer than its time.

    cheroot keeps its pool at `min` unless told to grow, and its own `grow` waits for each new
    thread in 0.1 s steps on the thread that accepts connections. An idle thread costs about
    45 KB; the till's pool needs 40 only while 32 long-polls wait, so it starts small.

    cheroot's `stop`, once its time is up, closes a running request's connection and then waits
    for the request to end however long it takes: a till's long-poll held a daemon's stop for up
    to `[ecr] max_wait`. Here such a request is left to end on its own thread (a daemon thread,
    so it never holds the process either), its connection closed."""

    def put(self, obj: Any) -> None:
        # Called only by the server's accepting thread, so two calls never race each other.
        pool: Any = self   # the pool's queue and threads, which cheroot's type stubs leave out
        if pool._queue.qsize() >= self.idle and len(pool._threads) < self.max:
            pool._threads.append(pool._spawn_worker())
        super().put(obj)

    def _spawn_worker(self) -> threadpool.WorkerThread:
        worker: threadpool.WorkerThread = _THREADPOOL.WorkerThread(self.server)
        worker.name = f"{self.server.server_name} {worker.name}"
        worker.daemon = True
        worker.start()
        return worker

    def stop(self, timeout: float | None = 5) -> None:
        pool: Any = self
        for _ in pool._threads:
            pool._queue.put(_THREADPOOL._SHUTDOWNREQUEST)
        deadline = time.monotonic() + (timeout or 0.0)
        for worker in pool._clear_threads():
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                pool._force_close(worker.conn)


class _BoundServer(wsgi.Server):
    """cheroot's server on a socket bound by the caller: `bind` hands cheroot that socket instead of
    making one (cheroot would instead take fd 3 under systemd socket activation, LISTEN_PID, which
    systemd/pos-terminal.service does not use)."""

    def __init__(self, sock: socket.socket, app: WsgiApp, **options: Any) -> None:
        super().__init__(sock.getsockname()[:2], app, **options)
        self._bound = sock
        self.ConnectionClass = _Connection
        self.requests = _GrowingPool(self, min=options["numthreads"], max=options["max"])

    def bind(self, family: int, type: int, proto: int = 0) -> socket.socket:
        self.socket = self._bound
        return self._bound


class WsgiServer:
    def __init__(self, app: WsgiApp, host: str = "127.0.0.1", port: int = 0, *, name: str = "http",
                 threads: int = 10, min_threads: int = 4) -> None:
        self._sock = listening_socket(host, port)
        self.host, self.port = host, self._sock.getsockname()[1]
        # min_threads at start, growing to `threads` as requests need them (_GrowingPool).
        self._server = _BoundServer(self._sock, app, numthreads=min(min_threads, threads), max=threads,
                                    server_name=name,
                                    request_queue_size=128, timeout=10, shutdown_timeout=1)
        self._server.max_request_header_size = 64 * 1024   # the request line and headers (431 above)
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return server_url("http", self.host, self.port)

    def start(self) -> WsgiServer:
        self._server.prepare()   # listening, and the pool's threads started, before the first request
        self._thread = threading.Thread(target=self._server.serve, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> WsgiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

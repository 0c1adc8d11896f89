"""Serve an ASGI app with uvicorn in a background thread, on a socket bound first.

Binding before starting means port 0 gives a free port that is known
(`.port`) before the first request, and a port already in use is reported
as one clear error instead of a log line from inside uvicorn.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from pos.web import route_problem
from pos.wsgiserver import listening_socket, server_url

__all__ = ["ThreadedServer", "router_problem"]


class PeerCertProtocol(H11Protocol):
    """uvicorn's h11 protocol, handing the app the client certificate the TLS handshake verified."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = transport.get_extra_info("ssl_object")
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["tls"] = {"client_cert_der": der}
            await inner(scope, receive, send)

        self.app = app


class ThreadedServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, name: str = "http",
                 ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                 client_ca: str | None = None, http: Literal["h11", "httptools"] = "h11") -> None:
        self._sock = listening_socket(host, port)
        self._sock.listen(128)
        self.host, self.port = host, self._sock.getsockname()[1]
        # TLS (a certificate and its key) only where a client insists on HTTPS (the v1 SDK's interop test).
        # client_ca: a client may present a certificate, which TLS verifies against these CAs; the
        # app finds it (DER) in scope["extensions"]["tls"]["client_cert_der"] (h11's protocol, extended).
        # The HTTP parser is named, never uvicorn's "auto" pick of what happens to be installed: h11 (pure
        # Python, strict) unless the caller asks for httptools (C, faster: the sandbox under load). No
        # websockets are served, so none of their libraries is imported.
        tls: dict[str, Any] = {"http": http}
        if client_ca:
            tls = {"ssl_ca_certs": client_ca, "ssl_cert_reqs": ssl.CERT_OPTIONAL, "http": PeerCertProtocol}
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, ws="none",
                                timeout_graceful_shutdown=1, log_config=None,
                                ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, **tls)
        self._scheme = "https" if ssl_certfile else "http"
        self._server = uvicorn.Server(config)
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return server_url(self._scheme, self.host, self.port)

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=self._name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {self._name} server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def router_problem(scope: Mapping[str, Any], routes: Iterable[Any], status: int, detail: object,
                   where: str) -> tuple[dict[str, Any], dict[str, str] | None]:
    """`pos.web.route_problem` for a Starlette router's HTTPException: the methods a 405 allows are
    those of every route whose path matches. Returns the body and the headers to send."""
    from starlette.routing import Match

    allowed = [m for route in routes if route.matches(scope)[0] is Match.PARTIAL
               for m in (getattr(route, "methods", None) or ())] if status == 405 else []
    return route_problem(str(scope.get("method", "")), str(scope.get("path", "")), status, where, allowed, detail)

"""The sandbox gateway's HTTP host: a protocol module's answers over HTTP on 127.0.0.1.

Protocol-neutral: `build_app` reads each POST body (refusing one larger than
the protocol's max_body unread) and sends what the protocol module answers
(`SandboxProtocol`, protocol.py); the protocol modules are named in
`PROTOCOLS` (offline.py: Alipay's offline acquiring protocol; ams.py: the v1 payments API). `SandboxServer`
runs the app under uvicorn in a background thread (tests) or in the
foreground (`pos sandbox`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from pos.httpserver import ThreadedServer, router_problem
from pos.sandbox.ams import AmsSandbox
from pos.sandbox.ledger import Ledger
from pos.sandbox.offline import Clock, OfflineSandbox
from pos.sandbox.protocol import Answer, SandboxProtocol
from pos.sandbox.scenarios import SandboxOptions

__all__ = ["Answer", "GatewayStats", "PROTOCOLS", "build_app", "SandboxServer"]

_JSON = "application/json; charset=UTF-8"
_JSON_BYTES = _JSON.encode("latin-1")

# [gateway] protocol -> its sandbox: (ledger, merchant_public_key, alipay_private_key, clock) -> protocol.
PROTOCOLS: dict[str, Callable[[Ledger, Any, Any, Clock | None], SandboxProtocol]] = {
    "offline": lambda ledger, merchant_key, alipay_key, clock: OfflineSandbox(
        ledger, merchant_public_key=merchant_key, alipay_private_key=alipay_key, clock=clock),
    "ams": lambda ledger, merchant_key, alipay_key, clock: AmsSandbox(
        ledger, merchant_public_key=merchant_key, alipay_private_key=alipay_key, clock=clock),
}


class _OriginForm:
    """Reads an absolute-form request target (`POST https://host/ams/...`, as the v1 SDK sends it) as its path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        if path.startswith(("http://", "https://")):
            parts = urlsplit(path)
            scope = {**scope, "path": parts.path or "/", "raw_path": (parts.path or "/").encode("latin-1")}
        await self.app(scope, receive, send)


class _Asgi:
    """An ASGI function as a Starlette route endpoint (a plain function would be read as a request handler)."""

    def __init__(self, app: Callable[[Any, Any, Any], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


# (day, family) -> the names of the files written; None: the sandbox writes no files.
FileWriter = Callable[[date, str], list[str]]
_DAY = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


# The POSTs that are not gateway calls: a reconciliation day, a cashier page's Pay and Cancel buttons.
_NOT_GATEWAY = re.compile(r"^/sandbox/(reconciliation/[^/]+|cashier/[^/]+/[^/]+)$")


_ROUTES = ("POST any other path (a gateway call), GET /sandbox/ledger, GET /sandbox/health, GET /sandbox/stats, "
           "POST /sandbox/reconciliation/YYYY-MM-DD, GET /sandbox/cashier/PAYMENT_ID; README 'Gateway and sandbox'")


class GatewayStats:
    """How many gateway calls this sandbox answered and the time it spent thinking about them (GET /sandbox/stats).

    Counted: the protocol's handling of each gateway POST (`SandboxProtocol.handle`: reading the
    request body, verifying its signature, the ledger, building and signing the answer), including a
    refusal of a body that is too large, timed with time.perf_counter (wall time, so a moment the
    process waited for a core counts too). Not counted: the HTTP parsing and the socket work
    (uvicorn, httptools), reading the body from the connection, a scripted hold (`Answer.hold`,
    the artificial think time), sending the answer, notifications the protocol sends on its own
    thread, and every other path (ledger, health, stats,
    reconciliation files, cashier pages). Kept by the event loop's thread only, so no lock.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"gateway_calls": self.calls, "gateway_seconds": self.seconds}


def build_app(protocol: SandboxProtocol, files: FileWriter | None = None, stats: GatewayStats | None = None) -> Any:
    max_body = protocol.max_body
    counted = stats if stats is not None else GatewayStats()

    def handle(path: str, raw: bytes, headers: Headers) -> Answer:
        """The protocol's answer, counted in `counted` (see GatewayStats for what the time covers)."""
        start = time.perf_counter()
        try:
            return protocol.handle(path, raw, headers)
        finally:
            counted.seconds += time.perf_counter() - start
            counted.calls += 1

    def refused(path: str, headers: Headers) -> Answer:
        return handle(path, b"x" * (max_body + 1), headers)

    async def gateway(scope: Any, receive: Any, send: Any) -> None:
        """A gateway call: the protocol's answer to the POST body (read at most max_body bytes of it).

        Plain ASGI, not a Starlette route: it is the sandbox's one hot path, and a Request, a router
        match and a Response object per call cost about as much as the rest of the HTTP handling."""
        path = scope["path"]
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        answer: Answer | None = None
        status = 413
        if declared.isascii() and declared.isdigit() and int(declared) > max_body:
            answer = refused(path, headers)
        else:
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                size += len(chunk)
                if size > max_body:  # refused unread beyond the limit
                    answer = refused(path, headers)
                    break
                chunks.append(chunk)
            if answer is None:
                answer = handle(path, b"".join(chunks), headers)
                status = answer.http_status
                if answer.hold > 0:
                    await asyncio.sleep(answer.hold)
        body = answer.body
        raw = [(b"content-length", str(len(body)).encode("latin-1")), (b"content-type", _JSON_BYTES)]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in
                (answer.headers.items() if status != 413 else ())]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def ledger(request: Request) -> Response:
        return JSONResponse(protocol.ledger_json())

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def stats_json(request: Request) -> Response:
        return JSONResponse(counted.as_json())

    async def cashier(request: Request) -> Response:
        """The wallet's cashier page of a merchant-presented QR (the v1 order code): GET shows it,
        POST .../pay and .../cancel are the tester's buttons (the protocol's `cashier_page`)."""
        page = getattr(protocol, "cashier_page", None)
        if not callable(page):
            return HTMLResponse("<p>this protocol has no cashier page</p>", 404)
        action = request.path_params.get("action", "")
        if request.method == "GET" and action:
            return HTMLResponse("<p>press the page's buttons (POST)</p>", 405)
        status, text = page(request.path_params["payment_id"], action)
        return HTMLResponse(text, status)

    async def reconciliation(request: Request) -> Response:
        """Alipay closes a day: write its transaction and settlement files (reference §16)."""
        if files is None:
            return JSONResponse({"error": "this sandbox writes no files: start it with --files-dir DIR"}, 404)
        match = _DAY.match(request.path_params["day"])
        family = request.query_params.get("family", "2.0.4")
        try:
            if match is None:
                raise ValueError("expected a date YYYY-MM-DD")
            day = date(int(match[1]), int(match[2]), int(match[3]))
            return JSONResponse({"files": files(day, family)})
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 422)

    async def not_routed(request: Request, exc: Exception) -> Response:
        """No such path, or a method the path does not take: a problem saying what the sandbox answers."""
        assert isinstance(exc, HTTPException)
        body, headers = router_problem(request.scope, rest.routes, exc.status_code, exc.detail,
                                       f"the sandbox answers {_ROUTES}")
        return JSONResponse(body, exc.status_code, headers=headers or exc.headers,
                            media_type="application/problem+json")

    rest = Starlette(exception_handlers={HTTPException: not_routed}, routes=[
        Route("/sandbox/ledger", ledger, methods=["GET"]),
        Route("/sandbox/reconciliation/{day}", reconciliation, methods=["POST"]),
        Route("/sandbox/health", health, methods=["GET"]),
        Route("/sandbox/stats", stats_json, methods=["GET"]),
        Route("/sandbox/cashier/{payment_id}", cashier, methods=["GET"]),
        Route("/sandbox/cashier/{payment_id}/{action}", cashier, methods=["GET", "POST"]),
        # Reached only by other methods (405, as any path takes a POST): POSTs go straight to `gateway`.
        Route("/{path:path}", _Asgi(gateway), methods=["POST"]),
    ])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # Every POST is a gateway call, except a reconciliation day and a cashier page's buttons
        # (as the routes matched before).
        if scope["type"] == "http" and scope["method"] == "POST" and not _NOT_GATEWAY.match(scope["path"]):
            await gateway(scope, receive, send)
        else:
            await rest(scope, receive, send)

    return _OriginForm(app)


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SandboxServer(ThreadedServer):
    """The sandbox under uvicorn on 127.0.0.1; `start()` runs it in a background thread.

    Binds its own socket first, so port 0 gives a free port that is known
    (`.port`, `.url`) before the first request. `protocol` names the wire
    protocol it speaks (a key of PROTOCOLS).
    """

    def __init__(self, *, merchant_public_key: Any, alipay_private_key: Any, ledger: Ledger | None = None,
                 options: SandboxOptions | None = None, clock: Clock | None = None,
                 host: str = "127.0.0.1", port: int = 0, protocol: str = "offline",
                 ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                 files_dir: Path | None = None, merchant_id: str = "") -> None:
        if not _is_loopback(host):
            raise ValueError(f"the sandbox listens on this machine only (127.0.0.1), not {host!r}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"the sandbox speaks {', '.join(PROTOCOLS)}, not {protocol!r}")
        self.ledger = ledger or Ledger(options)
        self.protocol = PROTOCOLS[protocol](self.ledger, merchant_public_key, alipay_private_key, clock)
        self.files_dir = files_dir
        self.merchant_id = merchant_id
        self.stats = GatewayStats()
        writer = self.write_files if files_dir is not None else None
        super().__init__(build_app(self.protocol, writer, self.stats), host, port, name="pos-sandbox",
                         ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, http="httptools")
        if isinstance(self.protocol, AmsSandbox):   # its cashier pages (the order code) name this server
            self.protocol.public_url = self.url

    def write_files(self, day: date, family: str = "2.0.4") -> list[str]:
        """The day's files under <files_dir>/download/<merchant_id>/<YYYYMMDD>/, as Alipay's server lays them out."""
        if self.files_dir is None:
            raise ValueError("this sandbox writes no files (no files_dir)")
        folder = self.files_dir / "download" / (self.merchant_id or "SANDBOX") / f"{day:%Y%m%d}"
        return [p.name for p in self.ledger.export_files(folder, day, family=family, merchant_id=self.merchant_id)]

    def start(self, timeout: float = 10.0) -> SandboxServer:
        super().start(timeout)
        return self

    def stop(self) -> None:
        super().stop()
        close = getattr(self.protocol, "close", None)   # a protocol that sends on its own (notifications)
        if callable(close):
            close()

    def __enter__(self) -> SandboxServer:
        return self.start()

"""The gateway clients' one HTTP transport (offline and v1 protocols): POST bytes, get an answer or why not.

Kept connections, TLS verified against a CA bundle fixed at start, no
redirects, no retries. Everything `requests` used to recompute on every call
(proxy and no_proxy environment, .netrc, CA bundle variables: about 2.7 ms a
call) is settled once, when the client is made:

- CA bundle: `REQUESTS_CA_BUNDLE` or `CURL_CA_BUNDLE` when set (a file or a
  folder), else certifi's bundle, exactly as requests chose it
  (`SSL_CERT_FILE` is not read, as requests did not read it either);
- proxy: `[gateway] proxy` when set, else the proxy environment
  (`HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`, `NO_PROXY`) as it is at start;
  a gateway on this machine (the sandbox) is never reached through a proxy.

A gateway reached directly (the sale path of most stores, and the sandbox) is
spoken to on the standard library (`_Direct`): a socket per call in flight,
kept between calls, TLS by `ssl` (the bundle above, host name checked, TLS 1.2
at least), the request written in one send (headers and body), the answer
read by `http.client.HTTPResponse`. It replaced urllib3's connection pool
there because the pool's Python cost more than the round trip it carried: on
loopback 0.20 ms a call (0.14 ms of CPU) through the pool against 0.10 ms
(0.05 ms of CPU) here, and urllib3 wrote headers and body in two sends, two
segments that wake the gateway twice. What the pool did for us is done here
too: an idle connection the gateway has closed is noticed before a request
is written on it (it is readable: the gateway's FIN) and a new one is made;
once a request is written it is never written again, so a failure after that
is Unknown, not a retry (a pay is never sent twice); a connection carries one
call at a time and goes back only when its answer was read whole and the
gateway keeps it open. Through a proxy, urllib3's ProxyManager carries the call
as before (CONNECT for an https gateway, the proxy's credentials, an https
proxy), with the same deadline.

Each call has an overall deadline of connect + read timeout, however slowly its
answer comes: the read timeout bounds each wait for a byte, not the answer, so
an answer trickling in one byte a second would hold a sale for minutes. When
the deadline passes, the sockets the call uses are shut down. An answer is read
to MAX_ANSWER + 1 bytes at most; a longer one is cut and its connection closed.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pos import __version__
from pos.core.outcomes import Unknown

__all__ = ["MAX_ANSWER", "Reply", "Transport", "ca_bundle", "proxy_for"]

# Largest answer we read. Real answers are a few KiB; anything near this is
# not the gateway talking, and reading it whole would cost the till memory.
MAX_ANSWER = 256 * 1024
_USER_AGENT = f"pos-terminal/{__version__}"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: its status, at most MAX_ANSWER + 1 bytes of its body, and its headers."""

    status: int
    body: bytes
    headers: dict[str, str]


# -- the call deadline --------------------------------------------------------

_current = threading.local()


class _Watch:
    """The connections one call uses; its deadline shuts them down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: list[Any] = []
        self.expired = False

    def add(self, conn: Any) -> None:
        with self._lock:
            self._conns.append(conn)
            if self.expired:
                _shut(conn)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for conn in self._conns:
                _shut(conn)


class _Deadlines:
    """One thread that expires the watches of calls past their deadline.

    A thread per call (threading.Timer) cost about 0.15 ms of CPU a call; this one
    sleeps until the soonest deadline of the calls in flight (a few at most), and a
    call wakes it only when its deadline comes before the moment the thread already
    sleeps until. A disarmed deadline does not wake it either: the thread wakes then
    as planned and finds nothing due. So a call answered in time costs no thread
    switch in the common case (calls seconds apart from deadlines seconds long wake
    it about once per deadline, not once per call).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, _Watch]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self._wakes_at: float | None = None   # when the thread wakes next on its own (None: never)

    def arm(self, seconds: float, watch: _Watch) -> int:
        when = time.monotonic() + seconds
        with self._cond:
            if self._thread is None or not self._thread.is_alive():   # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="pos-gateway-deadlines", daemon=True)
                self._thread.start()
            self._next += 1
            self._armed[self._next] = (when, watch)
            if self._wakes_at is None or when < self._wakes_at:
                self._wakes_at = when
                self._cond.notify()
            return self._next

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)   # the thread finds it gone when it wakes

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (when, watch) in list(self._armed.items()):
                    if when <= now:
                        del self._armed[token]
                        watch.expire()
                self._wakes_at = min((w for w, _ in self._armed.values()), default=None)
                self._cond.wait(None if self._wakes_at is None else max(self._wakes_at - now, 0.0))


_deadlines = _Deadlines()


def _shut(conn: Any) -> None:
    sock = conn if isinstance(conn, socket.socket) else getattr(conn, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _watched(conn: Any) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.add(conn)


class _WatchedHTTP(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _watched(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watched(self)  # a kept-alive connection is not connected again
        super().request(*args, **kwargs)


class _WatchedHTTPS(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watched(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watched(self)
        super().request(*args, **kwargs)


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTP


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


# -- settled once per client ----------------------------------------------------

def ca_bundle(environ: Mapping[str, str] | None = None) -> str:
    """The CA bundle (file or folder) TLS answers are verified against, chosen as requests chose it."""
    env = os.environ if environ is None else environ
    chosen = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
    if chosen:
        return chosen
    import certifi

    return str(certifi.where())


def _is_loopback(host: str) -> bool:
    import ipaddress

    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def proxy_for(url: str, configured: str = "") -> str:
    """The proxy URL a call to `url` goes through ('' = direct): `configured`, else the environment's."""
    host = urlsplit(url).hostname or ""
    if _is_loopback(host):
        return ""
    if configured:
        return configured
    import urllib.request

    proxies = urllib.request.getproxies()
    scheme = urlsplit(url).scheme
    chosen = proxies.get(scheme) or proxies.get("all") or ""
    if chosen and urllib.request.proxy_bypass(host):
        return ""
    return chosen


def _pool(proxy: str, ca: str, maxsize: int) -> urllib3.PoolManager:
    verify: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
    verify["ca_cert_dir" if os.path.isdir(ca) else "ca_certs"] = ca
    if proxy:
        parts = urlsplit(proxy)
        headers: dict[str, str] = {}
        if parts.username is not None:
            user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Proxy-Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
        bare = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        manager: urllib3.PoolManager = urllib3.ProxyManager(bare, num_pools=2, maxsize=maxsize,
                                                            proxy_headers=headers, **verify)
    else:
        manager = urllib3.PoolManager(num_pools=2, maxsize=maxsize, **verify)
    manager.pool_classes_by_scheme = {"http": _WatchedPool, "https": _WatchedHTTPSPool}
    return manager


# -- direct: one kept connection per call in flight, on the standard library ------

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(r"[\r\n\0]")   # a value that would end the header early
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_SET_BY_US = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class _Target:
    """What a URL settles once: where to connect and the request's first lines."""

    origin: tuple[str, str, int]   # scheme, host, port: the kept connections' key
    head: bytes                    # request line, Host and Accept-Encoding


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname
    if scheme not in ("http", "https") or not host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if _BAD_TARGET.search(path) or _BAD_TARGET.search(host):
        raise ValueError(f"URL with spaces or control characters: {url!r}")
    shown = f"[{host}]" if ":" in host else host
    if parts.port is not None and parts.port != (443 if scheme == "https" else 80):
        shown += f":{port}"
    head = f"POST {path} HTTP/1.1\r\nHost: {shown}\r\nAccept-Encoding: identity\r\n".encode("ascii")
    return _Target((scheme, host, port), head)


def _tls_context(ca: str) -> ssl.SSLContext:
    """Verified TLS as urllib3 made it: the CA bundle, the host name checked, TLS 1.2 at least."""
    folder = os.path.isdir(ca)
    context = ssl.create_default_context(cafile=None if folder else ca, capath=ca if folder else None)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def _dropped(sock: socket.socket) -> bool:
    """True when an idle kept connection can no longer carry a request: the gateway closed it
    (or sent something unasked). Checked before a request is written, never after, as urllib3 does."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _answer_headers(message: Any) -> dict[str, str]:
    """The answer's headers, a repeated one joined with ', ' under its first spelling (as urllib3 did)."""
    headers: dict[str, str] = {}
    names: dict[str, str] = {}
    for name, value in message.items():
        key = name.lower()
        if key in names:
            headers[names[key]] += ", " + value
        else:
            names[key] = name
            headers[name] = value
    return headers


def _decoded(raw: bytes, encoding: str) -> bytes:
    """A gzip or deflate body decoded (at most MAX_ANSWER + 1 bytes), as urllib3 decoded it; else as is."""
    encoding = encoding.strip().lower()
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return raw
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
    try:
        return zlib.decompressobj(wbits).decompress(raw, MAX_ANSWER + 1)
    except zlib.error:
        if encoding == "deflate":   # raw deflate, without the zlib header, as some servers send it
            return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, MAX_ANSWER + 1)
        raise


class _Direct:
    """Kept connections to the gateway, each used by one call at a time (http.client reads the answers).

    A call takes an idle connection (one the gateway has not closed meanwhile) or
    connects a new one, writes the request, headers and body, in one send, reads
    the answer, and gives the connection back only when the answer was read whole
    and the gateway keeps it open.
    """

    def __init__(self, ca: str, maxsize: int) -> None:
        self._ca = ca
        self._context: ssl.SSLContext | None = None   # made at the first https call
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[socket.socket]] = {}
        self._targets: dict[str, _Target] = {}
        self._closed = False

    def _take(self, origin: tuple[str, str, int]) -> socket.socket | None:
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                sock = idle.pop() if idle else None
            if sock is None or not _dropped(sock):
                return sock
            _close(sock)   # closed by the gateway while idle: nothing was sent on it

    def give_back(self, origin: tuple[str, str, int], sock: socket.socket) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self._maxsize:
                idle.append(sock)
                return
        _close(sock)

    def _connect(self, origin: tuple[str, str, int], timeout: float, watch: _Watch) -> socket.socket:
        scheme, host, port = origin
        sock = socket.create_connection((host, port), timeout)
        watch.add(sock)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                if self._context is None:
                    self._context = _tls_context(self._ca)
                tls = self._context.wrap_socket(sock, server_hostname=host)
                watch.add(tls)
                return tls
        except BaseException:
            _close(sock)
            raise
        return sock

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float],
             watch: _Watch) -> tuple[Reply | Unknown, tuple[tuple[str, str, int], socket.socket] | None]:
        """The answer, and the connection to keep when it may carry the next call."""
        try:
            target = self._targets.get(url) or self._targets.setdefault(url, _target(url))
            request = _request(target, body, headers)
        except ValueError as exc:
            return Unknown(f"transport error: {exc}", no_answer=True), None
        sock = self._take(target.origin)
        if sock is None:
            try:
                sock = self._connect(target.origin, timeout[0], watch)
            except TimeoutError:
                return Unknown("timeout", no_answer=True), None
            except (OSError, ValueError) as exc:   # refused, unresolvable, TLS not verified
                return Unknown(f"connection error: {type(exc).__name__}", no_answer=True), None
        else:
            watch.add(sock)
        keep = False
        try:
            sock.settimeout(timeout[1])
            sock.sendall(request)   # from here on the gateway may have it: never sent again
            response = http.client.HTTPResponse(sock, method="POST")
            try:
                response.begin()
                raw = response.read(MAX_ANSWER + 1)   # an answer is a few KiB; never read an endless one
                if len(raw) <= MAX_ANSWER:
                    if response.chunked:
                        complete = response.isclosed()
                    elif response.length is not None:
                        complete = response.length == 0
                    else:
                        complete = True   # ended by the gateway closing the connection
                    if not complete:
                        raise http.client.IncompleteRead(raw)
                    keep = not response.will_close and (response.chunked or response.length is not None)
                encoding = response.getheader("Content-Encoding")
                if encoding and len(raw) <= MAX_ANSWER:   # a cut answer stays too large, whatever it holds
                    raw = _decoded(raw, encoding)
                reply = Reply(response.status, raw, _answer_headers(response.msg))
            finally:
                response.close()   # its buffered reader only; the socket stays ours
        except (http.client.HTTPException, OSError, ValueError, zlib.error) as exc:
            _close(sock)   # whatever it carries now is not the next answer
            if isinstance(exc, TimeoutError) or "timed out" in str(exc).lower():
                return Unknown("timeout", no_answer=True), None
            return Unknown(f"transport error: {type(exc).__name__}", no_answer=True), None
        if not keep:
            _close(sock)
            return reply, None
        return reply, (target.origin, sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [sock for socks in self._idle.values() for sock in socks]
            self._idle.clear()
        for sock in idle:
            _close(sock)


def _request(target: _Target, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The whole request, headers and body, for one send (a second segment wakes the gateway twice)."""
    lines = [target.head]
    for name, value in {"User-Agent": _USER_AGENT, "Accept": "*/*", **headers}.items():
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value) or name.lower() in _SET_BY_US:
            raise ValueError(f"header {name!r} refused")
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
    lines.append(body)
    return b"".join(lines)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


# -- the transport ----------------------------------------------------------------------

class Transport:
    """POSTs to one gateway (`base_url`) over kept, verified connections.

    `post` never raises for network trouble: it returns the `Reply`, or an
    `Unknown` (no_answer) saying why there is none. Thread-safe; a call from
    another thread while one is in flight gets a connection of its own.
    A gateway reached directly goes through `_Direct` (the standard library's
    http.client reads its answers); through a proxy, urllib3's ProxyManager
    (CONNECT for https, the proxy's credentials, an https proxy).
    """

    def __init__(self, base_url: str, *, proxy: str = "", maxsize: int = 4) -> None:
        self.proxy = proxy_for(base_url, proxy)
        ca = ca_bundle()
        self._direct = None if self.proxy else _Direct(ca, maxsize)
        self._pool = _pool(self.proxy, ca, maxsize) if self.proxy else None

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout: tuple[float, float]) -> Reply | Unknown:
        """One POST with connect/read timeouts and an overall deadline of their sum."""
        watch = _Watch()
        deadline = sum(timeout)   # the whole call: connect, then read
        token = _deadlines.arm(deadline, watch)
        kept = None
        try:
            if self._direct is not None:
                answer, kept = self._direct.post(url, body, headers, timeout, watch)
            else:
                _current.watch = watch
                answer = self._proxied(url, body, headers, timeout)
        finally:
            _deadlines.disarm(token)
            _current.watch = None
        if watch.expired:
            if kept is not None:
                _close(kept[1])
            return Unknown(f"no complete answer within the call deadline ({deadline:g} s)", no_answer=True)
        if kept is not None and self._direct is not None:
            self._direct.give_back(*kept)
        return answer

    def _proxied(self, url: str, body: bytes, headers: Mapping[str, str],
                 timeout: tuple[float, float]) -> Reply | Unknown:
        assert self._pool is not None
        sent = {"User-Agent": _USER_AGENT, "Accept": "*/*", **headers}
        try:
            response = self._pool.urlopen(
                "POST", url, body=body, headers=sent, redirect=False, retries=False,
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
                preload_content=False, assert_same_host=False)
            try:
                # An answer is a few KiB; never read an endless one into memory.
                raw = response.read(MAX_ANSWER + 1, decode_content=True)
                if len(raw) <= MAX_ANSWER:
                    response.drain_conn()   # the rest (nothing, normally): the connection is kept
                else:
                    response.close()   # unread bytes on it: never reused
            finally:
                response.release_conn()
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.SSLError,
                urllib3.exceptions.ProxyError, ConnectionError) as exc:
            # before TimeoutError: urllib3's NewConnectionError is a ConnectTimeoutError too
            return Unknown(f"connection error: {type(exc).__name__}", no_answer=True)
        except urllib3.exceptions.TimeoutError:
            return Unknown("timeout", no_answer=True)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if "timed out" in str(exc).lower():
                return Unknown("timeout", no_answer=True)
            return Unknown(f"transport error: {type(exc).__name__}", no_answer=True)
        return Reply(response.status, raw, dict(response.headers))

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        if self._pool is not None:
            self._pool.clear()

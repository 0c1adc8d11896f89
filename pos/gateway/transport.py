"""The gateway clients' one HTTP transport (offline and v1 protocols): POST bytes, get an answer or why not.

One persistent urllib3 connection pool per client: keep-alive, TLS verified
against a CA bundle fixed at start, no redirects, no retries. Everything
`requests` used to recompute on every call (proxy and no_proxy environment,
.netrc, CA bundle variables: about 2.7 ms a call) is settled once, when the
client is made:

- CA bundle: `REQUESTS_CA_BUNDLE` or `CURL_CA_BUNDLE` when set (a file or a
  folder), else certifi's bundle, exactly as requests chose it
  (`SSL_CERT_FILE` is not read, as requests did not read it either);
- proxy: `[gateway] proxy` when set, else the proxy environment
  (`HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`, `NO_PROXY`) as it is at start;
  a gateway on this machine (the sandbox) is never reached through a proxy.

Each call has an overall deadline of connect + read timeout, however slowly its
answer comes: urllib3's read timeout bounds each wait for a byte, not the
answer, so an answer trickling in one byte a second would hold a sale for
minutes. When the deadline passes, the sockets the call uses are shut down.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
import time
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
    sock = getattr(conn, "sock", None)
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


class Transport:
    """POSTs to one gateway (`base_url`) over a persistent, verified, keep-alive connection pool.

    `post` never raises for network trouble: it returns the `Reply`, or an
    `Unknown` (no_answer) saying why there is none. Thread-safe; a call from
    another thread while one is in flight gets a connection of its own.
    """

    def __init__(self, base_url: str, *, proxy: str = "", maxsize: int = 4) -> None:
        self.proxy = proxy_for(base_url, proxy)
        self._pool = _pool(self.proxy, ca_bundle(), maxsize)

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout: tuple[float, float]) -> Reply | Unknown:
        """One POST with connect/read timeouts and an overall deadline of their sum."""
        watch = _current.watch = _Watch()
        deadline = sum(timeout)   # the whole call: connect, then read
        token = _deadlines.arm(deadline, watch)
        try:
            answer = self._post(url, body, headers, timeout)
        finally:
            _deadlines.disarm(token)
            _current.watch = None
        if watch.expired:
            return Unknown(f"no complete answer within the call deadline ({deadline:g} s)", no_answer=True)
        return answer

    def _post(self, url: str, body: bytes, headers: Mapping[str, str],
              timeout: tuple[float, float]) -> Reply | Unknown:
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
        self._pool.clear()

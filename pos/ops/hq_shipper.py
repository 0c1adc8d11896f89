"""Shipping the journal's outbox to the chain's headquarters ([hq] in the config).

A thread of its own: it reads a batch from the outbox (pos/journal/outbox.py),
POSTs it with the terminal's credential, and deletes what headquarters
acknowledged. A sale never waits on it: the outbox row is written by the
journal in the sale's own transaction, and the shipper only holds the
journal's lock for the short SELECT and DELETE around each batch.

Headquarters down: the shipper waits longer and longer (doubling, up to
[hq] backoff_max) and keeps the events; the terminal keeps selling. Every
request carries a heartbeat (the terminal's health), so a shipment with no
events still tells headquarters the terminal is alive. When more than
[hq] backlog_alarm events are waiting the terminal raises an alarm (shown in
its health); the events stay in the journal, which keeps everything anyway.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from pos.config import HqSection
from pos.core.errors import ConfigError
from pos.journal import outbox
from pos.journal.db import JournalDB

__all__ = ["HqShipper", "ShipError", "read_hq_cert", "read_hq_token"]

log = logging.getLogger("pos.ops.hq_shipper")


class ShipError(Exception):
    """A batch did not reach headquarters (it stays in the outbox)."""


def read_hq_token(path_text: str) -> str:
    path = Path(path_text)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"[hq] token_file {path} is missing: put the credential 'pos hq add-terminal' "
                          "printed in it (mode 0600)") from None
    except OSError as exc:
        raise ConfigError(f"[hq] token_file {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise ConfigError(f"[hq] token_file {path}: the credential is too short: copy the whole line "
                          "'pos hq add-terminal' printed")
    return token


def read_hq_cert(settings: HqSection) -> tuple[str, str]:
    """[hq] cert_file and key_file, checked: both there, the key private (0600)."""
    for key, path_text in (("cert_file", settings.cert_file), ("key_file", settings.key_file)):
        path = Path(path_text)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(f"[hq] {key} {path} is missing: copy the files 'pos hq add-terminal --cert' "
                              "wrote at headquarters") from None
        except OSError as exc:
            raise ConfigError(f"[hq] {key} {path}: {exc.strerror}") from None
        if key == "key_file" and mode & 0o077:
            raise ConfigError(f"[hq] key_file {path} has mode {mode & 0o777:04o}: run 'chmod 600 {path}'")
    return settings.cert_file, settings.key_file


class HqShipper:
    def __init__(self, db: JournalDB, settings: HqSection, *, token: str | None, terminal_id: str, install_id: str,
                 alarm: Callable[[str], None] = lambda text: None,
                 health: Callable[[], dict[str, Any]] | None = None) -> None:
        self._db = db
        self._cfg = settings
        self._terminal_id = terminal_id
        self._install_id = install_id
        self._alarm = alarm
        self._health = health
        self._session = requests.Session()
        if settings.cert_file:
            # The client certificate is the credential: HQ maps it to this terminal.
            self._session.cert = read_hq_cert(settings)
        elif token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        # Given on each request: a session's own `verify` loses to REQUESTS_CA_BUNDLE in the environment.
        self._verify: str | bool = settings.ca_file or True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._alarmed = False
        self.shipped = 0
        self.last_ok: float | None = None
        self.last_error: str | None = None

    # ------------------------------------------------------------ one batch

    def ship_once(self) -> int:
        """Send the oldest batch (or just a heartbeat); returns how many events headquarters took."""
        batch = outbox.pending(self._db, self._cfg.batch_size)
        waiting = outbox.backlog(self._db)
        self._check_backlog(waiting)
        # What will still wait once this batch is in.
        heartbeat: dict[str, Any] = {"at": time.time(), "backlog": max(waiting - len(batch), 0)}
        if self._health is not None:
            try:
                heartbeat["health"] = self._health()
            except Exception as exc:  # health is a courtesy; the events matter
                heartbeat["health"] = {"status": "unknown", "error": str(exc)}
        body = {"terminal_id": self._terminal_id, "install_id": self._install_id,
                "events": [e.wire() for e in batch], "heartbeat": heartbeat}
        try:
            r = self._session.post(f"{self._cfg.url}/v1/ingest", json=body, timeout=self._cfg.timeout,
                                   verify=self._verify)
        except requests.exceptions.SSLError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ShipError(f"headquarters {self._cfg.url}: its certificate is not trusted: set [hq] ca_file "
                                "to the CA certificate that signed it") from None
            raise ShipError(f"headquarters {self._cfg.url} refused the TLS connection (a client certificate "
                            "it does not accept?): check [hq] cert_file and key_file") from None
        except requests.RequestException as exc:
            # TLS 1.3: a certificate the server refuses may surface after the handshake, as a dropped connection.
            hint = (" (or it refused this terminal's certificate: check [hq] cert_file)"
                    if self._cfg.cert_file and isinstance(exc, requests.ConnectionError) else "")
            raise ShipError(f"headquarters {self._cfg.url} is not reachable{hint}: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise ShipError(f"headquarters answered {r.status_code}: {r.text[:200]}")
        if batch:
            outbox.acknowledge(self._db, batch[-1].seq)
        self.shipped += len(batch)
        self.last_ok, self.last_error = time.time(), None
        return len(batch)

    def _check_backlog(self, waiting: int) -> None:
        if waiting > self._cfg.backlog_alarm and not self._alarmed:
            self._alarmed = True
            self._alarm(f"{waiting} events wait to be shipped to headquarters ({self._cfg.url}): "
                        "check the network and the headquarters service")
        elif waiting <= self._cfg.backlog_alarm // 2:
            self._alarmed = False

    # ------------------------------------------------------------ the thread

    def start(self) -> HqShipper:
        self._thread = threading.Thread(target=self._run, name="pos-hq-shipper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._cfg.timeout + 2)
        self._session.close()

    def _run(self) -> None:
        delay = min(1.0, self._cfg.interval)
        while not self._stop.is_set():
            try:
                sent = self.ship_once()
            except ShipError as exc:
                if self.last_error is None:
                    log.warning("shipping to headquarters failed", extra={"kv": {"error": str(exc)}})
                self.last_error = str(exc)
                self._stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._cfg.backoff_max)
                continue
            except Exception as exc:  # the journal said no: keep trying, never take the daemon down
                self.last_error = str(exc)
                log.error("shipping to headquarters failed", extra={"kv": {"error": str(exc)}})
                self._stop.wait(self._cfg.interval)
                continue
            delay = min(1.0, self._cfg.interval)
            if sent < self._cfg.batch_size:
                self._stop.wait(self._cfg.interval)

"""The barcode scanner: pure framing (`ScanFramer`) apart from reading (`Scanner`).

Like pyserial's `serial.threaded.LineReader`, the framer is a pure object: bytes
in, events out, time from an injected clock. It never raises on input: junk is
an event (`Rejected`) naming the reason and the display message to show, and
the reader goes on reading.

A line is accepted when, after the configured prefix/suffix and an AIM
symbology identifier ("]" + letter + modifier, e.g. "]Q1" QR, "]E0" EAN,
"]C0" Code 128) are stripped, it is either

- a payment code: 16-32 ASCII digits starting 25-30 (reference §15: Alipay CN
  16-24, AlipayHK 17-19, Alipay+ up to 32, prefix 25..30), giving `Scan(code)`;
- a receipt code: `RECEIPT_CODE_PREFIX` + merchantTransId (what receipts print
  as QR/barcode so a manager can scan a sale to refund it), giving
  `ReceiptScan(merchant_trans_id)`.

The same code twice within `dedupe_window` seconds counts once (scanners in
continuous mode read a phone screen several times). The window runs from the
end of the first one's handling: the daemon's handler sends a scan's pay on
the reading thread, so a repeat read meanwhile waits in the serial buffer and
is framed only after the pay's answer, however long that took.

`Scanner` owns the port: `serial.serial_for_url(url)` so any pyserial URL
works (device path, pty, socket://, rfc2217://, loop://). When the device goes
away it reports `ScannerLost`, retries with exponential backoff between
reconnect_min and reconnect_max, and reports `ScannerBack` once reopened.

Payment codes are bearer tokens: `Scan.__repr__` and every log line show the
last 4 digits only.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import serial

from devices.receipt_code import RECEIPT_CODE_PREFIX, parse_receipt_code

__all__ = [
    "Scan",
    "ReceiptScan",
    "Rejected",
    "ScannerLost",
    "ScannerBack",
    "ScanEvent",
    "ScannerEvent",
    "ScanFramer",
    "Scanner",
    "open_scanner",
    "is_payment_code",
    "RECEIPT_CODE_PREFIX",
]

log = logging.getLogger(__name__)

# Reference §15: accept 16-24 digits starting 25-30 and be ready for up to 32.
_PAYMENT_CODE = re.compile(r"(?:2[5-9]|30)[0-9]{14,30}")
_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")
MIN_CODE_DIGITS, MAX_CODE_DIGITS = 16, 32
# A partial line with no terminator for this long is dropped: scanners send a
# whole code in one burst (32 bytes take 33 ms at 9600 baud).
PARTIAL_LINE_TIMEOUT = 1.0
SCAN_INVALID = "scan_invalid"


def is_payment_code(text: str) -> bool:
    return bool(_PAYMENT_CODE.fullmatch(text)) and text.isascii()


@dataclass(frozen=True)
class Scan:
    """A well-formed payment code. repr shows the last 4 digits only."""

    code: str = field(repr=False)

    @property
    def last4(self) -> str:
        return self.code[-4:]

    def __repr__(self) -> str:
        # The last 4 digits only; how a masked code is written is pos.core.redact's business.
        return f"Scan(ending={self.last4!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class ReceiptScan:
    """A receipt's QR/barcode: the sale to refund or reprint."""

    merchant_trans_id: str


@dataclass(frozen=True)
class Rejected:
    """A line that is not a code. `reason` is for logs, `message_key` for the display."""

    reason: str
    message_key: str = SCAN_INVALID


@dataclass(frozen=True)
class ScannerLost:
    """The scanner disappeared (unplugged, read error, socket closed)."""

    reason: str
    message_key: str = "scanner_lost"


@dataclass(frozen=True)
class ScannerBack:
    """The scanner is connected again after ScannerLost."""

    message_key: str = "scanner_back"


ScanEvent = Scan | ReceiptScan | Rejected
ScannerEvent = Scan | ReceiptScan | Rejected | ScannerLost | ScannerBack

_TERMINATORS: dict[str, tuple[bytes, ...]] = {
    "CR": (b"\r",), "LF": (b"\n",), "CRLF": (b"\r\n",), "ANY": (b"\r", b"\n"),
}


class ScanFramer:
    """Bytes in, `ScanEvent`s out. Pure: no I/O, time from `clock`."""

    def __init__(self, *, terminator: str = "ANY", prefix: str = "", suffix: str = "",
                 strip_aim: bool = True, dedupe_window: float = 2.0, max_line: int = 128,
                 clock: Callable[[], float] = time.monotonic,
                 partial_line_timeout: float = PARTIAL_LINE_TIMEOUT) -> None:
        if terminator not in _TERMINATORS:
            raise ValueError(f"terminator must be one of {', '.join(_TERMINATORS)}, got {terminator!r}")
        self._terminators = _TERMINATORS[terminator]
        self._prefix = prefix
        self._suffix = suffix
        self._strip_aim = strip_aim
        self._dedupe_window = dedupe_window
        self._max_line = max_line
        self._clock = clock
        self._partial_timeout = partial_line_timeout
        self._buffer = bytearray()
        self._discarding = False      # inside an over-long line: drop until a terminator
        self._partial_since: float | None = None
        self._last: tuple[Any, float] | None = None

    @classmethod
    def from_settings(cls, settings: Any, *, clock: Callable[[], float] = time.monotonic) -> ScanFramer:
        return cls(terminator=settings.terminator, prefix=settings.prefix, suffix=settings.suffix,
                   strip_aim=settings.strip_aim, dedupe_window=settings.dedupe_window,
                   max_line=settings.max_line, clock=clock)

    def feed(self, data: bytes) -> list[ScanEvent]:
        """Take bytes from the port; return the events they complete."""
        events: list[ScanEvent] = []
        if data:
            self._buffer += data
            if self._partial_since is None:
                self._partial_since = self._clock()
        while True:
            end, term_len = self._find_terminator()
            if end < 0:
                break
            line = bytes(self._buffer[:end])
            del self._buffer[:end + term_len]
            self._partial_since = self._clock() if self._buffer else None
            if self._discarding:
                self._discarding = False
                continue
            event = self._line(line)
            if event is not None:
                events.append(event)
        if len(self._buffer) > self._max_line:
            if not self._discarding:
                events.append(Rejected("too_long"))
                self._discarding = True
            self._buffer.clear()
        return events

    def idle(self) -> list[ScanEvent]:
        """Call when no bytes came for a while: drop a line that never ended."""
        if self._partial_since is None or not self._buffer and not self._discarding:
            return []
        if self._clock() - self._partial_since < self._partial_timeout:
            return []
        self._buffer.clear()
        self._partial_since = None
        if self._discarding:
            self._discarding = False
            return []
        return [Rejected("no_terminator")]

    def _find_terminator(self) -> tuple[int, int]:
        best = -1
        length = 0
        for term in self._terminators:
            i = self._buffer.find(term)
            if i >= 0 and (best < 0 or i < best):
                best, length = i, len(term)
        return best, length

    def _line(self, raw: bytes) -> ScanEvent | None:
        if not raw.strip(b" \t\r\n"):
            return None  # the LF of a CRLF under ANY, or a blank line: not a scan
        if len(raw) > self._max_line:
            return Rejected("too_long")
        if b"\x00" in raw:
            return Rejected("nul_byte")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Rejected("not_utf8")
        text = text.strip(" \t\r\n")
        if self._prefix and text.startswith(self._prefix):
            text = text[len(self._prefix):]
        if self._suffix and text.endswith(self._suffix):
            text = text[:-len(self._suffix)]
        if self._strip_aim and _AIM.match(text):
            text = text[3:]
        event = self._classify(text)
        if isinstance(event, Rejected):
            return event
        return self._dedupe(event)

    @staticmethod
    def _classify(text: str) -> ScanEvent:
        if is_payment_code(text):
            return Scan(text)
        if text.startswith(RECEIPT_CODE_PREFIX):
            trans_id = parse_receipt_code(text)
            return ReceiptScan(trans_id) if trans_id else Rejected("bad_receipt_code")
        if not text.isascii() or not text.isdigit():
            return Rejected("not_digits")
        if not MIN_CODE_DIGITS <= len(text) <= MAX_CODE_DIGITS:
            return Rejected("bad_length")
        return Rejected("bad_prefix")

    def handled(self, event: ScannerEvent) -> None:
        """`event`'s handling ended now: its repeats are counted from here (see the module's text)."""
        if self._last is not None and self._last[0] == event:
            self._last = (event, self._clock())

    def _dedupe(self, event: ScanEvent) -> ScanEvent | None:
        now = self._clock()
        if (self._last is not None and self._last[0] == event
                and now - self._last[1] < self._dedupe_window):
            return None
        self._last = (event, now)
        return event


def _describe(event: ScannerEvent) -> str:
    return repr(event)  # Scan's repr is masked


class Scanner:
    """Reads a serial scanner on a thread and hands events to `on_event`.

    `on_event` runs on the reader thread, which reads nothing more until it returns: what the
    scanner sends meanwhile waits in the serial buffer (the daemon's handler sends a scan's pay
    there, the sale's path without a hand-off). A repeat of a code handled meanwhile still
    counts once (`ScanFramer.handled`).
    """

    def __init__(self, settings: Any, on_event: Callable[[ScannerEvent], None], *,
                 clock: Callable[[], float] = time.monotonic, poll_interval: float = 0.1,
                 name: str = "scanner") -> None:
        self._settings = settings
        self._on_event = on_event
        self._framer = ScanFramer.from_settings(settings, clock=clock)
        self._poll = poll_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._port: serial.SerialBase | None = None
        self._port_lock = threading.Lock()
        self._name = name
        self.connected = threading.Event()

    def start(self) -> Scanner:
        if self._thread is not None:
            raise RuntimeError("scanner already started")
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the reader thread and close the port."""
        self._stop.set()
        with self._port_lock:
            port = self._port
        if port is not None:
            with contextlib.suppress(Exception):  # not every backend can cancel; the poll ends it
                port.cancel_read()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Scanner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _emit(self, event: ScannerEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # a bad handler must not kill the reader
            log.exception("scanner event handler failed event=%s", _describe(event))
        self._framer.handled(event)

    def _open(self) -> serial.SerialBase:
        s = self._settings
        return serial.serial_for_url(
            s.url, baudrate=s.baudrate, bytesize=s.bytesize, parity=s.parity,
            stopbits=s.stopbits, timeout=self._poll)

    def _run(self) -> None:
        lost = False
        delay = self._settings.reconnect_min
        while not self._stop.is_set():
            try:
                port = self._open()
            except (serial.SerialException, OSError, ValueError) as exc:
                if not lost:
                    lost = True
                    log.warning("scanner not available url=%s error=%s", self._settings.url, exc)
                    self._emit(ScannerLost(f"cannot open {self._settings.url}: {exc}"))
                self._stop.wait(delay)
                delay = min(delay * 2, self._settings.reconnect_max)
                continue
            with self._port_lock:
                self._port = port
            self.connected.set()
            delay = self._settings.reconnect_min
            if lost:
                lost = False
                log.info("scanner connected again url=%s", self._settings.url)
                self._emit(ScannerBack())
            reason = self._read_until_error(port)
            self.connected.clear()
            with self._port_lock:
                self._port = None
            with contextlib.suppress(Exception):  # the device is already gone
                port.close()
            if reason is not None and not self._stop.is_set():
                lost = True
                log.warning("scanner lost url=%s error=%s", self._settings.url, reason)
                self._emit(ScannerLost(reason))
                self._stop.wait(delay)
                delay = min(delay * 2, self._settings.reconnect_max)

    def _read_until_error(self, port: serial.SerialBase) -> str | None:
        while not self._stop.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                return f"read failed: {exc}"
            except (TypeError, AttributeError) as exc:
                # pyserial's socket:// backend raises these once the socket is closed
                return f"read failed: {exc}"
            events = self._framer.feed(data) if data else self._framer.idle()
            for event in events:
                if isinstance(event, Rejected):
                    log.info("scan refused reason=%s", event.reason)
                else:
                    log.info("scan accepted event=%s", _describe(event))
                self._emit(event)
        return None


def open_scanner(settings: Any, on_event: Callable[[ScannerEvent], None]) -> Scanner | None:
    """The scanner named by a [scanner] config section (not started), or None for kind = "none"."""
    if settings.kind == "none":
        return None
    return Scanner(settings, on_event)

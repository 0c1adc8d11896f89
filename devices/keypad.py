"""The keypad: digits, '.', ENTER, CANCEL, CLEAR and the function keys.

Serial keypads send one byte per key. Which byte means which key comes from
a map: the default below fits keypads (and terminals) that send ASCII, and
[keypad] keymap in the config adds or overrides entries as two hex digits ->
key name, e.g. { "F1" = "REFUND" }. Key names are the `Key` member names
(DIGIT_0..DIGIT_9 or just "0".."9", DOT, ENTER, CANCEL, CLEAR, REFUND,
REPRINT, REPORT, QR). Unknown bytes are ignored (logged at DEBUG).

`SerialKeypad` reads with `serial.serial_for_url` on a thread and calls
`on_key(Key)`; `ConsoleKeypad` reads stdin with the same map (type "12.50"
and Enter). Both have `stop()`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, TextIO

import serial

__all__ = [
    "Key",
    "DEFAULT_KEYMAP",
    "KEY_NAMES",
    "parse_keymap",
    "keymap_from_settings",
    "Keypad",
    "SerialKeypad",
    "ConsoleKeypad",
    "NullKeypad",
    "open_keypad",
]

log = logging.getLogger(__name__)


class Key(StrEnum):
    DIGIT_0 = "0"
    DIGIT_1 = "1"
    DIGIT_2 = "2"
    DIGIT_3 = "3"
    DIGIT_4 = "4"
    DIGIT_5 = "5"
    DIGIT_6 = "6"
    DIGIT_7 = "7"
    DIGIT_8 = "8"
    DIGIT_9 = "9"
    DOT = "."
    ENTER = "ENTER"
    CANCEL = "CANCEL"
    CLEAR = "CLEAR"
    REFUND = "REFUND"
    REPRINT = "REPRINT"
    REPORT = "REPORT"
    QR = "QR"          # the customer scans the terminal's code (a "scan to pay" slip) instead

    @property
    def char(self) -> str | None:
        """'0'..'9' or '.' for keys that type a character, else None."""
        return self.value if len(self.value) == 1 else None

    @classmethod
    def from_name(cls, name: str) -> Key:
        if name in cls.__members__:
            return cls[name]
        return cls(name)  # "0".."9", "."


KEY_NAMES = frozenset(Key.__members__) | {k.value for k in Key}

DEFAULT_KEYMAP: dict[int, Key] = {
    **{ord(str(d)): Key(str(d)) for d in range(10)},
    ord("."): Key.DOT,
    0x0D: Key.ENTER, 0x0A: Key.ENTER,
    0x1B: Key.CANCEL,
    0x08: Key.CLEAR, 0x7F: Key.CLEAR,
    ord("r"): Key.REFUND, ord("p"): Key.REPRINT, ord("x"): Key.REPORT, ord("q"): Key.QR,
}


def parse_keymap(entries: Mapping[str, str]) -> dict[int, Key]:
    """Config keymap (two hex digits -> key name) over the default map.

    Raises ValueError naming the bad entry and what is expected.
    """
    keymap = dict(DEFAULT_KEYMAP)
    for byte_text, name in entries.items():
        if len(byte_text) != 2 or any(c not in "0123456789abcdefABCDEF" for c in byte_text):
            raise ValueError(f"keymap key {byte_text!r}: expected a byte as two hex digits, e.g. \"0D\"")
        if name not in KEY_NAMES:
            raise ValueError(f"keymap {byte_text!r} = {name!r}: expected a key name, one of "
                             + ", ".join(Key.__members__))
        keymap[int(byte_text, 16)] = Key.from_name(name)
    return keymap


def keymap_from_settings(settings: Any) -> dict[int, Key]:
    return parse_keymap(getattr(settings, "keymap", {}) or {})


class Keypad(ABC):
    """Common part of the keypad readers: a thread calling on_key."""

    def __init__(self, on_key: Callable[[Key], None], keymap: Mapping[int, Key] | None = None) -> None:
        self._on_key = on_key
        self._keymap = dict(keymap if keymap is not None else DEFAULT_KEYMAP)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Keypad:
        if self._thread is not None:
            raise RuntimeError("keypad already started")
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Keypad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bytes(self, data: bytes) -> None:
        for b in data:
            key = self._keymap.get(b)
            if key is None:
                log.debug("keypad byte ignored byte=%02X", b)
                continue
            try:
                self._on_key(key)
            except Exception:  # a bad handler must not kill the reader
                log.exception("keypad handler failed key=%s", key.name)

    @abstractmethod
    def _run(self) -> None:
        """The reader loop: decode bytes into keys until stop()."""


class SerialKeypad(Keypad):
    """A keypad on any pyserial URL; reopens the port if it goes away."""

    def __init__(self, url: str, on_key: Callable[[Key], None], *, baudrate: int = 9600,
                 keymap: Mapping[int, Key] | None = None, poll_interval: float = 0.1,
                 retry_interval: float = 1.0) -> None:
        super().__init__(on_key, keymap)
        self.url = url
        self.baudrate = baudrate
        self._poll = poll_interval
        self._retry = retry_interval
        self.connected = threading.Event()

    def _run(self) -> None:
        reported = False
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=self._poll)
            except (serial.SerialException, OSError, ValueError) as exc:
                if not reported:
                    log.warning("keypad not available url=%s error=%s", self.url, exc)
                    reported = True
                self._stop.wait(self._retry)
                continue
            reported = False
            self.connected.set()
            try:
                while not self._stop.is_set():
                    self._bytes(port.read(max(1, port.in_waiting)))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                log.warning("keypad lost url=%s error=%s", self.url, exc)
                self._stop.wait(self._retry)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):  # the device is already gone
                    port.close()


class ConsoleKeypad(Keypad):
    """Keys typed on the console (stdin), through the same byte map."""

    def __init__(self, on_key: Callable[[Key], None], *, stream: TextIO | None = None,
                 keymap: Mapping[int, Key] | None = None, poll_interval: float = 0.1) -> None:
        super().__init__(on_key, keymap)
        self._stream = stream
        self._poll = poll_interval

    def _run(self) -> None:
        stream = self._stream or sys.stdin
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        if fd is None:  # an in-memory stream (tests): read it to the end
            for line in stream:
                if self._stop.is_set():
                    return
                self._bytes(line.encode("utf-8", errors="replace"))
            return
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], self._poll)
            if not ready:
                continue
            data = os.read(fd, 1024)
            if not data:
                return  # end of input
            self._bytes(data)


class NullKeypad(Keypad):
    """kind = "none"."""

    def _run(self) -> None:
        self._stop.wait()


def open_keypad(settings: Any, on_key: Callable[[Key], None]) -> Keypad:
    """The keypad named by a [keypad] config section (not started)."""
    keymap = keymap_from_settings(settings)
    if settings.kind == "serial":
        return SerialKeypad(settings.url, on_key, baudrate=settings.baudrate, keymap=keymap)
    if settings.kind == "console":
        return ConsoleKeypad(on_key, keymap=keymap)
    return NullKeypad(on_key, keymap)

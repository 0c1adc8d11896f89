"""The 2x20 customer display: one interface, a serial driver and its twins.

Serial displays (VFD/LCD pole displays from Epson, Bixolon, Partner and
generic "ESC/POS" clones) share this command set, sent through
`serial.serial_for_url` so any pyserial URL works:

| bytes            | hex               | meaning                                    |
| ---------------- | ----------------- | ------------------------------------------ |
| ESC @            | 1B 40             | initialise: clear screen, cursor home       |
| FF               | 0C                | clear screen, cursor home                   |
| VT               | 0B                | cursor home (column 1, line 1)              |
| US $ x y         | 1F 24 x y         | move cursor to column x (1-20), line y (1-2) |
| text             | (encoded)         | written at the cursor, which moves right    |

`show(line1, line2)` writes each line at its own position, padded with spaces
to 20 columns, so old text is overwritten without a clear (no flicker). Text
is encoded in the configured encoding (GB18030 by default: Chinese displays
take two bytes and two columns per Hanzi); widths are wcwidth's (`devices.messages.char_width`)
(CJK = 2 columns), lines are cut at 20 columns without splitting a wide
character, and a character the encoding cannot carry becomes '?' per column.

A display fault never reaches the caller: the driver logs it, drops the port
and reopens it on the next `show`. A write waits at most `write_timeout`
(0.5 s) for a display that does not read (a pole display that stopped, a USB
cable pulled mid-frame); `DisplayWriter` feeds a display from its own thread
so that even that wait is never the caller's. A display whose writes have no
timeout of their own (the console: a stdout nobody reads blocks for ever) is
watched by its writer: a write that has not returned within `STALL_AFTER`
seconds is reported like a serial write that timed out, until it returns.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TextIO

import serial

from devices.messages import char_width

__all__ = [
    "Display",
    "SerialDisplay",
    "ConsoleDisplay",
    "RecordingDisplay",
    "NullDisplay",
    "DisplayWriter",
    "open_display",
    "fit_line",
    "encode_line",
    "COLUMNS",
    "STALL_AFTER",
    "ESC_INIT",
    "CLEAR",
    "HOME",
    "position",
]

log = logging.getLogger(__name__)

COLUMNS = 20
LINES = 2
ESC_INIT = b"\x1b\x40"
CLEAR = b"\x0c"
HOME = b"\x0b"
# A write still under way after this many seconds: the display is reported as not reading.
STALL_AFTER = 2.0


def position(column: int, line: int) -> bytes:
    """US $ x y: cursor to 1-based column and line."""
    return bytes((0x1F, 0x24, column, line))


def _char_width(ch: str) -> int:
    w = char_width(ch)
    return w if w > 0 else (0 if w == 0 else 1)


def fit_line(text: str, columns: int = COLUMNS, encoding: str | None = None) -> str:
    """Cut or pad text to exactly `columns` display columns.

    Control characters become '?', and with an encoding, characters it cannot
    carry become '?' repeated to keep their width.
    """
    if text.isascii() and text.isprintable():
        # The common case (prompts, amounts): one column a character, as the loop below would count. An
        # encoding that cannot carry one of them (cp864 has no '%') takes the loop, which writes '?'.
        cut = text[:columns]
        try:
            if encoding is not None:
                cut.encode(encoding)
            return cut + " " * (columns - len(cut))
        except UnicodeEncodeError:
            pass
    out: list[str] = []
    used = 0
    for ch in text:
        if ch < " " or "\x7f" <= ch <= "\x9f":  # C0, DEL and C1 control characters
            ch = "?"
        width = _char_width(ch)
        if width == 0:
            continue  # combining marks: the display cannot compose them
        if encoding is not None:
            try:
                ch.encode(encoding)
            except UnicodeEncodeError:
                ch = "?" * width
        if used + width > columns:
            break
        out.append(ch)
        used += width
    return "".join(out) + " " * (columns - used)


@functools.lru_cache(maxsize=256)  # a sale shows the same lines again and again (prompts, its amount)
def encode_line(text: str, encoding: str, columns: int = COLUMNS) -> bytes:
    return fit_line(text, columns, encoding).encode(encoding)


class Display(ABC):
    """A two-line character display."""

    columns = COLUMNS
    # Why the last show() did not reach the device (None: it did); kept by displays that can fail.
    last_error: str | None = None
    # What to do about a display whose write does not return (DisplayWriter's stall report).
    stall_hint = "check that it is powered and its cable"

    @abstractmethod
    def show(self, line1: str, line2: str) -> None:
        """Show two lines, each cut or padded to the display width."""

    def show_at_once(self, line1: str, line2: str) -> bool:
        """Show two lines only if the device takes the whole frame at once, without waiting (a
        non-blocking write); False: it would wait, or took part of the frame (then the next `show`
        sends the rest first), or cannot be written this way (the default): call `show`."""
        return False

    def show_text(self, label: str, text: str) -> None:  # noqa: B027 - a default: a 2x20 display has no room
        """A text longer than two lines (a QR code's content), where the display can show it whole:
        the console draws it under its box; a 2x20 device shows nothing more."""

    def close(self) -> None:  # noqa: B027 - a default: most displays hold nothing to release
        """Release the device."""

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialDisplay(Display):
    """A serial 2x20 display with the ESC/POS-style command set (see module doc)."""

    def __init__(self, url: str, *, baudrate: int = 9600, encoding: str = "GB18030",
                 write_timeout: float = 0.5) -> None:
        "".encode(encoding)  # unknown encoding: fail at start-up, not on the first sale
        self.url = url
        self.baudrate = baudrate
        self.encoding = encoding
        self._write_timeout = write_timeout
        self._port: serial.SerialBase | None = None
        self._fd: int | None = None   # the open port's descriptor when it is non-blocking (show_at_once)
        self._rest = b""              # the part of a frame show_at_once could not write: sent first
        self._lock = threading.Lock()
        self.last: tuple[str, str] | None = None
        # Why the last write failed (None after a good one): for health checks.
        self.last_error: str | None = None

    def _open(self) -> serial.SerialBase:
        port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0,
                                     write_timeout=self._write_timeout)
        port.write(ESC_INIT)
        return port

    def frame(self, line1: str, line2: str) -> bytes:
        """The bytes `show` sends for two lines."""
        return (position(1, 1) + encode_line(line1, self.encoding)
                + position(1, 2) + encode_line(line2, self.encoding))

    def show(self, line1: str, line2: str) -> None:
        data = self.frame(line1, line2)
        with self._lock:
            if self._rest:   # the frame show_at_once began is finished first (only its rest, if it is this one)
                data = self._rest if self.last == (line1, line2) else self._rest + data
                self._rest = b""
            self.last = (line1, line2)
            try:
                if self._port is None:
                    self._port = self._open()
                    self._fd = _nonblocking_fd(self._port)
                # No flush(): tcdrain has no timeout, and a display whose handshake line is down would
                # hold it for ever. write() returns once the kernel holds the frame, or after write_timeout.
                self._port.write(data)
                self.last_error = None
            except (serial.SerialException, OSError, ValueError) as exc:
                if isinstance(exc, serial.SerialTimeoutException):
                    exc = TimeoutError(f"{self.url} took nothing for {self._write_timeout:g} s: the display "
                                       "does not read: check that it is powered and its cable")
                if self.last_error is None:  # once per outage, not once per message
                    log.warning("display write failed url=%s error=%s (will reopen on next message)",
                                self.url, exc)
                self.last_error = str(exc)
                self._drop()

    def show_at_once(self, line1: str, line2: str) -> bool:
        # Never waits: not for the lock (a show under way), not for the device (EAGAIN: it is full).
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._fd is None or self._rest or self.last_error is not None:
                return False
            data = self.frame(line1, line2)
            try:
                written = os.write(self._fd, data)
            except OSError:   # full (EAGAIN), or a fault: show() meets it and reports it
                return False
            self.last = (line1, line2)
            if written < len(data):
                self._rest = data[written:]
                return False
            return True
        finally:
            self._lock.release()

    def clear(self) -> None:
        with self._lock:
            self._rest = b""   # a half-written frame is cleared with the rest of the screen
            try:
                if self._port is None:
                    self._port = self._open()
                    self._fd = _nonblocking_fd(self._port)
                self._port.write(CLEAR)
            except (serial.SerialException, OSError, ValueError) as exc:
                log.warning("display clear failed url=%s error=%s", self.url, exc)
                self._drop()

    def _drop(self) -> None:
        self._fd, self._rest = None, b""   # a reopened port starts with ESC @: no half frame to finish
        if self._port is not None:
            with contextlib.suppress(Exception):  # the device is already gone
                self._port.close()
            self._port = None

    def close(self) -> None:
        with self._lock:
            self._drop()


class DisplayWriter(Display):
    """Feeds a display from its own thread: `show` never waits for the device.

    A screen asked for while the writer has nothing to do is written by the caller
    itself when the device takes the whole frame at once without waiting
    (`Display.show_at_once`: a non-blocking write to a serial port or pty): no
    thread is woken for it. Otherwise (the device would wait, took part of the
    frame, or is failing) the screen goes to the writer thread as below, which
    sends what was not written first; the two never write at the same time, so
    screens reach the device in the order they were asked for.

    One slot holds the screen still to be written, and a newer screen replaces it
    (the latest screen wins): a display that stops reading holds back only
    itself, never a sale, the other display or the till interface. While the
    device fails, the writer sends the latest screen again every `retry`
    seconds, so a display that reads again shows the current screen.
    A write that has not returned after `stall_after` seconds (a console whose
    stdout nobody reads has no write timeout) is noticed by a watcher thread and
    reported the same way until it returns; the report comes `stall_after`
    seconds after the write started (plus the moment the watcher takes to be
    scheduled), as it would from a thread woken at every write.
    `last_error` names the display; `on_change` is called (from the writer's
    or the watcher's thread, one call at a time) whenever it changes.

    Cost per screen (a sale shows several on each display): `show` wakes the
    writer only when it sleeps; a screen asked for while a write is under way
    is picked up after it without a wake. The watcher is not woken per write:
    it sleeps until the deadline of the write it saw under way, or for
    `stall_after` after it saw writes, and sleeps until the next write starts
    only once a whole `stall_after` passed without one; so on a busy display it
    wakes about once per `stall_after` seconds, on a quiet one never.
    """

    def __init__(self, device: Display, name: str, *, retry: float = 1.0, stall_after: float = STALL_AFTER,
                 on_change: Callable[[], None] | None = None) -> None:
        self.device = device
        self.name = name
        self.columns = device.columns
        self._retry = retry
        self._stall_after = stall_after
        self._on_change = on_change
        self._notify_lock = threading.Lock()           # on_change calls, one at a time
        # Everything below is read and written under _lock, held for a few lines and never across a write
        # that may wait, or a wait (show_at_once's non-blocking write is made under it). Each thread sleeps
        # on its own bell (a SimpleQueue: a ring is never lost, even one rung before its thread gets to
        # wait), and is rung only when its flag says it sleeps on it.
        self._lock = threading.Lock()
        self._screen: tuple[str, str] | None = None     # the latest screen asked for
        self._text: tuple[str, str] | None = None       # a show_text still to write, under that screen
        self._dirty = False
        self._closed = False
        self._writer_asleep = False                     # the writer waits on _writer_bell
        self._writer_bell: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._busy_since: float | None = None           # monotonic start of the write under way
        self._stalled = False                           # that write was reported as stalled
        self._started = 0                               # writes started so far (the watcher's "any since?")
        self._watcher_asleep = False                    # the watcher waits, with no deadline, on _watcher_bell
        self._watcher_bell: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self.last_error: str | None = None
        self.writes = 0                                 # screens handed to the device (for tests and bench)
        self.direct_writes = 0                          # of which written by show's caller (show_at_once)

    def show(self, line1: str, line2: str) -> None:
        with self._lock:
            if (not self._dirty and self._busy_since is None and self.last_error is None and not self._closed
                    and self.device.show_at_once(line1, line2)):
                self._screen, self._text = (line1, line2), None
                self.writes += 1
                self.direct_writes += 1
                return
            self._screen, self._text, self._dirty = (line1, line2), None, True
            ring = self._writer_to_ring()
        if ring:        # after the lock is released: the writer, once woken, takes it at once
            self._writer_bell.put(None)

    def show_text(self, label: str, text: str) -> None:
        with self._lock:
            self._text, self._dirty = (label, text), True
            ring = self._writer_to_ring()
        if ring:
            self._writer_bell.put(None)

    @property
    def current(self) -> tuple[str, str] | None:
        """The screen the display shows, or will show once it reads."""
        with self._lock:
            return self._screen

    def _writer_to_ring(self) -> bool:
        """Under _lock, after new work: whether the writer must be woken (it sleeps, and is now counted awake).
        A writer that is awake needs no wake: it looks at the slot before it sleeps again."""
        if self._closed:
            return False
        if self._thread is None:     # the first screen: the threads start, and the writer finds it
            self._thread = threading.Thread(target=self._run, name=f"display-{self.name}", daemon=True)
            self._thread.start()
            self._watcher = threading.Thread(target=self._watch, name=f"display-{self.name}-watch", daemon=True)
            self._watcher.start()
            return False
        ring, self._writer_asleep = self._writer_asleep, False
        return ring

    def _changed(self) -> None:
        """Tell on_change; one call at a time, each reading the state as it is when it runs."""
        if self._on_change is not None:
            with self._notify_lock:
                self._on_change()

    def _watch(self) -> None:
        """Report a write that has not returned after stall_after seconds (until it returns)."""
        seen = -1           # the writes started when the watcher last looked
        while True:
            error = None
            with self._lock:
                wait: float | None
                if self._busy_since is None:
                    if self._closed:
                        return
                    if self._started != seen:       # writes since the last look: the next may start any moment
                        seen, wait = self._started, self._stall_after
                    else:                           # a quiet stall_after: the next write to start rings
                        self._watcher_asleep, wait = True, None
                elif self._stalled:                 # reported; its return is the writer's to report
                    seen = self._started
                    self._watcher_asleep, wait = True, None
                else:
                    seen = self._started
                    wait = self._busy_since + self._stall_after - time.monotonic()
                    if wait <= 0:
                        self._stalled = True
                        error = (f"{self.name} display: a write has not returned for {self._stall_after:g} s: "
                                 f"the display does not read: {self.device.stall_hint}")
                        self.last_error = error
            if error is not None:
                log.warning("display not taking data name=%s error=%s", self.name, error)
                self._changed()
                continue
            # Every timed wait ends at most stall_after from now, so a write that starts during it is looked
            # at before its own deadline; a wait with none ends only by a ring.
            with contextlib.suppress(queue.Empty):
                self._watcher_bell.get(timeout=wait)

    def _take(self) -> tuple[tuple[str, str] | None, tuple[str, str] | None] | None:
        """Wait for something to write and mark its write as started; None once closed with nothing left."""
        job: tuple[tuple[str, str] | None, tuple[str, str] | None] | None = None
        timed_out = False
        while True:
            with self._lock:
                self._writer_asleep = False
                if timed_out:       # still failing after `retry`: try the latest screen again
                    self._dirty = self._dirty or self._screen is not None
                if self._dirty:     # what was asked before close() is written first
                    job = self._screen, self._text
                    self._text, self._dirty = None, False
                    self._busy_since, self._stalled = time.monotonic(), False
                    self._started += 1
                    ring_watcher, self._watcher_asleep = self._watcher_asleep, False
                    break
                if self._closed:
                    ring_watcher = True     # it ends too, whatever it waits for
                    break
                self._writer_asleep = True
                wait = self._retry if self.last_error is not None else None
            try:
                self._writer_bell.get(timeout=wait)
                timed_out = False
            except queue.Empty:
                timed_out = True
        if ring_watcher:
            self._watcher_bell.put(None)
        return job

    def _run(self) -> None:
        while (job := self._take()) is not None:
            screen, text = job
            error: str | None
            try:
                if screen is not None:
                    self.device.show(*screen)
                    self.writes += 1
                error = self.device.last_error
                if text is not None and error is None:
                    self.device.show_text(*text)
            except Exception as exc:  # a display fault never reaches anyone but its health line
                error = str(exc) or type(exc).__name__
            if error is not None:
                error = f"{self.name} display: {error}"
            with self._lock:
                self._busy_since = None   # from here on the watcher reports nothing for this write
                changed = error != self.last_error
                self.last_error = error
            if changed:
                if error is not None:
                    log.warning("display not taking data name=%s error=%s", self.name, error)
                else:
                    log.info("display back name=%s", self.name)
                self._changed()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the writer (waiting at most `timeout` for a write under way), then release the device."""
        with self._lock:
            self._closed = True
            ring, self._writer_asleep = self._writer_asleep, False
            thread = self._thread
        if ring:
            self._writer_bell.put(None)
        if thread is not None:
            thread.join(timeout)
        self.device.close()


def _nonblocking_fd(port: serial.SerialBase) -> int | None:
    """The descriptor of a port opened non-blocking (pyserial's POSIX ports are), else None."""
    fd = getattr(port, "fd", None)
    if not isinstance(fd, int):
        return None
    try:
        return None if os.get_blocking(fd) else fd
    except OSError:
        return None


class ConsoleDisplay(Display):
    """The display drawn as a framed 2x20 box on a text stream (development, `pos demo`).

    A write has no timeout: a stream nobody reads (a full pipe, a stopped terminal) blocks it, and
    its DisplayWriter reports that."""

    stall_hint = ("nothing reads its output (standard output, or the pipe or terminal it goes to): "
                  "check what reads the daemon's output")

    def __init__(self, stream: TextIO | None = None, *, title: str = "display") -> None:
        self._stream = stream
        self.title = title
        self._lock = threading.Lock()

    def render(self, line1: str, line2: str) -> str:
        top = "+-" + self.title[: COLUMNS - 2].ljust(COLUMNS - 1, "-") + "+"
        return "\n".join([top, "|" + fit_line(line1) + "|", "|" + fit_line(line2) + "|",
                          "+" + "-" * COLUMNS + "+"]) + "\n"

    def show(self, line1: str, line2: str) -> None:
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(self.render(line1, line2))
            stream.flush()

    def show_text(self, label: str, text: str) -> None:
        stream = self._stream or sys.stdout
        clean = "".join("?" if ch < " " or "\x7f" <= ch <= "\x9f" else ch for ch in text)
        with self._lock:
            stream.write(f"  {label}: {clean}\n")
            stream.flush()


class RecordingDisplay(Display):
    """Keeps every (line1, line2) it was asked to show, already fitted to 20 columns."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []
        self.texts: list[tuple[str, str]] = []   # (label, text) given to show_text

    def show(self, line1: str, line2: str) -> None:
        self.shown.append((fit_line(line1).rstrip(), fit_line(line2).rstrip()))

    def show_text(self, label: str, text: str) -> None:
        self.texts.append((label, text))

    @property
    def current(self) -> tuple[str, str] | None:
        return self.shown[-1] if self.shown else None


class NullDisplay(Display):
    """kind = "none": no display attached."""

    def show(self, line1: str, line2: str) -> None:
        return None


def open_display(settings: Any, *, title: str = "display", stream: TextIO | None = None) -> Display:
    """The display named by a [display] config section."""
    if settings.kind == "serial":
        return SerialDisplay(settings.url, baudrate=settings.baudrate,
                             encoding=getattr(settings, "encoding", "GB18030"))
    if settings.kind == "console":
        return ConsoleDisplay(stream, title=title)
    return NullDisplay()

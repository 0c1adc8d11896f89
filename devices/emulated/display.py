"""An emulated 2x20 display: reads the pty master and decodes the commands
(see devices.display) back into the two lines a customer would see."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable

from wcwidth import wcwidth

from devices.emulated.pty import PtyDevice

__all__ = ["EmulatedDisplay", "decode_display_bytes"]

COLUMNS, LINES = 20, 2


def decode_display_bytes(data: bytes, encoding: str = "GB18030") -> tuple[str, str]:
    """Replay display command bytes onto a 2x20 screen; return its two lines (right-trimmed)."""
    cells = [[" "] * COLUMNS for _ in range(LINES)]
    x = y = 0

    def clear() -> None:
        nonlocal x, y
        for row in cells:
            row[:] = [" "] * COLUMNS
        x = y = 0

    i = 0
    text = bytearray()

    def flush_text() -> None:
        nonlocal x, y
        for ch in bytes(text).decode(encoding, errors="replace"):
            w = max(wcwidth(ch), 1)
            if x + w > COLUMNS:
                continue  # a real display drops what runs off the line
            cells[y][x] = ch
            if w == 2:
                cells[y][x + 1] = ""
            x += w
        text.clear()

    while i < len(data):
        b = data[i]
        if b == 0x1B and data[i + 1:i + 2] == b"@":
            flush_text()
            clear()
            i += 2
        elif b == 0x0C:
            flush_text()
            clear()
            i += 1
        elif b == 0x0B:
            flush_text()
            x = y = 0
            i += 1
        elif b == 0x1F and data[i + 1:i + 2] == b"$" and i + 3 < len(data):
            flush_text()
            x = min(max(data[i + 2], 1), COLUMNS) - 1
            y = min(max(data[i + 3], 1), LINES) - 1
            i += 4
        elif b == 0x0D:
            flush_text()
            x = 0
            i += 1
        elif b == 0x0A:
            flush_text()
            y = min(y + 1, LINES - 1)
            i += 1
        else:
            text.append(b)
            i += 1
    flush_text()
    line1, line2 = ("".join(row).rstrip() for row in cells)
    return line1, line2


class EmulatedDisplay(PtyDevice):
    """The driver opens `path`; `poll()` returns what the screen shows now."""

    def __init__(self, name: str = "display", directory: str | os.PathLike[str] | None = None,
                 *, encoding: str = "GB18030") -> None:
        super().__init__(name, directory)
        self.encoding = encoding
        self.received = bytearray()

    def poll(self, timeout: float = 0.0) -> tuple[str, str]:
        self.received += self.read(timeout)
        return decode_display_bytes(bytes(self.received), self.encoding)

    def wait_for(self, predicate: Callable[[tuple[str, str]], bool], timeout: float = 5.0) -> tuple[str, str]:
        """Poll until predicate(lines) holds or timeout passes; return the last lines."""
        deadline = time.monotonic() + timeout
        lines = self.poll()
        while not predicate(lines) and time.monotonic() < deadline:
            lines = self.poll(0.05)
        return lines

    def stop_reading(self) -> int:
        """Act as a display that stopped reading: fill the pty's buffer (with a stale screen), so the
        driver's next write waits and times out. `poll` reads again. Returns the bytes queued."""
        slave = self._slave
        assert slave is not None, "plug the display first"
        frame = b"\x1f\x24\x01\x01" + b"stale".ljust(COLUMNS) + b"\x1f\x24\x01\x02" + b" " * COLUMNS
        flags = fcntl.fcntl(slave, fcntl.F_GETFL)
        fcntl.fcntl(slave, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        queued, idle_rounds = 0, 0
        try:
            while idle_rounds < 5:   # the kernel moves bytes between the pty's buffers later: fill until it stops
                before = queued
                with contextlib.suppress(BlockingIOError):
                    while True:
                        queued += os.write(slave, frame)
                idle_rounds = idle_rounds + 1 if queued == before else 0
                time.sleep(0.05)
        finally:
            fcntl.fcntl(slave, fcntl.F_SETFL, flags)
        return queued

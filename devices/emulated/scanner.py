"""An emulated serial barcode scanner: codes written into a pty."""

from __future__ import annotations

import os

from devices.emulated.pty import PtyDevice

__all__ = ["EmulatedScanner"]

_TERMINATORS = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "": b""}


class EmulatedScanner(PtyDevice):
    """`scan("2812345678901234")` sends what a USB-serial scanner would."""

    def __init__(self, name: str = "scanner", directory: str | os.PathLike[str] | None = None,
                 *, terminator: str = "CR", aim: str = "", prefix: str = "", suffix: str = "") -> None:
        super().__init__(name, directory)
        self.terminator = terminator
        self.aim = aim
        self.prefix = prefix
        self.suffix = suffix

    def scan(self, code: str, *, aim: str | None = None, terminator: str | None = None) -> None:
        """Send one code as the scanner would frame it (prefix, AIM id, code, suffix, terminator)."""
        aim_id = self.aim if aim is None else aim
        term = _TERMINATORS[self.terminator if terminator is None else terminator]
        self.write((self.prefix + aim_id + code + self.suffix).encode("utf-8") + term)

    def send_raw(self, data: bytes) -> None:
        """Send arbitrary bytes (noise, half codes) to test the framer."""
        self.write(data)

"""Emulated twins of the terminal's devices, so the real drivers run unchanged.

- `pty.PtyDevice`: a pseudo-terminal (os.openpty) behind a stable symlink path;
  "unplug" closes it, "replug" makes a new pty and re-points the symlink, so a
  driver that reopens the same path finds the new device.
- `EmulatedScanner`, `EmulatedDisplay`, `EmulatedKeypad`: pty twins.
- `EmulatedNetworkPrinter`: a TCP server on 127.0.0.1 (port 0) that records
  what it receives, can be switched off and on, and can answer status queries.
- `escpos_text.escpos_to_text`: what an ESC/POS printer would show, as text.
"""

from devices.emulated.display import EmulatedDisplay, decode_display_bytes
from devices.emulated.escpos_text import escpos_to_text
from devices.emulated.keypad import EmulatedKeypad
from devices.emulated.network_printer import EmulatedNetworkPrinter
from devices.emulated.pty import PtyDevice
from devices.emulated.scanner import EmulatedScanner

__all__ = [
    "PtyDevice",
    "EmulatedScanner",
    "EmulatedDisplay",
    "EmulatedKeypad",
    "EmulatedNetworkPrinter",
    "escpos_to_text",
    "decode_display_bytes",
]

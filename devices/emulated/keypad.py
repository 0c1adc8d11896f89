"""An emulated serial keypad: key presses written into a pty."""

from __future__ import annotations

import os

from devices.emulated.pty import PtyDevice
from devices.keypad import DEFAULT_KEYMAP, Key

__all__ = ["EmulatedKeypad"]

_BYTE_FOR_KEY: dict[Key, int] = {}
for _byte, _key in DEFAULT_KEYMAP.items():
    _BYTE_FOR_KEY.setdefault(_key, _byte)


class EmulatedKeypad(PtyDevice):
    """`press(Key.DIGIT_1, Key.ENTER)` or `type("12.50")` sends the default-map bytes."""

    def __init__(self, name: str = "keypad", directory: str | os.PathLike[str] | None = None,
                 *, byte_for_key: dict[Key, int] | None = None) -> None:
        super().__init__(name, directory)
        self._map = dict(_BYTE_FOR_KEY)
        self._map.update(byte_for_key or {})

    def press(self, *keys: Key) -> None:
        self.write(bytes(self._map[k] for k in keys))

    def type(self, text: str) -> None:
        """Digits and '.' of text, one key each."""
        self.press(*(Key(ch) for ch in text))

"""Keypad: byte maps, the serial reader on a real pty, and the console reader."""

from __future__ import annotations

import io
import os
import queue
import threading
from types import SimpleNamespace

import pytest

from devices.emulated import EmulatedKeypad
from devices.keypad import DEFAULT_KEYMAP, ConsoleKeypad, Key, SerialKeypad, open_keypad, parse_keymap


def test_default_map() -> None:
    assert DEFAULT_KEYMAP[ord("5")] is Key.DIGIT_5
    assert DEFAULT_KEYMAP[0x0D] is Key.ENTER and DEFAULT_KEYMAP[0x0A] is Key.ENTER
    assert DEFAULT_KEYMAP[0x1B] is Key.CANCEL
    assert DEFAULT_KEYMAP[0x08] is Key.CLEAR and DEFAULT_KEYMAP[0x7F] is Key.CLEAR
    assert DEFAULT_KEYMAP[ord("r")] is Key.REFUND
    assert DEFAULT_KEYMAP[ord("p")] is Key.REPRINT and DEFAULT_KEYMAP[ord("x")] is Key.REPORT
    assert Key.DOT.char == "." and Key.ENTER.char is None


def test_config_map_overrides_and_bad_entries_are_named() -> None:
    m = parse_keymap({"F1": "REFUND", "0d": "CANCEL", "41": "7"})
    assert m[0xF1] is Key.REFUND and m[0x0D] is Key.CANCEL and m[0x41] is Key.DIGIT_7
    with pytest.raises(ValueError, match="two hex digits"):
        parse_keymap({"F": "ENTER"})
    with pytest.raises(ValueError, match="key name"):
        parse_keymap({"F1": "PAY"})


def test_serial_keypad_over_a_pty(tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys: queue.Queue[Key] = queue.Queue()
    dev = EmulatedKeypad(directory=tmp_path)
    pad = SerialKeypad(dev.path, keys.put, keymap=parse_keymap({"F1": "REFUND"}), poll_interval=0.02,
                       retry_interval=0.05)
    try:
        pad.start()
        assert pad.connected.wait(5)
        dev.type("12.50")
        dev.press(Key.ENTER, Key.CANCEL, Key.CLEAR, Key.REPRINT, Key.REPORT)
        dev.write(b"\xf1\x00Z")  # F1 = REFUND from config; NUL and Z are unknown: ignored
        got = [keys.get(timeout=5) for _ in range(11)]
        assert got == [Key.DIGIT_1, Key.DIGIT_2, Key.DOT, Key.DIGIT_5, Key.DIGIT_0, Key.ENTER,
                       Key.CANCEL, Key.CLEAR, Key.REPRINT, Key.REPORT, Key.REFUND]
        # unplug / replug: the reader reopens the same path
        dev.unplug()
        for _ in range(500):
            if not pad.connected.is_set():
                break
            threading.Event().wait(0.01)
        assert not pad.connected.is_set()
        dev.plug()
        assert pad.connected.wait(5)
        dev.press(Key.DIGIT_9)
        assert keys.get(timeout=5) is Key.DIGIT_9
    finally:
        pad.stop()
        dev.close()
    assert keys.empty()


def test_console_keypad_reads_a_pipe_with_the_same_map() -> None:
    keys: list[Key] = []
    done = threading.Event()
    r, w = os.pipe()
    with os.fdopen(r, "r") as stream:
        def on_key(k: Key) -> None:
            keys.append(k)
            if k is Key.ENTER:
                done.set()
        pad = ConsoleKeypad(on_key, stream=stream, poll_interval=0.02)
        pad.start()
        os.write(w, b"7.5x\n")
        assert done.wait(5)
        pad.stop()
        os.close(w)
    assert keys == [Key.DIGIT_7, Key.DOT, Key.DIGIT_5, Key.REPORT, Key.ENTER]


def test_console_keypad_in_memory_stream_and_open_keypad() -> None:
    keys: list[Key] = []
    pad = ConsoleKeypad(keys.append, stream=io.StringIO("3r\n"))
    pad.start()
    pad.stop()
    assert keys == [Key.DIGIT_3, Key.REFUND, Key.ENTER]
    s = SimpleNamespace(kind="serial", url="/nonexistent", baudrate=9600, keymap={"F3": "REPORT"})
    assert isinstance(open_keypad(s, keys.append), SerialKeypad)

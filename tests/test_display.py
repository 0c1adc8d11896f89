"""The 2x20 display: the serial driver over a real pty, decoded back by the twin."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from types import SimpleNamespace

import pytest

from devices.display import (
    CLEAR,
    ESC_INIT,
    ConsoleDisplay,
    DisplayWriter,
    NullDisplay,
    RecordingDisplay,
    SerialDisplay,
    fit_line,
    open_display,
    position,
)
from devices.emulated import EmulatedDisplay, decode_display_bytes
from devices.messages import Catalogue, text_width


@pytest.fixture
def emulated(tmp_path):  # type: ignore[no-untyped-def]
    dev = EmulatedDisplay(directory=tmp_path)
    yield dev
    dev.close()


def test_fit_line_pads_and_cuts_by_columns() -> None:
    assert fit_line("Ready") == "Ready" + " " * 15
    assert fit_line("x" * 25) == "x" * 20
    assert text_width(fit_line("请在支付宝中确认付款了吗")) == 20          # 11 Hanzi cut to 10
    assert fit_line("a请" * 7) == "a请" * 6 + "a "                       # no half Hanzi
    assert fit_line("tab\there") == "tab?here" + " " * 12
    assert fit_line("€5", encoding="ascii") == "?5" + " " * 18


def test_command_bytes() -> None:
    d = SerialDisplay("loop://", encoding="GB18030")
    frame = d.frame("Hi", "谢谢")
    assert frame == (b"\x1f\x24\x01\x01" + b"Hi" + b" " * 18
                     + b"\x1f\x24\x01\x02" + "谢谢".encode("gb18030") + b" " * 16)
    assert position(3, 2) == b"\x1f$\x03\x02"
    assert decode_display_bytes(ESC_INIT + frame) == ("Hi", "谢谢")
    assert decode_display_bytes(frame + CLEAR) == ("", "")


def test_serial_display_over_a_pty_shows_both_lines(emulated: EmulatedDisplay) -> None:
    d = SerialDisplay(emulated.path, encoding="GB18030")
    try:
        d.show("Scan customer code", "SGD 1234.56")
        assert emulated.wait_for(lambda shown: shown == ("Scan customer code", "SGD 1234.56"))[1] == "SGD 1234.56"
        assert emulated.received.startswith(ESC_INIT)
        d.show("支付成功", "SGD 1234.56")
        assert emulated.wait_for(lambda shown: shown[0] == "支付成功") == ("支付成功", "SGD 1234.56")
        d.show("A much longer line than twenty", "")
        assert emulated.wait_for(lambda shown: shown[0].startswith("A much")) == ("A much longer line t", "")
    finally:
        d.close()


def test_every_catalogue_message_round_trips_through_the_display(emulated: EmulatedDisplay) -> None:
    d = SerialDisplay(emulated.path, encoding="GB18030")
    try:
        for lang in ("en", "zh-CN"):
            cat = Catalogue.load(lang)
            for key in ("checking", "paid", "code.USER_BALANCE_NOT_ENOUGH"):
                lines = cat.customer(key, amount="SGD 1234.56")
                d.show(*lines)
                expected = tuple(line.rstrip() for line in lines)
                assert emulated.wait_for(lambda shown, want=expected: shown == want) == expected
    finally:
        d.close()


def test_display_unplugged_does_not_raise_and_recovers(emulated: EmulatedDisplay) -> None:
    d = SerialDisplay(emulated.path, encoding="GB18030")
    try:
        d.show("one", "")
        assert emulated.wait_for(lambda shown: shown[0] == "one")[0] == "one"
        emulated.unplug()
        d.show("lost", "")          # logged, not raised
        d.show("lost again", "")
        emulated.plug()
        emulated.received.clear()
        d.show("back", "ok")
        assert emulated.wait_for(lambda shown: shown == ("back", "ok")) == ("back", "ok")
    finally:
        d.close()


def test_console_and_recording_twins() -> None:
    out = io.StringIO()
    ConsoleDisplay(out, title="customer").show("Payment successful", "SGD 1234.56")
    lines = out.getvalue().splitlines()
    assert lines[1] == "|Payment successful  |" and lines[2] == "|SGD 1234.56         |"
    assert len(lines) == 4 and lines[0].startswith("+-customer")
    rec = RecordingDisplay()
    rec.show("x" * 30, "y")
    assert rec.current == ("x" * 20, "y")


def test_open_display_by_kind(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = SimpleNamespace(kind="serial", url=str(tmp_path / "d"), baudrate=9600, encoding="BIG5")
    d = open_display(s)
    assert isinstance(d, SerialDisplay) and d.encoding == "BIG5"
    d.show("no device", "")        # nothing there: logged, not raised
    assert isinstance(open_display(SimpleNamespace(kind="console")), ConsoleDisplay)
    assert isinstance(open_display(SimpleNamespace(kind="none")), NullDisplay)


def test_the_console_shows_a_long_text_whole_and_a_2x20_display_nothing_more() -> None:
    out = io.StringIO()
    console = ConsoleDisplay(out, title="cashier")
    url = "http://127.0.0.1:8080/sandbox/cashier/2027011511121280010016000000000007"
    console.show_text("QR", url + "\x1b")
    assert out.getvalue() == f"  QR: {url}?\n"      # whole, control characters replaced
    recording = RecordingDisplay()
    recording.show_text("QR", url)
    assert recording.texts == [("QR", url)] and recording.shown == []
    NullDisplay().show_text("QR", url)              # the default: nothing, no error


def test_the_writer_keeps_only_the_latest_screen_for_a_display_that_does_not_read(
        emulated: EmulatedDisplay) -> None:
    writer = DisplayWriter(SerialDisplay(emulated.path, write_timeout=0.3), "customer", retry=0.2)
    try:
        _show_and_see(writer, emulated, "first")
        emulated.stop_reading()
        for n in range(200):          # returns at once: 200 screens at 0.3 s each would take a minute
            writer.show(f"screen {n}", "")
        deadline = time.monotonic() + 10
        while writer.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)          # not emulated.wait_for: that would read the pty
        assert (writer.last_error or "").startswith("customer display: ") and writer.current == ("screen 199", "")
        emulated.received.clear()     # it reads again: the current screen, not the 198 before it
        assert emulated.wait_for(lambda shown: shown == ("screen 199", ""), timeout=10) == ("screen 199", "")
        assert writer.writes < 20
        emulated.wait_for(lambda _: writer.last_error is None, timeout=5)
        assert writer.last_error is None
    finally:
        writer.close()


def test_the_writer_shows_a_long_text_under_its_screen_and_drops_it_with_the_screen() -> None:
    out = io.StringIO()
    writer = DisplayWriter(ConsoleDisplay(out, title="cashier"), "cashier")
    writer.show("Scan the QR", "SGD 1.00")
    writer.show_text("QR", "https://qr.example/1")
    writer.close()                    # waits for the writer: everything asked before is written
    text = out.getvalue()
    assert "|Scan the QR" in text and text.index("|Scan the QR") < text.index("QR: https://qr.example/1")


def test_a_closed_writer_ends_its_threads_at_once() -> None:
    before = set(threading.enumerate())
    writer = DisplayWriter(RecordingDisplay(), "cashier", stall_after=60)
    writer.show("Ready", "")
    started = set(threading.enumerate()) - before
    assert {t.name for t in started} == {"display-cashier", "display-cashier-watch"}
    deadline = time.monotonic() + 5
    while writer.writes < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)                     # both threads wait now: the writer for a screen, the watcher for 60 s
    writer.close()
    for thread in started:              # the watcher, timing the first write for 60 s, is woken to end
        thread.join(timeout=5)
        assert not thread.is_alive(), f"{thread.name} still runs after close()"
    assert writer.device.shown == [("Ready", "")]   # type: ignore[attr-defined]


def _fill(fd: int) -> None:
    """Fill a pipe nobody reads, so that the next write to it blocks."""
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(fd, b"x" * 65536)
    os.set_blocking(fd, True)


def test_a_write_that_blocks_after_a_quiet_spell_is_reported_after_stall_after() -> None:
    """The watcher sleeps through a quiet display instead of waking at every write; the first write
    after the quiet spell is timed all the same, and reported stall_after seconds after it started."""
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    writer = DisplayWriter(ConsoleDisplay(stream, title="customer"), "customer", stall_after=0.3)
    reader = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(read_end, 65536), b"")],
                              daemon=True)
    try:
        writer.show("first", "")
        deadline = time.monotonic() + 5
        while writer.writes < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.writes == 1 and writer.last_error is None
        time.sleep(1.0)                 # over two stall_after with no write: the watcher waits for the next one
        _fill(write_end)
        started = time.monotonic()
        writer.show("second", "")       # blocks on the writer's thread
        while writer.last_error is None and time.monotonic() < started + 10:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        assert (writer.last_error or "").startswith("customer display: a write has not returned for 0.3 s")
        assert 0.3 <= elapsed < 0.3 + 1.5
        reader.start()                  # read again: the write returns and the writer says so
        deadline = time.monotonic() + 10
        while writer.last_error is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.last_error is None and writer.writes == 2
    finally:
        if reader.ident is None:
            reader.start()
        writer.close()
        stream.close()
        reader.join(timeout=5)
        os.close(read_end)


def test_a_console_display_whose_output_nobody_reads_is_reported_until_it_is_read_again() -> None:
    import os
    import threading

    from devices.display import STALL_AFTER
    from pos.terminal.displays import Displays, new_device_board

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:                              # fill the pipe: nobody reads it, so the next write blocks
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    stream = os.fdopen(write_end, "w")
    board = new_device_board()
    displays = Displays(RecordingDisplay(), ConsoleDisplay(stream, title="customer"), Catalogue.load("en"),
                        Catalogue.load("en"), board)

    def drain() -> None:              # until the write end is closed
        while os.read(read_end, 65536):
            pass

    reader = threading.Thread(target=drain, daemon=True)
    try:
        started = time.monotonic()
        displays.show("ready")        # returns at once: the write blocks on the writer's thread only
        assert time.monotonic() - started < 0.2
        deadline = time.monotonic() + 10
        while board["display"].ok and time.monotonic() < deadline:
            time.sleep(0.05)
        error = board["display"].last_error or ""
        assert not board["display"].ok, "health never named the console display nobody reads"
        assert error.startswith(f"customer display: a write has not returned for {STALL_AFTER:g} s")
        assert "does not read" in error and "output" in error and "cashier display" not in error
        assert time.monotonic() - started < STALL_AFTER + 1.5
        assert displays.customer.current == displays.customer_text.customer("ready")

        reader.start()                # it is read again: the write returns, and health says so
        deadline = time.monotonic() + 10
        while not board["display"].ok and time.monotonic() < deadline:
            time.sleep(0.05)
        assert board["display"].ok and board["display"].last_error is None
        assert displays.customer.writes == 1
    finally:
        if reader.ident is None:      # not started: the test failed before
            reader.start()
        displays.close()
        stream.close()
        reader.join(timeout=5)
        os.close(read_end)


def _show_and_see(writer: DisplayWriter, emulated: EmulatedDisplay, line: str) -> None:
    """Show `line` and read it back on the display's other side."""
    writer.show(line, "")
    assert emulated.wait_for(lambda shown: shown[0] == line)[0] == line


def _wait_idle(writer: DisplayWriter) -> None:
    """Until the writer thread sleeps with nothing to write."""
    deadline = time.monotonic() + 5
    while not writer._writer_asleep and time.monotonic() < deadline:
        time.sleep(0.005)
    assert writer._writer_asleep


def test_a_screen_for_an_idle_display_is_written_by_the_caller_without_waking_the_writer(
        emulated: EmulatedDisplay) -> None:
    writer = DisplayWriter(SerialDisplay(emulated.path), "cashier")
    try:
        writer.show("first", "")          # opens the port: on the writer's thread
        assert emulated.wait_for(lambda shown: shown[0] == "first")[0] == "first"
        _wait_idle(writer)
        writer.show("PAID", "SGD 1.00")
        assert (writer.writes, writer.direct_writes) == (2, 1)   # written before show() returned
        assert writer._writer_asleep and writer._writer_bell.empty()   # and nobody rang the writer
        assert emulated.wait_for(lambda shown: shown == ("PAID", "SGD 1.00")) == ("PAID", "SGD 1.00")
        for n in range(30):
            writer.show(f"screen {n}", "")
        assert writer.direct_writes == 31 and writer.current == ("screen 29", "")
        assert emulated.wait_for(lambda shown: shown[0] == "screen 29")[0] == "screen 29"
        at = [bytes(emulated.received).index(f"screen {n} ".encode()) for n in range(30)]
        assert at == sorted(at)           # in the order they were asked for
        assert writer.last_error is None
    finally:
        writer.close()


def test_a_display_that_takes_no_frame_gets_it_from_the_writer_and_a_stuck_write_is_reported(
        emulated: EmulatedDisplay) -> None:
    writer = DisplayWriter(SerialDisplay(emulated.path, write_timeout=30), "customer", stall_after=0.3)
    try:
        _show_and_see(writer, emulated, "first")
        _wait_idle(writer)
        emulated.stop_reading()           # the pty's buffer is full: a non-blocking write takes nothing
        started = time.monotonic()
        writer.show("second", "")
        assert writer.direct_writes == 0  # handed to the writer, whose write waits for the display
        while writer.last_error is None and time.monotonic() < started + 10:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        assert (writer.last_error or "").startswith("customer display: a write has not returned for 0.3 s")
        assert 0.3 <= elapsed < 0.3 + 1.5
        writer.show("third", "")          # the writer is busy: this one waits for it too
        assert writer.direct_writes == 0
        assert emulated.wait_for(lambda shown: shown[0] == "third", timeout=10)[0] == "third"
        deadline = time.monotonic() + 10
        while writer.last_error is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.last_error is None
        data = bytes(emulated.received)
        assert data.rindex(b"second ") < data.rindex(b"third ")
        _wait_idle(writer)
        writer.show("fourth", "")         # reads again and the writer is idle: written at once
        assert writer.direct_writes == 1
        assert emulated.wait_for(lambda shown: shown[0] == "fourth")[0] == "fourth"
    finally:
        writer.close()

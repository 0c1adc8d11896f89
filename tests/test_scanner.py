"""Scanner: the pure framer (examples + a property test) and the reader on real ptys."""

from __future__ import annotations

import logging
import queue
import re
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.emulated import EmulatedScanner
from devices.scanner import ReceiptScan, Rejected, Scan, ScanFramer, Scanner, ScannerBack, ScannerLost

CODE = "281234567890123456"      # 18 digits, Alipay CN style
CODE2 = "2600000000000000007788"  # 22 digits


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def framer(**kw: object) -> tuple[ScanFramer, FakeClock]:
    clock = FakeClock()
    return ScanFramer(clock=clock, **kw), clock  # type: ignore[arg-type]


# -- framing --------------------------------------------------------------

@pytest.mark.parametrize("terminator, wire", [
    ("CR", b"\r"), ("LF", b"\n"), ("CRLF", b"\r\n"), ("ANY", b"\r"), ("ANY", b"\n"), ("ANY", b"\r\n"),
])
def test_terminators(terminator: str, wire: bytes) -> None:
    f, _ = framer(terminator=terminator)
    assert f.feed(CODE.encode() + wire) == [Scan(CODE)]


def test_code_split_across_reads() -> None:
    f, _ = framer()
    assert f.feed(b"2812345") == []
    assert f.feed(b"67890123456\r") == [Scan(CODE)]


def test_aim_prefix_and_suffix_are_stripped() -> None:
    f, _ = framer(prefix="STX", suffix="#")
    assert f.feed(b"STX]Q1" + CODE.encode() + b"#\r") == [Scan(CODE)]
    f, _ = framer()
    assert f.feed(b"]E0" + CODE2.encode() + b"\n") == [Scan(CODE2)]
    f, _ = framer(strip_aim=False)
    assert f.feed(b"]Q1" + CODE.encode() + b"\r") == [Rejected("not_digits")]


def test_receipt_code_is_a_receipt_scan() -> None:
    f, _ = framer()
    assert f.feed(b"]Q1POS:POS01-20240501-0001\r") == [ReceiptScan("POS01-20240501-0001")]
    assert f.feed(b"POS:bad id!\r") == [Rejected("bad_receipt_code")]


@pytest.mark.parametrize("line, reason", [
    (b"2812345678901", "bad_length"),                 # 13 digits
    (b"28" + b"1" * 31, "bad_length"),                # 33 digits
    (b"1812345678901234", "bad_prefix"),              # starts 18
    (b"3112345678901234", "bad_prefix"),              # starts 31
    (b"28123456789012AB", "not_digits"),
    (b"2812345678\x0090123456", "nul_byte"),
    (b"28123456789\xff0123456", "not_utf8"),
    (b"\x01\x02\x03", "not_digits"),
    ("２８１２３４５６７８９０１２３４５".encode(), "not_digits"),  # full-width digits
])
def test_bad_lines_are_refused_with_a_display_key(line: bytes, reason: str) -> None:
    f, _ = framer()
    events = f.feed(line + b"\r")
    assert events == [Rejected(reason)]
    assert events[0].message_key == "scan_invalid"
    assert f.feed(CODE.encode() + b"\r") == [Scan(CODE)]  # and it keeps reading


def test_ten_thousand_char_line_is_refused_once_and_reading_goes_on() -> None:
    f, _ = framer(max_line=128)
    events = []
    for _ in range(10):
        events += f.feed(b"9" * 1000)
    events += f.feed(b"\r" + CODE.encode() + b"\r")
    assert events == [Rejected("too_long"), Scan(CODE)]


def test_missing_terminator_is_dropped_after_idle_time() -> None:
    f, clock = framer()
    assert f.feed(CODE.encode()) == []
    assert f.idle() == []                    # not yet: a slow burst may still end
    clock.now += 2
    assert f.idle() == [Rejected("no_terminator")]
    assert f.feed(CODE2.encode() + b"\r") == [Scan(CODE2)]


def test_missing_terminator_between_two_codes_is_refused() -> None:
    f, _ = framer()
    assert f.feed((CODE + CODE2).encode() + b"\r") == [Rejected("bad_length")]


def test_dedupe_window_uses_the_clock() -> None:
    f, clock = framer(dedupe_window=2.0)
    assert f.feed(CODE.encode() + b"\r") == [Scan(CODE)]
    clock.now += 1.0
    assert f.feed(CODE.encode() + b"\r") == []
    assert f.feed(CODE2.encode() + b"\r") == [Scan(CODE2)]
    clock.now += 2.5
    assert f.feed(CODE2.encode() + b"\r") == [Scan(CODE2)]
    clock.now += 2.5
    assert f.feed(CODE.encode() + b"\r") == [Scan(CODE)]


def test_the_dedupe_window_runs_from_the_end_of_the_handling() -> None:
    """A repeat read while the first scan's pay was being sent (5 s, a slow gateway) is framed after it:
    still one scan; the window counts from the handling's end, not from the first read."""
    f, clock = framer(dedupe_window=2.0)
    assert f.feed(CODE.encode() + b"\r") == [Scan(CODE)]
    clock.now += 5.0                      # the handler returns 5 s later
    f.handled(Scan(CODE))
    clock.now += 0.1
    assert f.feed(CODE.encode() + b"\r") == []
    f.handled(Scan(CODE2))                # another code's handling moves nothing
    clock.now += 2.5
    assert f.feed(CODE.encode() + b"\r") == [Scan(CODE)]


def test_scan_repr_masks_the_code() -> None:
    assert CODE not in repr(Scan(CODE)) and repr(Scan(CODE)).endswith("3456')")
    assert "".join(ch for ch in repr(Scan(CODE)) if ch.isdigit()) == "3456"   # no other digit of the code


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"\r", b"\n", b"\r\n", b"]Q1", b"\x00", b"\xff", b"POS:", b"28", b"30"]),
    st.from_regex(r"\A(2[5-9]|30)[0-9]{14,30}\Z", fullmatch=True).map(str.encode),
), max_size=30))
def test_property_only_well_formed_codes_come_out(chunks: list[bytes]) -> None:
    f, clock = framer(dedupe_window=0)
    for chunk in chunks:
        for event in f.feed(chunk) + f.idle():
            if isinstance(event, Scan):
                assert re.fullmatch(r"(2[5-9]|30)[0-9]{14,30}", event.code)
            elif isinstance(event, ReceiptScan):
                assert re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", event.merchant_trans_id)
            else:
                assert isinstance(event, Rejected) and event.message_key == "scan_invalid"
        clock.now += 0.5


@settings(max_examples=100, deadline=None)
@given(st.lists(st.from_regex(r"\A(2[5-9]|30)[0-9]{14,30}\Z", fullmatch=True), min_size=1, max_size=5),
       st.binary(max_size=200))
def test_property_codes_after_noise_are_still_read(codes: list[str], noise: bytes) -> None:
    f, _ = framer(dedupe_window=0)
    f.feed(noise)
    events = f.feed(b"\r" + b"".join(c.encode() + b"\r" for c in codes))
    assert [e for e in events if isinstance(e, Scan)] == [Scan(c) for c in codes]


# -- the reader on a real pty ---------------------------------------------

def scanner_settings(url: str, **kw: object) -> SimpleNamespace:
    base = dict(url=url, baudrate=9600, bytesize=8, parity="N", stopbits=1, terminator="ANY",
                prefix="", suffix="", strip_aim=True, dedupe_window=0.0, max_line=128,
                reconnect_min=0.02, reconnect_max=0.1)
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.fixture
def emulated_scanner(tmp_path):  # type: ignore[no-untyped-def]
    dev = EmulatedScanner(directory=tmp_path, aim="]Q1")
    yield dev
    dev.close()


def next_event(q: queue.Queue[object], kind: type, timeout: float = 5.0) -> object:
    while True:
        event = q.get(timeout=timeout)
        if isinstance(event, kind):
            return event


def test_reader_delivers_scans_and_keeps_reading_after_junk(emulated_scanner, caplog) -> None:  # type: ignore[no-untyped-def]
    events: queue.Queue[object] = queue.Queue()
    caplog.set_level(logging.DEBUG)
    with Scanner(scanner_settings(emulated_scanner.path), events.put, poll_interval=0.02) as scanner:
        assert scanner.connected.wait(5)
        emulated_scanner.send_raw(b"\xff\xfe garbage \x00\r")
        emulated_scanner.send_raw(b"7" * 10_000 + b"\r")
        emulated_scanner.scan(CODE)
        assert events.get(timeout=5) == Rejected("nul_byte")
        assert events.get(timeout=5) == Rejected("too_long")
        assert events.get(timeout=5) == Scan(CODE)
    assert CODE not in caplog.text and CODE[-4:] in caplog.text


def test_unplug_and_replug_reports_lost_and_back_and_reads_the_next_scan(emulated_scanner) -> None:  # type: ignore[no-untyped-def]
    events: queue.Queue[object] = queue.Queue()
    with Scanner(scanner_settings(emulated_scanner.path), events.put, poll_interval=0.02) as scanner:
        assert scanner.connected.wait(5)
        emulated_scanner.scan(CODE)
        assert next_event(events, Scan) == Scan(CODE)
        emulated_scanner.unplug()
        lost = next_event(events, ScannerLost)
        assert lost.message_key == "scanner_lost"  # type: ignore[attr-defined]
        emulated_scanner.plug()
        assert next_event(events, ScannerBack) == ScannerBack()
        emulated_scanner.scan(CODE2)
        assert next_event(events, Scan) == Scan(CODE2)


def test_missing_device_at_start_is_lost_then_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    events: queue.Queue[object] = queue.Queue()
    path = tmp_path / "later"
    with Scanner(scanner_settings(str(path)), events.put, poll_interval=0.02):
        assert isinstance(events.get(timeout=5), ScannerLost)
        dev = EmulatedScanner("later", tmp_path)
        try:
            assert events.get(timeout=5) == ScannerBack()
            dev.scan(CODE)
            assert events.get(timeout=5) == Scan(CODE)
        finally:
            dev.close()


def test_socket_url_scanner(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    events: queue.Queue[object] = queue.Queue()
    try:
        with Scanner(scanner_settings(f"socket://127.0.0.1:{port}"), events.put, poll_interval=0.02) as s:
            conn, _ = srv.accept()
            # pyserial empties the input when it opens a port: send after that
            assert s.connected.wait(5)
            conn.sendall(CODE.encode() + b"\r\n")
            assert next_event(events, Scan) == Scan(CODE)
            conn.close()
            assert isinstance(next_event(events, ScannerLost), ScannerLost)
    finally:
        srv.close()


def test_stop_ends_the_thread_while_waiting_to_reconnect(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Scanner(scanner_settings(str(tmp_path / "none"), reconnect_min=30, reconnect_max=60), lambda e: None)
    s.start()
    thread = s._thread
    s.stop(timeout=5)
    assert thread is not None and not thread.is_alive()

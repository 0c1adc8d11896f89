"""The durable print queue: idempotent, ordered, exactly once after the printer comes back."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from devices.emulated import EmulatedNetworkPrinter, escpos_to_text
from devices.messages import Catalogue
from devices.print_jobs import StoredReceipt
from devices.print_queue import PrintQueue, UnknownJob
from devices.printer import DummyPrinter, NetworkPrinter, NullPrinter
from devices.receipt import ReceiptAmount, ReceiptData, ReceiptKind
from pos.config import PrinterSection
from pos.core.money import Money
from pos.journal.journal import Journal
from pos.journal.print_jobs import JournalPrintJobs

SETTINGS = PrinterSection(encoding="GB18030", retry_interval=0.05)


def _amount(m: Money) -> ReceiptAmount:
    return ReceiptAmount(m.minor, m.currency, m.receipt())


def receipt(n: int) -> ReceiptData:
    return ReceiptData(kind=ReceiptKind.SALE, merchant_name="My Store", terminal_id="POS01",
                       when=datetime(2024, 5, 1, 12, 0, n), amount=_amount(Money(1000 + n, "SGD")),
                       status_key="status_paid", merchant_trans_id=f"POS01-T{n:04d}", code_last4="1234")


@contextmanager
def make_queue(db: Path, printer, **kw) -> Iterator[PrintQueue]:  # type: ignore[no-untyped-def]
    """A queue over the journal at `db`, as the daemon wires it; the journal closes after the queue."""
    journal = Journal.open(db)
    try:
        with PrintQueue(JournalPrintJobs(journal), printer, printer_settings=SETTINGS,
                        catalogue=Catalogue.load("en"), **kw) as q:
            yield q
    finally:
        journal.close()


def test_enqueue_is_idempotent_and_jobs_print_in_order(tmp_path: Path) -> None:
    printer = DummyPrinter()
    with make_queue(tmp_path / "journal.sqlite", printer) as q:
        assert q.enqueue("sale:1:final", receipt(1)) is True
        assert q.enqueue("sale:1:final", receipt(1)) is False
        assert q.enqueue("sale:2:final", b"\x1b@raw bytes\n") is True
        assert [j.job_key for j in q.pending()] == ["sale:1:final", "sale:2:final"]
        assert q.print_pending() == 2
        assert q.print_pending() == 0
        assert q.job("sale:1:final").state == "done"  # type: ignore[union-attr]
    assert "POS01-T0001" in escpos_to_text(printer.jobs[0]) and printer.jobs[1] == b"\x1b@raw bytes\n"


def test_free_text_is_refused(tmp_path: Path) -> None:
    with make_queue(tmp_path / "j.sqlite", DummyPrinter()) as q, pytest.raises(TypeError, match="not free text"):
        q.enqueue("x", "PAID 10.00")  # type: ignore[arg-type]


def test_table_lives_in_the_journal_file_with_wal_and_full_sync(tmp_path: Path) -> None:
    db = tmp_path / "journal.sqlite"
    journal = Journal.open(db)
    try:
        q = PrintQueue(JournalPrintJobs(journal), DummyPrinter(), printer_settings=SETTINGS,
                       catalogue=Catalogue.load("en"))
        # the queue writes through the journal's one connection
        assert journal._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        q.enqueue("sale:1:final", receipt(1))
        q.close()
    finally:
        journal.close()
    names = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sales", "print_jobs"} <= names


def test_a_receipt_queued_to_render_later_prints_the_same_bytes_and_reprints(tmp_path: Path) -> None:
    now, later = DummyPrinter(), DummyPrinter()
    with make_queue(tmp_path / "a.db", now) as q:
        q.enqueue("sale:1", receipt(1))
        q.print_pending()
    with make_queue(tmp_path / "b.db", later) as q:
        assert q.enqueue("sale:1", receipt(1), render_later=True) is True
        assert q.enqueue("sale:1", receipt(1), render_later=True) is False
        assert q.store.receipt_of("sale:1").data == b""   # type: ignore[union-attr]  # only the record
        assert q.print_pending() == 1
        copy = q.reprint("sale:1")
        assert q.print_pending() == 1 and q.job(copy).state == "done"  # type: ignore[union-attr]
    assert later.jobs[0] == now.jobs[0]
    assert "REPRINT" in escpos_to_text(later.jobs[1]).upper()


def test_a_receipt_that_cannot_be_rendered_waits_like_one_the_printer_refused(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    try:
        store = JournalPrintJobs(journal)
        store.add("sale:1", b"", record="{not json", reprint_of=None, created_at=1.0)
        seen: list[str] = []
        q = PrintQueue(store, DummyPrinter(), printer_settings=SETTINGS, catalogue=Catalogue.load("en"),
                       on_status=seen.append)
        assert q.print_pending() == 0
        job = q.job("sale:1")
        assert job is not None and job.state == "pending" and "cannot be rendered" in (job.last_error or "")
        assert seen == ["printer_away"]
    finally:
        journal.close()


def test_marking_a_job_printed_leaves_the_journal_durable_for_what_follows(tmp_path: Path) -> None:
    """The "printed" mark is written without waiting for the disk (a lost one only reprints);
    every other write of the journal still commits with synchronous=FULL."""
    with make_queue(tmp_path / "journal.db", DummyPrinter()) as q:
        q.enqueue("sale:1", receipt(1))
        assert q.print_pending() == 1
        conn = q.store._db.conn   # type: ignore[attr-defined]
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL again
        assert q.job("sale:1").state == "done"  # type: ignore[union-attr]
        conn.execute("PRAGMA synchronous=OFF")          # a bulk builder's choice is left as it is
        q.enqueue("sale:2", receipt(2))
        assert q.print_pending() == 1 and conn.execute("PRAGMA synchronous").fetchone()[0] == 0
    with make_queue(tmp_path / "journal.db", DummyPrinter()) as again:
        assert again.pending() == [] and again.job("sale:1").state == "done"  # type: ignore[union-attr]


def test_a_job_added_inside_a_journal_transaction_commits_with_it(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    try:
        store = JournalPrintJobs(journal)
        assert store.writes_through(journal)
        with pytest.raises(RuntimeError), journal.db.transaction():
            store.add("sale:1", b"x", record=None, reprint_of=None, created_at=1.0)
            raise RuntimeError("the step failed")
        assert store.job("sale:1") is None                  # rolled back with the step
        with journal.db.transaction():
            store.add("sale:2", b"x", record=None, reprint_of=None, created_at=1.0)
        assert store.job("sale:2") is not None
    finally:
        journal.close()


def test_jobs_of_a_journal_from_before_the_print_jobs_migration_are_kept(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    Journal.open(db).close()
    old = sqlite3.connect(db)   # as an older release left it: schema 1, the queue's own table
    old.execute("UPDATE schema_version SET version = 1")
    for column in ("reversal_id", "reversal_gateway_id", "reversal_attempts", "pay_amount_minor", "pay_currency",
                   "conversion_rate"):   # added by migration 4
        old.execute(f"ALTER TABLE sales DROP COLUMN {column}")
    for table in ("sales", "till_sales"):   # added by migration 8 (the till's line items)
        old.execute(f"ALTER TABLE {table} DROP COLUMN goods")
    old.execute("ALTER TABLE sales DROP COLUMN result_cause")   # added by migration 10 (the answer's cause)
    old.execute("DROP TABLE print_jobs")
    old.execute("CREATE TABLE print_jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, job_key TEXT NOT NULL UNIQUE, "
                "created_at REAL NOT NULL, data BLOB NOT NULL, record TEXT, reprint_of TEXT, "
                "state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, "
                "printed_at REAL)")
    old.execute("INSERT INTO print_jobs (job_key, created_at, data) VALUES ('sale:1', 1.0, x'1b40')")
    old.commit()
    old.close()
    printer = DummyPrinter()
    with make_queue(db, printer) as q:
        assert [j.job_key for j in q.pending()] == ["sale:1"]
        assert q.print_pending() == 1
    assert printer.jobs == [b"\x1b@"]


def test_a_job_queued_by_another_process_is_printed_by_the_running_worker(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    printer = DummyPrinter()
    with make_queue(db, printer, retry_interval=0.05) as q:
        q.start()
        with make_queue(db, NullPrinter()) as other:    # `pos reprint`: its own journal connection
            assert other.enqueue("sale:7:reprint", receipt(7))
        for _ in range(200):
            if printer.jobs:
                break
            threading.Event().wait(0.02)
        q.stop()
        assert q.job("sale:7:reprint").state == "done"  # type: ignore[union-attr]
    assert len(printer.jobs) == 1 and "POS01-T0007" in escpos_to_text(printer.jobs[0])


class Builder:
    """A receipt_of for jobs queued by their key ("sale:N"): counts what it was asked to build."""

    def __init__(self) -> None:
        self.built: list[str] = []

    def __call__(self, job_key: str) -> ReceiptData:
        self.built.append(job_key)
        return receipt(int(job_key.split(":")[1]))


def test_a_job_queued_by_its_key_is_built_once_when_the_worker_takes_it_and_prints_the_same_bytes(
        tmp_path: Path) -> None:
    """Queuing by key writes the key alone; the receipt is built when the worker first takes the job,
    kept with that attempt (a failed one too), and printed byte for byte as the receipt queued whole."""
    whole = DummyPrinter()
    with make_queue(tmp_path / "a.db", whole) as q:
        q.enqueue("sale:1", receipt(1), render_later=True)
        q.print_pending()
    printer, build, seen = DummyPrinter(), Builder(), []
    with make_queue(tmp_path / "b.db", printer, receipt_of=build, on_status=seen.append) as q:
        assert q.enqueue_key("sale:1", wake=False) is True
        assert q.enqueue_key("sale:1") is False
        assert q.store.receipt_of("sale:1") == StoredReceipt(b"", None) and build.built == []
        printer.online = False                       # the printer is away when the worker first takes it
        assert q.print_pending() == 0 and build.built == ["sale:1"]
        kept = q.store.receipt_of("sale:1")
        assert kept is not None and kept.record is not None and kept.data == b""
        printer.online = True
        assert q.print_pending() == 1 and build.built == ["sale:1"]   # the kept receipt, not a new one
        assert q.store.receipt_of("sale:1") == kept
        assert q.job("sale:1").state == "done"  # type: ignore[union-attr]
        assert seen == ["printer_away", "printer_back"]
    assert printer.jobs == whole.jobs


def test_a_job_queued_by_its_key_reprints_before_the_worker_took_it(tmp_path: Path) -> None:
    printer, build = DummyPrinter(), Builder()
    with make_queue(tmp_path / "j.db", printer, receipt_of=build) as q:
        q.enqueue_key("sale:1", wake=False)
        assert q.reprint("sale:1") == "sale:1:reprint:1"
        assert q.print_pending() == 2 and build.built == ["sale:1", "sale:1"]
    original, copy = (escpos_to_text(j) for j in printer.jobs)
    assert "REPRINT" not in original.upper() and "REPRINT" in copy.upper()
    assert "POS01-T0001" in original and "POS01-T0001" in copy


def test_a_job_whose_receipt_cannot_be_built_waits_like_one_the_printer_refused(tmp_path: Path) -> None:
    def unreadable(job_key: str) -> ReceiptData:
        raise OSError("the journal is unreadable")

    printer = DummyPrinter()
    with make_queue(tmp_path / "j.db", printer, receipt_of=unreadable) as q:
        q.enqueue_key("sale:1")
        assert q.print_pending() == 0 and printer.jobs == []
        job = q.job("sale:1")
        assert job is not None and job.state == "pending" and "cannot be built" in (job.last_error or "")
        assert q.store.receipt_of("sale:1") == StoredReceipt(b"", None)   # built again at the next attempt


def test_queuing_by_key_needs_a_way_to_build_the_receipt(tmp_path: Path) -> None:
    with make_queue(tmp_path / "j.db", DummyPrinter()) as q:
        with pytest.raises(ValueError, match="receipt_of"):
            q.enqueue_key("sale:1")
        assert q.job("sale:1") is None


def test_printer_pulled_mid_receipt_each_receipt_prints_exactly_once_after_it_returns(tmp_path: Path) -> None:
    statuses: list[str] = []
    back = threading.Event()

    def on_status(key: str) -> None:
        statuses.append(key)
        if key == "printer_back":
            back.set()

    with EmulatedNetworkPrinter() as emu:
        printer = NetworkPrinter(emu.host, emu.port, timeout=2, drain_timeout=2)
        emu.fail_after(120)  # the cable is pulled 120 bytes into the first receipt
        with make_queue(tmp_path / "journal.sqlite", printer, on_status=on_status) as q:
            for n in range(1, 4):
                q.enqueue(f"sale:{n}:final", receipt(n))
            q.start()
            for _ in range(500):                        # the worker finds the printer away
                if statuses and not emu.on:
                    break
                threading.Event().wait(0.01)
            assert statuses == ["printer_away"] and len(emu.torn) == 1
            assert [j.job_key for j in q.pending()] == ["sale:1:final", "sale:2:final", "sale:3:final"]
            assert q.job("sale:1:final").attempts >= 1  # type: ignore[union-attr]
            q.enqueue("sale:4:final", receipt(4))      # queuing never blocks on the printer
            emu.switch_on()                            # plugged back in, same address
            assert back.wait(10) and emu.wait_for_jobs(4)
            q.stop()
            assert q.pending() == []
        texts = emu.texts()
    assert statuses == ["printer_away", "printer_back"]
    assert len(texts) == 4
    for n, text in enumerate(texts, start=1):   # in order, each exactly once, each complete
        assert f"[QR: POS:POS01-T{n:04d}]" in text and "-------- cut --------" in text
        assert sum(t.count(f"POS01-T{n:04d}") for t in texts) == 2  # the ID line and the QR


def test_pending_jobs_survive_a_restart_and_print_once(tmp_path: Path) -> None:
    db = tmp_path / "journal.sqlite"
    with make_queue(db, NullPrinter()) as q:
        q.enqueue("sale:1:final", receipt(1))
        assert q.print_pending() == 0 and q.printer_away
    printer = DummyPrinter()
    with make_queue(db, printer) as q:
        assert q.enqueue("sale:1:final", receipt(1)) is False   # the engine re-queues on resume: no copy
        assert q.print_pending() == 1
    with make_queue(db, printer) as q:
        assert q.print_pending() == 0
    assert len(printer.jobs) == 1


def test_reprint_marks_the_copy(tmp_path: Path) -> None:
    printer = DummyPrinter()
    with make_queue(tmp_path / "j.sqlite", printer) as q:
        q.enqueue("sale:1:final", receipt(1))
        q.enqueue("raw:1", b"\x1b@just bytes\n")
        assert q.reprint("sale:1:final") == "sale:1:final:reprint:1"
        assert q.reprint("sale:1:final") == "sale:1:final:reprint:2"
        assert q.reprint("raw:1") == "raw:1:reprint:1"
        with pytest.raises(UnknownJob):
            q.reprint("sale:999:final")
        assert q.print_pending() == 5
    texts = [escpos_to_text(j) for j in printer.jobs]
    assert "REPRINT" not in texts[0]
    assert "*** REPRINT ***" in texts[2] and "*** REPRINT ***" in texts[3]
    assert "*** REPRINT ***" in texts[4] and "just bytes" in texts[4]


def test_stop_prints_the_receipts_still_pending_within_a_bounded_time(tmp_path: Path) -> None:
    """Issue 17: at shutdown (SIGTERM) receipts queued behind each other were left unprinted."""
    import time

    class SlowPrinter(DummyPrinter):
        def send(self, data: bytes) -> None:
            time.sleep(0.1)
            super().send(data)

    printer = SlowPrinter()
    with make_queue(tmp_path / "journal.db", printer) as q:
        q.start()
        for n in range(5):
            q.enqueue(f"sale:{n}", receipt(n))
        q._wake.set()
        started = time.monotonic()
        q.stop(drain=5.0)
        assert len(printer.jobs) == 5 and q.pending() == []
        assert time.monotonic() - started < 2.0
        # A drain has a bound: with a printer slower than it, the rest wait on disk.
        for n in range(5, 25):
            q.enqueue(f"sale:{n}", receipt(n))
        q.start()
        started = time.monotonic()
        q.stop(drain=0.3)
        assert time.monotonic() - started < 1.5 and q.pending() != []


def test_stop_by_default_prints_the_receipts_still_pending(tmp_path: Path) -> None:
    """Issue 17, defect 12: at shutdown (SIGTERM, stop() as the daemon calls it) receipts queued
    behind each other were left unprinted (before the fix: 1 of these 5 printed)."""
    import time

    class SlowPrinter(DummyPrinter):
        def send(self, data: bytes) -> None:
            time.sleep(0.1)
            super().send(data)

    printer = SlowPrinter()
    with make_queue(tmp_path / "journal.db", printer) as q:
        q.start()
        for n in range(5):
            q.enqueue(f"sale:{n}", receipt(n))
        q._wake.set()
        q.stop()
        assert len(printer.jobs) == 5 and q.pending() == []


def test_the_queue_keeps_each_receipt_with_the_paper_it_prints_on(tmp_path: Path) -> None:
    """The receipt picture (the terminal's and headquarters') is laid out from what the queue keeps."""
    import json

    from devices.receipt import DEFAULT_PAPER, Paper
    from devices.receipt_image import picture_rows

    printer = DummyPrinter()
    narrow = PrinterSection(encoding="UTF-8", width=32, print_qr=False, retry_interval=0.05)
    journal = Journal.open(tmp_path / "journal.sqlite")
    try:
        with PrintQueue(JournalPrintJobs(journal), printer, printer_settings=narrow,
                        catalogue=Catalogue.load("en")) as q:
            assert q.enqueue("sale:1", receipt(1))
            assert q.print_pending() == 1
            record = json.loads(JournalPrintJobs(journal).receipt_of("sale:1").record)  # type: ignore[union-attr,arg-type]
    finally:
        journal.close()
    assert record["paper"] == {"columns": 32, "dots": 384, "print_qr": False, "narrowest_bar": 2}
    kept = ReceiptData.from_dict(record)
    paper = escpos_to_text(printer.jobs[0], "UTF-8")
    assert "[BARCODE: POS:POS01-T0001]" in paper and "-" * 32 + "\n" in paper
    drawn = "\n".join(row.shown for row in picture_rows(kept, Catalogue.load("en")))
    assert "[BARCODE: POS:POS01-T0001]" in drawn and "-" * 33 not in drawn
    # A receipt kept before receipts carried their paper is drawn on the printer's defaults: 42 columns, a QR code.
    del record["paper"]
    old = ReceiptData.from_dict(record)
    assert old.paper is None and Paper(42, 512, True) == DEFAULT_PAPER
    drawn = "\n".join(row.shown for row in picture_rows(old, Catalogue.load("en")))
    assert "[QR: POS:POS01-T0001]" in drawn and "-" * 42 in drawn
    # A receipt kept before the paper carried its narrowest bar was printed when bars went down to 1 dot:
    # it is drawn as printed (a barcode at 1 dot a bar), not as today's default (2) would print it (a QR code).
    typical = "POS01-20240501-VE6E99-000001"   # 343 modules: 384 dots hold it at 1 dot a bar only
    before = {**record, "merchant_trans_id": typical, "paper": {"columns": 32, "dots": 384, "print_qr": False}}
    rows = picture_rows(ReceiptData.from_dict(before), Catalogue.load("en"))
    assert [(r.shown, r.module) for r in rows if r.kind == "barcode"] == [(f"[BARCODE: POS:{typical}]", 1)]
    now = {**before, "paper": {**before["paper"], "narrowest_bar": 2}}
    assert ReceiptData.from_dict(now).paper == Paper(32, 384, False, 2)
    assert f"[QR: POS:{typical}]" in "\n".join(r.shown for r in picture_rows(ReceiptData.from_dict(now),
                                                                             Catalogue.load("en")))

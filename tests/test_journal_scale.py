"""The journal as it grows: one commit per engine step, indexes, reports and counts in SQL.

Reports totalled by SQLite must equal the per-row reports they replaced, and
the open-item counts `/v1/health` shows must equal a full count, whatever the
journal holds. Nothing here asserts on speed (tests/bench_journal.py measures).
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos.core.money import Money
from pos.core.records import SALE_NEEDS_MANAGER, RefundRecord, RefundState, SaleRecord, SaleState
from pos.core.reports import build_report
from pos.journal.journal import Journal
from pos.journal.reads import OpenCounts
from pos.journal.schema import MIGRATIONS
from pos.journal.till import TillLinks
from pos.sandbox.ledger import as_datetime
from pos.terminal.business_day import BusinessDay
from tests.test_runner import START, Rig

_journals = itertools.count()


def _sale(i: int, state: SaleState, currency: str, minor: int, at: float, acquirement: bool) -> SaleRecord:
    return SaleRecord(sale_id=i, merchant_trans_id=f"T-20240501-ABCDEF-{i:06d}", amount=Money(minor, currency),
                      code_masked="**************1234", order_title="", reference="", state=state, created_at=at,
                      updated_at=at, local_date="2024-05-01", scanned_at=at,
                      acquirement_id=f"2024{i:08d}" if acquirement else None)


def _refund(i: int, sale: SaleRecord, state: RefundState, minor: int, at: float) -> RefundRecord:
    return RefundRecord(refund_id=i, sale_id=sale.sale_id, merchant_refund_id=f"T-20240501-ABCDEF-R{i:06d}",
                        acquirement_id=sale.acquirement_id or "", amount=Money(minor, sale.amount.currency),
                        reason="", state=state, created_at=at, updated_at=at, local_date="2024-05-01")


# Times fall before, on and after the day's bounds (START .. START + 100).
_times = st.sampled_from([START - 50, START - 0.5, START, START + 1, START + 50, START + 99.5, START + 100,
                          START + 150])
_sales = st.lists(st.tuples(st.sampled_from(list(SaleState)), st.sampled_from(["USD", "SGD", "CNY"]),
                            st.integers(1, 10**9), _times, st.booleans()), max_size=25)
_refunds = st.lists(st.tuples(st.integers(0, 24), st.sampled_from(list(RefundState)), st.integers(1, 10**6),
                              _times), max_size=10)


def _journal(tmp: Path, sales: list[Any], refunds: list[Any]) -> tuple[Journal, list[SaleRecord],
                                                                       list[RefundRecord]]:
    journal = Journal.open(tmp / f"j{next(_journals)}" / "journal.db", timezone="UTC")
    records = [_sale(i, *s) for i, s in enumerate(sales, start=1)]
    refund_records = [_refund(i, records[k % len(records)], state, minor, at)
                      for i, (k, state, minor, at) in enumerate(refunds, start=1)] if records else []
    journal.bulk_insert(records, refund_records)
    return journal, records, refund_records


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sales=_sales, refunds=_refunds, first_day=st.booleans(), closed=st.booleans())
def test_reports_totalled_in_sql_equal_the_per_row_reports(tmp_path: Path, sales: list[Any], refunds: list[Any],
                                                            first_day: bool, closed: bool) -> None:
    journal, _, _ = _journal(tmp_path, sales, refunds)
    try:
        links = TillLinks(journal)
        links.open_day()
        if not first_day:                     # day 2 opened at START (day 1 holds what came before)
            links.close_day(1, START)
        closed_at = START + 100 if closed else None
        day, opened = links.open_day()
        business = BusinessDay(journal, links, None, ZoneInfo("UTC"), lambda: START + 100)  # type: ignore[arg-type]
        kind = "Z" if closed else "X"
        report = business._build(kind, closed_at)
        # The per-row path the reports used before: every record of the day, built in Python.
        per_row = build_report(kind, day, report.opened_at, report.closed_at,
                               journal.list_sales(since=opened, before=closed_at)
                               + journal.list_sales(open_only=True, before=opened),
                               journal.list_refunds(since=opened, before=closed_at))
        assert report == per_row
        assert report.as_dict() == per_row.as_dict()
    finally:
        journal.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sales=_sales, refunds=_refunds)
def test_open_items_and_counts_equal_a_full_count(tmp_path: Path, sales: list[Any], refunds: list[Any]) -> None:
    journal, _, _ = _journal(tmp_path, sales, refunds)
    try:
        _assert_counts_match(journal)
    finally:
        journal.close()


def _assert_counts_match(journal: Journal) -> None:
    every_sale, every_refund = journal.list_sales(), journal.list_refunds()
    open_sales = [s for s in every_sale if not s.is_final]
    open_refunds = [r for r in every_refund if not r.is_final]
    assert journal.open_items() == [*open_sales, *open_refunds]
    assert journal.list_sales(open_only=True) == open_sales
    assert journal.list_refunds(open_only=True) == open_refunds
    manager = (sum(s.state in SALE_NEEDS_MANAGER for s in every_sale)
               + sum(r.state is RefundState.REFUND_PENDING for r in every_refund))
    assert journal.open_counts() == OpenCounts(len(open_sales) + len(open_refunds), manager)
    assert journal.count_open_items() == len(open_sales) + len(open_refunds)


def test_counts_equal_a_full_count_through_sales_refunds_and_a_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.service.recover()
    sales = []
    for scenario in ("00", "01", "00", "15"):       # paid, declined, paid, manual review
        sales.append(rig.sale(scenario))
        rig.service.wait(sales[-1], timeout=10)
    rig.service.refund(sales[0], Money(300, "USD"), "part")
    rig.service.wait_idle(timeout=10)
    _assert_counts_match(rig.journal)
    assert rig.journal.open_counts() == OpenCounts(1, 1)
    rig.close()
    # A terminal that died right after committing a new sale and a new refund.
    journal = Journal.open(tmp_path / "journal.db")
    journal.create_sale(amount=Money(700, "USD"), code="281800000000004321", scanned_at=START, now=START)
    journal.create_refund(sale=journal.get_sale(sales[2]), amount=Money(100, "USD"), reason="", now=START)
    _assert_counts_match(journal)
    assert journal.open_counts() == OpenCounts(3, 1)
    journal.close()
    again = Rig(tmp_path)
    try:
        again.service.recover()
        again.service.wait_idle(timeout=10)
        deadline = time.monotonic() + 10
        while again.journal.open_counts().open_items > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        _assert_counts_match(again.journal)
        assert again.journal.open_counts() == OpenCounts(1, 1)    # voided, refunded: the review is left
    finally:
        again.close()


def _commits(journal: Journal) -> int:
    return journal.db._commits


def test_a_paid_sale_and_its_refund_are_two_durable_commits_each(tmp_path: Path) -> None:
    """The write-before-send floor: the record before the request, then the outcome."""
    rig = Rig(tmp_path)
    rig.service.recover()
    try:
        before = _commits(rig.journal)
        sale_id = rig.sale("00")
        assert rig.service.wait(sale_id, timeout=10).state is SaleState.PAID
        rig.service.wait_idle(timeout=10)
        assert _commits(rig.journal) - before == 2
        before = _commits(rig.journal)
        refund_id = rig.service.refund(sale_id, Money(500, "USD"), "part")
        assert rig.service.wait_refund(refund_id, timeout=10).state is RefundState.REFUNDED
        assert _commits(rig.journal) - before == 2
        # The audit log still has every step, the creation first.
        assert [e.trigger for e in rig.journal.events("sale", sale_id)] == ["create", "send_pay", "pay_succeeded"]
        assert [e.trigger for e in rig.journal.events("refund", refund_id)][:2] == ["create", "send_refund"]
    finally:
        rig.close()


def test_a_receipt_is_queued_in_the_transaction_of_the_outcome_it_prints(tmp_path: Path) -> None:
    """PAID (REFUNDED) and its receipt's print job are one commit: no crash can fall between them,
    and the receipt costs no durable commit of its own. The job holds its key alone; the print
    queue builds the receipt from the journal when it takes the job."""
    from functools import partial

    from devices.messages import Catalogue
    from devices.print_jobs import StoredReceipt
    from devices.print_queue import PrintQueue
    from devices.printer import DummyPrinter
    from pos.config import Config
    from pos.core.engine import PrintReceipt
    from pos.journal.print_jobs import JournalPrintJobs
    from pos.terminal.displays import new_device_board
    from pos.terminal.receipts import Receipts, outcome_receipt, receipt_for

    rig = Rig(tmp_path)
    cfg = Config()
    queue = PrintQueue(JournalPrintJobs(rig.journal), DummyPrinter(), printer_settings=cfg.printer,
                       catalogue=Catalogue.load("en"), receipt_of=partial(outcome_receipt, cfg, rig.journal))
    receipts = Receipts(cfg, rig.journal, queue, new_device_board(), rig.clock.now)
    assert receipts.in_outcome_transaction
    inside: list[tuple[bool, str]] = []

    def writer(command: PrintReceipt) -> None:
        inside.append((rig.journal.db.conn.in_transaction, rig.journal.get_sale(command.sale_id).state.value))
        receipts.queue_with_outcome(command)

    def same_as_read_back(job: str, refund: RefundRecord | None = None) -> bool:
        """The receipt the print queue built and kept for the job is the one the journal's rows give."""
        sale = rig.journal.get_sale(int(job.split(":")[1]) if refund is None else refund.sale_id)
        queue.enqueue(f"{job}:check", receipt_for(cfg, rig.journal, sale, refund), render_later=True)
        return queue.store.receipt_of(job) == queue.store.receipt_of(f"{job}:check")

    rig.service.write_receipts(writer)
    rig.service.recover()
    try:
        before = _commits(rig.journal)
        sale_id = rig.sale("00")
        assert rig.service.wait(sale_id, timeout=10).state is SaleState.PAID
        rig.service.wait_idle(timeout=10)
        assert _commits(rig.journal) - before == 2
        assert inside == [(True, "PAID")]     # the writer saw the outcome, its transaction still open
        assert queue.store.receipt_of(f"sale:{sale_id}") == StoredReceipt(b"", None)   # its key alone
        assert queue.print_pending() == 1
        assert same_as_read_back(f"sale:{sale_id}")
        refund_id = rig.service.refund(sale_id, Money(500, "USD"), "part")
        assert rig.service.wait_refund(refund_id, timeout=10).state is RefundState.REFUNDED
        assert queue.store.receipt_of(f"refund:{refund_id}") == StoredReceipt(b"", None)
        assert not [c for c in rig.notes if isinstance(c, PrintReceipt)]   # not handed out twice
        assert queue.print_pending() == 2
        assert same_as_read_back(f"refund:{refund_id}", rig.journal.get_refund(refund_id))
        assert queue.print_pending() == 1   # the refund's check
    finally:
        rig.close()


def test_the_pay_leaves_after_the_sale_is_on_disk_as_paying(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    seen: list[tuple[str, int]] = []
    gateway = rig.service.gateway
    real_pay = gateway.pay

    def pay(**kw: Any) -> Any:
        # Another connection sees only what was committed.
        with sqlite3.connect(rig.path) as other:
            seen.extend(other.execute("SELECT state, COUNT(*) FROM events e JOIN sales s ON s.sale_id = e.item_id "
                                      "WHERE s.merchant_trans_id = ? GROUP BY s.sale_id",
                                      (kw["merchant_trans_id"],)).fetchall())
        return real_pay(**kw)

    gateway.pay = pay  # type: ignore[method-assign]
    rig.service.recover()
    try:
        sale_id = rig.sale("00")
        assert rig.service.wait(sale_id, timeout=10).state is SaleState.PAID
        assert seen == [("PAYING", 2)]             # the sale, its creation and its PAYING step
    finally:
        rig.close()


def test_a_sale_that_cannot_be_recorded_sends_nothing_and_leaves_no_trace(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.service.recover()
    try:
        # The PAYING step's write fails (its log line: however the sale's row is written).
        rig.journal.db.write("CREATE TRIGGER no_paying BEFORE INSERT ON events WHEN NEW.dest = 'PAYING' "
                             "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
        with pytest.raises(Exception, match="could not record"):
            rig.sale("00")
        assert rig.journal.list_sales() == [] and rig.ledger.to_json(as_datetime(rig.clock.now()))["payments"] == []
        rig.journal.db.write("DROP TRIGGER no_paying")
        deadline = time.monotonic() + 10
        while not rig.service.journal_ok and time.monotonic() < deadline:
            time.sleep(0.01)
        sale_id = rig.sale("00")
        assert rig.service.wait(sale_id, timeout=10).state is SaleState.PAID
    finally:
        rig.close()


def _journal_upgraded_from(path: Path, version: int, *back: str) -> Journal:
    """A new journal taken back to `version` by the statements `back` (undoing the later
    migrations), then opened again: the migrations after `version` run on it."""
    Journal.open(path).close()
    with sqlite3.connect(path) as conn:
        for sql in back:
            conn.execute(sql)
        conn.execute("UPDATE schema_version SET version = ?", (version,))
    journal = Journal.open(path)
    assert journal.schema_version() == len(MIGRATIONS) > version
    return journal


def _plan(journal: Journal, sql: str, params: tuple[Any, ...] = ()) -> str:
    return " | ".join(str(r["detail"]) for r in journal.db.rows("EXPLAIN QUERY PLAN " + sql, params))


def test_migration_9_indexes_what_grows(tmp_path: Path) -> None:
    # A journal at version 8 (as written before the indexes) is brought up to date on open.
    journal = _journal_upgraded_from(
        tmp_path / "journal.db", 8,
        *(f"DROP INDEX {name}" for name in ("sales_created", "refunds_created", "sales_state", "refunds_state",
                                            "till_sales_waiting")),
        "CREATE INDEX sales_state ON sales (state)",
        "ALTER TABLE sales DROP COLUMN result_cause")   # added by migration 10, after these
    try:
        def plan(sql: str) -> str:
            return _plan(journal, sql)

        # Open items, their counts and a day's totals: searched over an index, never a scan of the table.
        for sql in ("SELECT * FROM sales WHERE state IN ('PAYING', 'QUERYING')",
                    "SELECT state, COUNT(*) FROM refunds WHERE state IN ('REFUNDING') GROUP BY state",
                    "SELECT currency, state, COUNT(*), SUM(amount_minor) FROM sales WHERE created_at >= 1 "
                    "AND created_at < 2 AND +state IN ('PAID') GROUP BY currency, state",
                    "SELECT sale_id FROM sales WHERE state = 'PAID' AND updated_at >= 5",
                    "SELECT till_id FROM till_sales WHERE sale_id IS NULL AND state = 'CREATED'"):
            assert "SCAN" not in plan(sql) and "USING" in plan(sql), (sql, plan(sql))
        assert "COVERING INDEX sales_created" in plan(
            "SELECT currency, state, COUNT(*), SUM(amount_minor) FROM sales WHERE created_at >= 1 "
            "AND +state IN ('PAID') GROUP BY currency, state")
    finally:
        journal.close()


def test_migration_12_finds_a_days_refunds_by_their_date_without_a_scan(tmp_path: Path) -> None:
    # A journal at version 11 (as written before the index) is brought up to date on open.
    journal = _journal_upgraded_from(tmp_path / "journal.db", 11, "DROP INDEX refunds_date")
    try:
        # What list_refunds(date=...) asks (reconciliation by day, `pos journal list --date`).
        detail = _plan(journal, "SELECT * FROM refunds WHERE local_date = ? ORDER BY refund_id", ("2026-11-30",))
        assert "SCAN refunds" not in detail and "refunds_date" in detail, detail
    finally:
        journal.close()

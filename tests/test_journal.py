"""The journal file (pos/journal.py) and `pos journal list|show`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pos.cli.main import main
from pos.core.engine import Record
from pos.core.money import Money
from pos.core.outcomes import Cause
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState
from pos.journal.db import BACKSTOP_PAGES, CHECKPOINT_EVERY
from pos.journal.journal import Journal, JournalError
from pos.journal.schema import MIGRATIONS, SCHEMA_VERSION
from pos.sandbox.scenarios import make_code
from tests.test_runner import START, Rig

NOW = START


def new_sale(j: Journal, amount: int = 1250, code: str = "281800000000004321", now: float = NOW):
    return j.create_sale(amount=Money(amount, "USD"), code=code, scanned_at=now, now=now, order_title="Tea")


def test_open_creates_wal_full_and_schema(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "state" / "journal.db")
    assert j.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    assert j._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 2        # FULL
    assert j._conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert j._conn.execute("PRAGMA cache_size").fetchone()[0] == -512      # KiB, not SQLite's 2 MB
    install = j.install_id
    j.close()
    again = Journal.open(tmp_path / "state" / "journal.db")
    assert again.install_id == install and again.schema_version() == SCHEMA_VERSION
    again.close()


def _in_database_file(path: Path, key: str) -> bool:
    """Whether `key` is in the meta table of the database file itself, the WAL ignored (immutable):
    true once a checkpoint copied it back (a new file's tables too are only in the WAL until then)."""
    conn = sqlite3.connect(path.resolve().as_uri() + "?immutable=1", uri=True)
    try:
        return conn.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone() is not None
    except sqlite3.OperationalError:     # no such table: not checkpointed yet
        return False
    finally:
        conn.close()


def test_background_checkpoints_copy_the_wal_back_so_the_writer_need_not(tmp_path: Path) -> None:
    """The daemon's journal checkpoints on a thread of its own every CHECKPOINT_EVERY commits; its
    writing connection keeps SQLite's automatic checkpoint only as a backstop."""
    path = tmp_path / "journal.db"
    j = Journal.open(path)
    db = j.db
    assert j._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000      # SQLite's default
    db.start_checkpoints()
    db.start_checkpoints()                                                          # once is enough
    assert j._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
    assert [t.name for t in threading.enumerate()].count("journal-checkpoint") == 1
    for n in range(CHECKPOINT_EVERY - 1):
        with db.transaction() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (f"k{n}",))
    time.sleep(0.2)
    assert db.checkpoints == 0 and not _in_database_file(path, "k0")    # still only in the WAL
    db.write("INSERT INTO meta (key, value) VALUES ('last', 'x')")      # a lone write counts too
    deadline = time.monotonic() + 10
    while db.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert db.checkpoints == 1
    assert _in_database_file(path, "k0") and _in_database_file(path, "last")
    j.close()
    assert "journal-checkpoint" not in [t.name for t in threading.enumerate()]
    again = Journal.open(path)
    assert again.db.value("SELECT COUNT(*) FROM meta WHERE value = 'x'") == CHECKPOINT_EVERY
    again.close()


def test_an_answers_cause_is_kept_and_an_older_journal_gets_it_from_its_codes(tmp_path: Path) -> None:
    """The sale keeps its last answer's cause (the engine reads it after a restart). A journal written
    before causes were kept is given them from the codes it kept, so its open sales behave as before."""
    path = tmp_path / "journal.db"
    j = Journal.open(path)
    waiting, late, declined = new_sale(j), new_sale(j), new_sale(j)
    j.record(Record(sales=(
        replace(waiting, state=SaleState.QUERYING, result_code="USER_PAYING",
                result_cause=Cause.CUSTOMER_CONFIRMING),
        replace(late, state=SaleState.MANUAL_REVIEW, result_code="CANCEL_EXPIRED",
                result_cause=Cause.TOO_LATE_TO_CANCEL),
        replace(declined, state=SaleState.DECLINED, result_code="RISK_REJECT"))))
    assert [s.result_cause for s in j.list_sales()] == [Cause.CUSTOMER_CONFIRMING, Cause.TOO_LATE_TO_CANCEL, None]
    j._conn.execute("ALTER TABLE sales DROP COLUMN result_cause")   # as before migration 10
    j._conn.execute("UPDATE schema_version SET version = 9")
    j.close()
    j = Journal.open(path)
    try:
        assert [s.result_cause for s in j.list_sales()] == [Cause.CUSTOMER_CONFIRMING, Cause.TOO_LATE_TO_CANCEL,
                                                            None]
    finally:
        j.close()


def test_merchant_trans_ids_unique_across_restarts_and_reinstalls(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "a.db", terminal_id="POS01", timezone="Asia/Shanghai")
    first = new_sale(j)
    j.close()
    j = Journal.open(tmp_path / "a.db", terminal_id="POS01", timezone="Asia/Shanghai")
    second = new_sale(j)
    j.close()
    reinstalled = Journal.open(tmp_path / "b.db", terminal_id="POS01")
    third = new_sale(reinstalled)
    reinstalled.close()
    ids = [first.merchant_trans_id, second.merchant_trans_id, third.merchant_trans_id]
    assert len(set(ids)) == 3 and all(len(i) <= 64 for i in ids)
    assert first.merchant_trans_id.startswith("POS01-20240501-") and first.merchant_trans_id.endswith("-000001")
    assert second.merchant_trans_id.endswith("-000002")
    assert third.merchant_trans_id.split("-")[2] != first.merchant_trans_id.split("-")[2]
    assert first.code_masked == "**************4321"


def test_event_log_is_append_only(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.db")
    sale = new_sale(j)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        j._conn.execute("UPDATE events SET detail = 'x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        j._conn.execute("DELETE FROM events")
    assert [e.trigger for e in j.events("sale", sale.sale_id)] == ["create"]
    j.close()


def test_lists_filters_and_lookups(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.db")
    a = new_sale(j)
    b = new_sale(j, now=NOW + 86400)
    from dataclasses import replace
    j.record(Record(sales=(replace(a, state=SaleState.PAID, acquirement_id="ACQ1"),)))
    assert [s.sale_id for s in j.list_sales(open_only=True)] == [b.sale_id]
    assert [s.sale_id for s in j.list_sales(date="2024-05-02")] == [b.sale_id]
    assert j.get_sale(a.merchant_trans_id).state is SaleState.PAID
    assert j.get_sale(str(a.sale_id)) == j.get_sale(a.sale_id)
    assert j.get_sale("nope") is None and j.get_sale(999) is None
    with pytest.raises(JournalError, match="YYYY-MM-DD"):
        j.list_sales(date="yesterday")
    refund = j.create_refund(sale=j.get_sale(a.sale_id), amount=Money(1000, "USD"), reason="x", now=NOW)
    assert refund.merchant_refund_id.endswith("-R000001") and refund.acquirement_id == "ACQ1"
    with pytest.raises(JournalError, match="above its amount"):
        j.create_refund(sale=j.get_sale(a.sale_id), amount=Money(251, "USD"), reason="x", now=NOW)
    assert {type(i).__name__ for i in j.open_items()} == {"SaleRecord", "RefundRecord"}
    assert j.list_refunds(sale_id=a.sale_id, open_only=True)[0].state is RefundState.REFUND_CREATED
    assert j.integrity_check() == "ok"
    j.close()


def test_a_new_item_is_written_once_as_its_first_step_leaves_it(tmp_path: Path) -> None:
    """create_sale / create_refund hand the first step the new record (CREATED, with the id AUTOINCREMENT
    gives, never one used before) and write the row as that step leaves it, after the "create" line;
    without a first step the record returned is the one get_sale / get_refund read."""
    from pos.core.events import LogEntry
    from pos.journal.till import TillLinks

    j = Journal.open(tmp_path / "j.db", timezone="Asia/Singapore")
    given: list[SaleRecord | RefundRecord] = []

    def first(created: SaleRecord | RefundRecord) -> Record:
        given.append(created)
        if isinstance(created, SaleRecord):
            step = replace(created, state=SaleState.PAYING, pay_sent_at=created.created_at, next_request="pay")
            return Record(sales=(step,), log=(LogEntry(created.created_at, "sale", created.sale_id, "send_pay",
                                                       "CREATED", "PAYING", "pay queued"),))
        rstep = replace(created, state=RefundState.REFUNDING, attempts=1)
        return Record(refunds=(rstep,), log=(LogEntry(created.created_at, "refund", created.refund_id,
                                                      "send_refund", "REFUND_CREATED", "REFUNDING"),))

    plain = j.create_sale(amount=Money(1, "SGD"), code="", scanned_at=NOW, now=NOW, qr=True)
    assert plain == j.get_sale(plain.sale_id) and plain.state is SaleState.CREATED
    j._conn.execute("DELETE FROM sales WHERE sale_id = ?", (plain.sale_id,))
    till = TillLinks(j).new_sale(Money(700, "SGD"), "R-1", "Tea", 1_714_521_600)
    sale = j.create_sale(amount=Money(700, "SGD"), code="281800000000004321", scanned_at=1_714_521_599,
                         now=1_714_521_600, order_title="Tea", reference="R-1", till_id=till.till_id,
                         goods="tea|1|700", first_step=first)
    assert sale.sale_id == plain.sale_id + 1                    # a deleted sale's id is not given again
    assert given == [sale] and sale.state is SaleState.CREATED
    assert j.get_sale(sale.sale_id) == replace(sale, state=SaleState.PAYING, pay_sent_at=sale.created_at,
                                               next_request="pay")
    assert [(e.trigger, e.dest) for e in j.events("sale", sale.sale_id)] == [("create", "CREATED"),
                                                                            ("send_pay", "PAYING")]
    assert TillLinks(j).get(till.till_id).sale_id == sale.sale_id
    j.record(Record(sales=(replace(j.get_sale(sale.sale_id), state=SaleState.PAID, acquirement_id="ACQ9"),)))
    refund = j.create_refund(sale=j.get_sale(sale.sale_id), amount=Money(300, "SGD"), reason="part",
                             now=1_714_521_700, first_step=first)
    assert given[-1] == refund and refund.acquirement_id == "ACQ9"
    assert j.get_refund(refund.refund_id) == replace(refund, state=RefundState.REFUNDING, attempts=1)
    assert [e.trigger for e in j.events("refund", refund.refund_id)] == ["create", "send_refund"]
    plain_refund = j.create_refund(sale=j.get_sale(sale.sale_id), amount=Money(100, "SGD"), reason="x",
                                   now=1_714_521_800)
    assert plain_refund == j.get_refund(plain_refund.refund_id)
    j.close()


def test_a_step_that_changes_what_was_fixed_at_creation_is_refused(tmp_path: Path) -> None:
    """A step writes only what a step can change; a record whose amount, merchantTransId... differ from
    the row's is refused whole (JournalError), never half written."""
    j = Journal.open(tmp_path / "j.db")
    sale = new_sale(j)
    for changed in (replace(sale, amount=Money(1, "USD"), state=SaleState.PAID),
                    replace(sale, merchant_trans_id="OTHER", state=SaleState.PAID),
                    replace(sale, goods="x", state=SaleState.PAID),
                    replace(sale, sale_id=999, state=SaleState.PAID)):
        with pytest.raises(JournalError, match="fixed when it was created"):
            j.record(Record(sales=(changed,)))
    assert j.get_sale(sale.sale_id) == sale
    assert [e.trigger for e in j.events("sale", sale.sale_id)] == ["create"]
    paid = replace(sale, state=SaleState.PAID, acquirement_id="A1", result_code="SUCCESS", updated_at=NOW + 1)
    j.record(Record(sales=(paid,)))
    assert j.get_sale(sale.sale_id) == paid
    refund = j.create_refund(sale=paid, amount=Money(100, "USD"), reason="r", now=NOW + 2)
    with pytest.raises(JournalError, match="fixed when it was created"):
        j.record(Record(refunds=(replace(refund, reason="other", state=RefundState.REFUNDED),)))
    assert j.get_refund(refund.refund_id) == refund
    with pytest.raises(JournalError, match="fixed when it is created"):   # nor may a new item's first step
        j.create_sale(amount=Money(100, "USD"), code="281800000000001111", scanned_at=NOW, now=NOW,
                      first_step=lambda created: Record(sales=(replace(created, amount=Money(1, "USD")),)))
    assert [s.sale_id for s in j.list_sales()] == [sale.sale_id]
    j.close()


def test_integrity_check_reports_broken_rules(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.db")
    new_sale(j)
    j._conn.execute("UPDATE sales SET code_masked = '281800000000004321'")
    assert "more than 4 digits" in j.integrity_check()
    j.close()


def test_payment_code_never_reaches_the_disk(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.service.recover()
    codes = []
    try:
        for scenario in ("00", "10", "15"):
            code = make_code(scenario)
            codes.append(code)
            sale_id = rig.service.start_sale(Money(500, "USD"), code, rig.clock.now())
            rig.service.wait(sale_id, timeout=20)
    finally:
        rig.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("journal.db"))
    for code in codes:
        assert code.encode() not in blob and code[:-4].encode() not in blob
        assert code[-4:].encode() in blob                 # the masked form is kept


def test_crash_hook_value_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POS_CRASH_AT", "sometime")
    with pytest.raises(JournalError, match="before:N or after:N"):
        Journal.open(tmp_path / "j.db")


def test_crash_hook_kills_at_the_commit(tmp_path: Path) -> None:
    code = ("from pos.journal.journal import Journal; from pos.core.money import Money\n"
            f"j = Journal.open({str(tmp_path / 'j.db')!r})\n"
            "j.create_sale(amount=Money(1, 'USD'), code='280000000000000001', scanned_at=0, now=0)\n"
            "j.create_sale(amount=Money(2, 'USD'), code='280000000000000002', scanned_at=0, now=0)\n")
    env = {"POS_CRASH_AT": "before:2", "PATH": "/usr/bin:/bin"}   # the second commit of this process
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=60)
    assert proc.returncode == -9
    j = Journal.open(tmp_path / "j.db")
    assert [s.amount.minor for s in j.list_sales()] == [1]
    j.close()


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "terminal.toml"
    cfg.write_text(f'[terminal]\nstate_dir = "{tmp_path}"\ntimezone = "Asia/Shanghai"\n[ecr]\nenabled = false\n')
    return cfg


def test_cli_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    j = Journal.open(tmp_path / "journal.db")
    sale = new_sale(j)
    j.close()
    assert main(["journal", "list", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert sale.merchant_trans_id in out and "12.50 USD" in out and "4321" in out and "CREATED" in out
    assert "281800000000004321" not in out
    assert main(["journal", "list", "--open", "--date", "2024-05-01", "--config", str(cfg)]) == 0
    assert sale.merchant_trans_id in capsys.readouterr().out
    assert main(["journal", "show", sale.merchant_trans_id, "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "history:" in out and "create" in out and "12.50 USD" in out


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    assert main(["journal", "list", "--config", str(cfg)]) == 3          # no journal yet
    assert "no journal at" in capsys.readouterr().err
    Journal.open(tmp_path / "journal.db").close()
    assert main(["journal", "show", "42", "--config", str(cfg)]) == 1
    assert "no sale or refund '42'" in capsys.readouterr().err
    assert main(["journal", "list", "--date", "2024-13-01", "--config", str(cfg)]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err

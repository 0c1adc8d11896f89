"""The benchmark's large journal (tests/bench_journal.py), built small: it holds what `make bench`'s
figures rely on. Layout only, no speed (speed lives in `make bench`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pos.core.records import SaleRecord, SaleState
from pos.journal.journal import Journal
from pos.journal.print_jobs import missing_receipts
from pos.journal.till import TillLinks
from pos.terminal.receipts import RECEIPT_CATCH_UP
from tests.bench_journal import BUILD, TERMINAL_ID, TIMEZONE, build, cached_journal


def test_the_bench_journal_has_closed_days_an_open_day_open_sales_and_no_receipt_owed(tmp_path: Path) -> None:
    info = build(tmp_path / "j.db", sales=2_000, day_sales=500, open_sales=7, progress=False)
    assert info["sales"] == 2_007 and info["day_sales"] == 500 and info["past_days"] == 3
    journal = Journal.open(tmp_path / "j.db", terminal_id=TERMINAL_ID, timezone=TIMEZONE)
    try:
        open_items = journal.open_items()
        assert len(open_items) == 7
        assert all(isinstance(s, SaleRecord) and s.state is SaleState.QUERYING and s.next_request == "query"
                   for s in open_items)
        day, opened = TillLinks(journal).open_day()
        assert day == 4                                   # three past days closed by their Z
        today = journal.db.value("SELECT COUNT(*) FROM sales WHERE created_at >= ?", (opened,))
        assert today == 500 and journal.db.value("SELECT MIN(sale_id) FROM sales WHERE created_at >= ?",
                                                 (opened,)) == info["first_day_sale_id"]
        # The receipts a start would still owe were printed; older sales have no print job.
        assert missing_receipts(journal, time.time() - RECEIPT_CATCH_UP) == []
        assert 0 < info["print_jobs"] <= 500 + 20
        # New sales continue after the bulk ids, with the daemon's merchantTransId form.
        last = journal.db.value("SELECT merchant_trans_id FROM sales WHERE sale_id = 2007")
        assert last.startswith(f"{TERMINAL_ID}-") and last.endswith("-002007")
    finally:
        journal.close()


def test_the_cache_is_reused_and_same_seed_builds_the_same_amounts(tmp_path: Path) -> None:
    path, info = cached_journal(sales=300, day_sales=100, open_sales=2, seed=5, cache=tmp_path)
    assert not info["cached"] and f"-b{BUILD}." in path.name
    again, info2 = cached_journal(sales=300, day_sales=100, open_sales=2, seed=5, cache=tmp_path)
    assert again == path and info2["cached"]
    other = build(tmp_path / "other.db", sales=300, day_sales=100, open_sales=2, seed=5, progress=False)
    assert json.loads(path.with_suffix(".json").read_text())["seed"] == other["seed"] == 5

    def amounts(p: Path) -> list[int]:
        j = Journal.open(p, terminal_id=TERMINAL_ID, timezone=TIMEZONE, read_only=True)
        try:
            return [int(r["amount_minor"]) for r in j.db.rows("SELECT amount_minor FROM sales ORDER BY sale_id")]
        finally:
            j.close()

    assert amounts(path) == amounts(tmp_path / "other.db")

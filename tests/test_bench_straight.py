"""`make bench`'s straight-line reference sale (tests/bench_straight.py): it pays, records and tells the
truth as far as it goes, so its time is a sale's time. Behaviour only, no speed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pos.gateway.keys import generate_key_folder
from tests.bench_daemon import SandboxProcess
from tests.bench_straight import StraightSale


def test_the_straight_line_sale_is_paid_recorded_with_a_masked_code_and_refuses_what_is_not_paid(tmp_path: Path):
    keys = tmp_path / "keys"
    generate_key_folder(keys)
    sandbox = SandboxProcess(keys)
    try:
        straight = StraightSale(keys, sandbox.url)
        try:
            assert straight.sale("00") > 0
            with pytest.raises(RuntimeError, match="DECLINED"):
                straight.sale("01")
            with pytest.raises(RuntimeError, match="QUERYING"):   # the answer's signature is bad
                straight.sale("16")
            with sqlite3.connect(straight.db_path) as db:
                rows = db.execute("SELECT state, code_masked, acquirement_id IS NOT NULL FROM sales "
                                  "ORDER BY id").fetchall()
        finally:
            straight.stop()
    finally:
        sandbox.stop()
    assert [(state, paid_id) for state, _code, paid_id in rows] == [("PAID", 1), ("DECLINED", 0), ("QUERYING", 0)]
    assert all(code.startswith("*" * 14) and code[14:].isdigit() and len(code) == 18 for _, code, _ in rows)

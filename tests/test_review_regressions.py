"""Regressions found by the money-path review: each test failed before its fix.

Engine tests run on the virtual-time harness; terminal tests use the same
in-process rig as tests/test_terminal.py (real journal, runner, catalogue,
sandbox ledger behind DirectGateway).
"""

from __future__ import annotations

import time
from pathlib import Path

from devices.messages import Catalogue
from devices.scanner import Scan
from pos.core.engine import Show
from pos.core.money import Money
from pos.core.outcomes import GatewayResult, QueryOutcome, Succeeded, Unknown
from pos.core.records import SaleState
from pos.sandbox.direct import DirectGateway
from pos.sandbox.scenarios import make_code
from tests.engine_harness import Harness
from tests.test_terminal import Rig

CLOSED_Q = Succeeded(query=QueryOutcome.CLOSED)


# ----------------------------------------------------------------------------------------------
# 1. A sale declined by a payQuery CLOSED status (the pay's own answer was lost) was shown with
#    the text of the query's resultCode, SUCCESS: "Done" on both displays and on the till.
#    A cashier reading "Done" hands over the goods although no money was taken.

def test_sale_closed_by_query_is_shown_as_declined_not_done() -> None:
    h = Harness()
    h.start()
    h.answer(Unknown("timeout"), after=0.5)
    h.advance()
    out = h.answer(CLOSED_Q)
    assert h.state() is SaleState.DECLINED
    shows = [c for c in out if isinstance(c, Show)]
    assert [s.key for s in shows] == ["declined"]
    text = Catalogue.load("en")
    assert text.cashier(shows[0].key) == text.cashier("declined")


class _LostAnswers(DirectGateway):
    """The pay reaches the ledger, but its answer is lost in transit (a read timeout)."""

    def pay(self, **kwargs) -> GatewayResult:  # type: ignore[override]
        super().pay(**kwargs)
        return Unknown("timeout")


def test_till_view_of_a_sale_closed_by_query_says_declined(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.payments.gateway = _LostAnswers(rig.ledger, time.time)
        view = rig.terminal.create_sale(Money(700, "SGD"), "r1", "")
        rig.terminal.on_scanner_event(Scan(make_code("01")))   # the ledger declines (balance)
        done = rig.settle(view["id"])
        assert done["state"] == "DECLINED" and done["final"] is True
        declined = rig.terminal.cashier_text.cashier("declined")
        assert done["message"]["cashier"] == list(declined)
        assert rig.cashier(lambda lines: lines == declined) == declined
    finally:
        rig.close()


# ----------------------------------------------------------------------------------------------
# 2. The journal commits a sale and its pay leaves before the till row is linked to it. A stop
#    in between left the till row unlinked, and the next start closed it as CANCELLED ("no money
#    was taken", final) while the recovered sale went on to PAID: the till told the customer to
#    pay again.

def test_till_sale_whose_link_was_lost_at_a_crash_follows_the_journal(tmp_path: Path) -> None:
    first = Rig(tmp_path)
    view = first.terminal.create_sale(Money(1000, "SGD"), "r1", "Lunch")
    # A journal from before the link shared the sale's transaction: the sale made, its till row
    # never linked (the terminal stopped between the two writes).
    sale_id = first.payments.start_sale(Money(1000, "SGD"), make_code("00"), time.time(), "Lunch", "r1")
    assert first.payments.wait(sale_id, 5).state is SaleState.PAID
    first.close()
    second = Rig(tmp_path)
    try:
        after = second.terminal.get_sale(view["id"])
        assert after["state"] == "PAID" and after["merchantTransId"]
        # and a till row that really never reached a scan is still closed
        other = second.terminal.create_sale(Money(300, "SGD"), "r2", "")
    finally:
        second.close()
    third = Rig(tmp_path)
    try:
        assert third.terminal.get_sale(other["id"])["state"] == "CANCELLED"
        assert third.terminal.get_sale(view["id"])["state"] == "PAID"
    finally:
        third.close()


# ----------------------------------------------------------------------------------------------
# 3. After the pay had left, the terminal linked the till row to the journal's sale in a write of
#    its own. If that write failed, the terminal stayed in "Scan customer code" for the same till
#    sale although the customer had been charged: the sale's texts were dropped (the link was how
#    the terminal knew its current sale) and the next scan of the same till sale charged the
#    customer again. The link is now written in the sale's own journal transaction: if it fails,
#    the sale is not created and no pay leaves - nothing is charged, once or twice.

class _FailingLink:
    """The journal's SQLite connection, with the till-row link write failing (disk full, busy)."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def execute(self, sql: str, *args):
        if sql.startswith("UPDATE till_sales SET sale_id"):
            import sqlite3
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def test_a_failed_till_link_neither_hides_the_outcome_nor_charges_twice(tmp_path: Path) -> None:
    import datetime as dt
    rig = Rig(tmp_path)
    real = rig.journal.db.conn
    try:
        view = rig.terminal.create_sale(Money(1000, "SGD"), "r1", "")
        rig.journal.db.conn = _FailingLink(real)  # type: ignore[assignment]
        rig.terminal.on_scanner_event(Scan(make_code("00")))
        error = rig.terminal.cashier_text.cashier("journal_error")
        assert rig.cashier(lambda lines: lines == error) == error        # the cashier sees the truth
        assert rig.journal.list_sales() == []                    # the sale went with its link
        rig.terminal.on_scanner_event(Scan(make_code("00")))      # a second scan for the same till sale
        rig.payments.wait_idle(5)
        assert rig.ledger.to_json(dt.datetime.now(dt.UTC))["payments"] == []   # nothing charged
        assert len(rig.journal.list_sales()) == 0
        assert rig.terminal.get_sale(view["id"])["state"] != "PAID"   # the till sees it too
        assert rig.terminal.devices["journal"].ok is False       # and no new sale until someone looks
    finally:
        rig.journal.db.conn = real
        rig.close()


# ----------------------------------------------------------------------------------------------
# 4. The gateway's own texts (resultMsg, and our Unknown reasons) went into the journal verbatim:
#    a gateway message that quotes the payment code ("code 28... is not valid"; the real message
#    texts are not published, reference §11) kept the bearer token in full on disk.

class _QuotingGateway(DirectGateway):
    def pay(self, *, identity_code: str, **kwargs) -> GatewayResult:  # type: ignore[override]
        from pos.core.outcomes import Failed
        return Failed("AUTH_CODE_ILLEGAL", f"identityCode {identity_code} is not valid", "12005009")


def test_gateway_texts_quoting_the_code_are_masked_in_the_journal(tmp_path: Path) -> None:
    from pos.config import PaymentSection
    from pos.journal.journal import Journal
    from pos.payments.runner import PaymentRunner
    from pos.sandbox.ledger import Ledger

    journal = Journal.open(tmp_path / "journal.db")
    payments = PaymentRunner(journal, _QuotingGateway(Ledger(), time.time), PaymentSection())
    code = make_code("00")
    try:
        payments.recover()
        sale_id = payments.start_sale(Money(500, "USD"), code, time.time())
        sale = payments.wait(sale_id, 5)
        assert sale.state is SaleState.DECLINED
        assert code not in sale.result_message and code[-4:] in sale.result_message
        assert all(code not in e.detail for e in journal.events("sale", sale_id))
    finally:
        payments.stop()
        journal.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("journal.db*"))
    assert code.encode() not in raw

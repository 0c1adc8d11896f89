"""Regressions found by the money-path review: each test failed before its fix.

Engine tests run on the virtual-time harness; terminal tests use the same
in-process rig as tests/test_terminal.py (real journal, runner, catalogue,
sandbox ledger behind DirectGateway).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devices.messages import Catalogue
from devices.scanner import Scan
from pos.engine import Show
from pos.gateway.results import GatewayResult, Succeeded, Unknown
from pos.money import Money
from pos.records import SaleState
from pos.sandbox.direct import DirectGateway
from pos.sandbox.scenarios import make_code
from tests.engine_harness import Harness
from tests.test_terminal import Rig

CLOSED_Q = Succeeded({"acquirementStatus": "CLOSED"})


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
        assert rig.cashier(lambda l: l == declined) == declined
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
    # What the terminal does on the scan, stopped just before it links the till row.
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

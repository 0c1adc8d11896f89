"""The engine reads an answer only through the outcomes' typed fields, never a protocol's body.

Each protocol's client fills `gateway_id`, `refund_gateway_id`, `customer_amount`
and `conversion_rate` from its own field names (tests/test_offline_client.py,
tests/test_ams_client.py, tests/test_notify.py, tests/test_notifications.py check
that); here the engine is fed outcomes whose body fails the test if anything
looks into it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, NoReturn

from pos.core.engine import Record, SendRefund
from pos.core.money import Money
from pos.core.outcomes import Failed, QueryOutcome, Succeeded, Unknown
from pos.core.records import RefundState, SaleState
from tests.engine_harness import Harness

ACQ = "2027011511121280010016000000000001"
CORE = Path(__file__).resolve().parent.parent / "pos" / "core"


class Unread(dict[str, Any]):
    """An answer body with protocol names in it that fails the test if it is read at all."""

    def __init__(self) -> None:
        super().__init__(acquirementId="WRONG", paymentId="WRONG", refundId="WRONG",
                         payAmount={"currency": "EUR", "value": "1"}, conversionRate="0")

    def _read(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError("the engine read an answer's body")

    __getitem__ = get = __contains__ = __iter__ = __len__ = keys = items = values = _read


def logged(h: Harness) -> str:
    return "\n".join(e.detail for c in h.commands if isinstance(c, Record) for e in c.log)


def test_a_paid_sale_keeps_the_typed_ids_and_what_the_customer_paid() -> None:
    h = Harness()
    h.start()
    h.answer(Succeeded(Unread(), gateway_id=ACQ, customer_amount=Money(8888, "CNY"), conversion_rate="7.1100"))
    rec = h.records[1]
    assert rec.state is SaleState.PAID and rec.acquirement_id == ACQ
    assert (rec.pay_amount_minor, rec.pay_currency, rec.conversion_rate) == (8888, "CNY", "7.1100")
    assert f"acquirementId={ACQ}" in logged(h)   # the id Alipay's support asks for, in the journal's log


def test_an_answer_with_no_body_at_all_is_enough() -> None:
    h = Harness()
    h.start()
    h.answer(Unknown("gateway answered U", "USER_PAYING", gateway_id=ACQ))   # names the payment, settles nothing
    assert h.state() is SaleState.QUERYING and h.records[1].acquirement_id == ACQ
    h.advance()
    h.answer(Succeeded(query=QueryOutcome.PAID, gateway_id=ACQ, customer_amount=Money(1250, "USD")))
    rec = h.records[1]
    assert rec.state is SaleState.PAID
    # Paid in the order's own currency: nothing converted, nothing to print.
    assert (rec.pay_amount_minor, rec.pay_currency, rec.conversion_rate) == (None, None, None)


def test_a_declined_answer_may_name_the_payment() -> None:
    h = Harness()
    h.start()
    h.answer(Failed("ORDER_IS_CLOSED", "closed", gateway_id=ACQ))
    assert h.state() is SaleState.DECLINED and h.records[1].acquirement_id == ACQ


def test_an_answer_without_ids_keeps_none() -> None:
    h = Harness()
    h.start()
    h.answer(Succeeded(Unread()))
    rec = h.records[1]
    assert rec.state is SaleState.PAID and rec.acquirement_id is None and rec.pay_amount_minor is None


def test_a_refund_keeps_alipays_refund_id_from_the_typed_field() -> None:
    h = Harness()
    h.start_refund()
    assert isinstance(h.inflight[0], SendRefund)
    h.answer(Succeeded(Unread(), refund_gateway_id="RF-1", gateway_id=ACQ))
    assert h.refunds[1].state is RefundState.REFUNDED and h.refunds[1].gateway_refund_id == "RF-1"


def test_no_module_of_the_core_reads_an_answers_body() -> None:
    readers = [f"{path.name}:{node.lineno}" for path in sorted(CORE.glob("*.py"))
               for node in ast.walk(ast.parse(path.read_text("utf-8")))
               if isinstance(node, ast.Attribute) and node.attr == "data"]
    assert readers == []

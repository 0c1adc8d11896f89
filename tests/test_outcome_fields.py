"""The engine reads an answer only through the outcomes' typed fields, never a protocol's body.

Each protocol's client fills `gateway_id`, `refund_gateway_id`, `customer_amount`
and `conversion_rate` from its own field names (tests/test_offline_client.py,
tests/test_ams_client.py, tests/test_notify.py, tests/test_notifications.py check
that); here the engine is fed outcomes whose body fails the test if anything
looks into it.

Nor does the core know a protocol's result codes: each client classifies its
own codes as a `Cause` (its table in pos/data/, column cause), and the core
reads only that; no module of pos/core holds a result code at all.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from pos.config import PaymentSection
from pos.core.engine import Record, SendRefund, Show
from pos.core.money import Money
from pos.core.outcomes import Cause, Failed, GatewayResult, QueryOutcome, Succeeded, Unknown
from pos.core.records import RefundState, SaleState
from pos.gateway.ams import codes as ams_codes
from pos.gateway.ams.notify import notification_body_result, refund_body_result
from pos.gateway.offline import codes as offline_codes
from pos.gateway.offline.answer import read_fields
from pos.gateway.offline.status import DEFAULT_NOT_FOUND
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
    # names the payment, settles nothing
    h.answer(Unknown("gateway answered U", "USER_PAYING", cause=Cause.CUSTOMER_CONFIRMING, gateway_id=ACQ))
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


# -- result codes: classified by each protocol, never known to the core ---------------------------

# What each protocol's table says its codes mean for the engine's rules; every other code: no cause.
CAUSES = {
    "offline": {"USER_PAYING": Cause.CUSTOMER_CONFIRMING, "PAYMENT_IN_PROCESS": Cause.CUSTOMER_CONFIRMING,
                "CANCEL_EXPIRED": Cause.TOO_LATE_TO_CANCEL},
    "ams": {"USER_PAYING": Cause.CUSTOMER_CONFIRMING, "PAYMENT_IN_PROCESS": Cause.CUSTOMER_CONFIRMING,
            "CANCEL_EXPIRED": Cause.TOO_LATE_TO_CANCEL},
}
TABLES = {"offline": offline_codes.result_codes(), "ams": ams_codes.result_codes()}
CLASSIFIERS: dict[str, Callable[[GatewayResult], GatewayResult]] = {
    "offline": offline_codes.classified, "ams": ams_codes.classified}


def every_result_code() -> set[str]:
    """Every code a gateway may answer: both protocols' tables and the configured not-found codes."""
    return {*TABLES["offline"], *TABLES["ams"], *DEFAULT_NOT_FOUND, *PaymentSection().not_found_codes}


def codes_held(source: str) -> list[str]:
    """`line: code` for every result code a module's strings hold, as a value or inside a text."""
    word = re.compile(r"\b(" + "|".join(sorted(every_result_code(), key=len, reverse=True)) + r")\b")
    return sorted(f"{node.lineno}: {found.group(0)}" for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and (found := word.search(node.value)))


def test_no_module_of_the_core_holds_a_gateway_result_code() -> None:
    """Not as a value, not in a text: a string in pos/core naming a result code is a protocol rule
    that belongs to the protocol's client (comments may cite the seeds' codes)."""
    held = {path.name: codes_held(path.read_text("utf-8")) for path in sorted(CORE.glob("*.py"))}
    assert {name: codes for name, codes in held.items() if codes} == {}


def test_the_source_check_would_see_a_code() -> None:
    source = 'X = frozenset({"USER_PAYING"})\nY = f"after {1} CANCEL_EXPIRED"\nZ = "SUCCESS_IDEMPOTENT_ERROR"'
    assert codes_held(source) == ["1: USER_PAYING", "2: CANCEL_EXPIRED", "3: SUCCESS_IDEMPOTENT_ERROR"]


@pytest.mark.parametrize("protocol", ["offline", "ams"])
def test_each_protocol_classifies_its_codes(protocol: str) -> None:
    """Every code of a protocol's table, answered F or U, gets the cause its table gives (or none)."""
    classify, expected = CLASSIFIERS[protocol], CAUSES[protocol]
    assert set(expected) <= set(TABLES[protocol])
    for code in TABLES[protocol]:
        for answer in (Failed(code, "why"), Unknown("gateway answered U", code)):
            got = classify(answer)
            assert not isinstance(got, Succeeded) and got.cause is expected.get(code), (protocol, code)
            assert got.code == code   # the code itself is kept as it came (the journal, the texts)
    assert classify(Succeeded(code="SUCCESS")) == Succeeded(code="SUCCESS")
    assert classify(Unknown("timeout", no_answer=True)).cause is None    # nothing came back: no code, no cause


def test_the_in_process_sandbox_and_notifications_classify_too() -> None:
    """The in-process gateway and the notify.pay reading go through the offline answer reading;
    the v1 notifications classify their own codes."""
    confirming = read_fields(Unknown("gateway answered U", "USER_PAYING"), {"acquirementId": "A1"})
    assert confirming.cause is Cause.CUSTOMER_CONFIRMING and confirming.gateway_id == "A1"  # type: ignore[union-attr]
    late = read_fields(Failed("CANCEL_EXPIRED", "too late"), {})
    assert late.cause is Cause.TOO_LATE_TO_CANCEL  # type: ignore[union-attr]
    waiting = notification_body_result({"result": {"resultStatus": "U", "resultCode": "PAYMENT_IN_PROCESS"}})
    assert isinstance(waiting, Unknown) and waiting.cause is Cause.CUSTOMER_CONFIRMING
    closed = notification_body_result({"result": {"resultStatus": "F", "resultCode": "RISK_REJECT"}})
    assert isinstance(closed, Failed) and closed.cause is None and closed.query is QueryOutcome.CLOSED
    pending = refund_body_result({"result": {"resultStatus": "U", "resultCode": "REFUND_IN_PROCESS"},
                                  "refundStatus": "PROCESSING"})
    assert isinstance(pending, Unknown) and pending.cause is None


def test_the_engine_reads_the_cause_not_the_code() -> None:
    """The same code with another cause (a protocol that classifies it otherwise) is read by its cause."""
    asked = Harness()
    asked.start()
    out = asked.answer(Unknown("gateway answered U", "ANY_WORDS", cause=Cause.CUSTOMER_CONFIRMING))
    assert [c.key for c in asked.of(Show, out)] == ["confirm_in_app"]
    assert asked.records[1].result_cause is Cause.CUSTOMER_CONFIRMING
    neutral = Harness()
    neutral.start()
    out = neutral.answer(Unknown("gateway answered U", "USER_PAYING"))   # not classified: no cause
    assert [c.key for c in neutral.of(Show, out)] == ["checking"]

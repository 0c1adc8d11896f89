"""The payment engine: sale and refund state machines with no I/O (sans-IO, like h11).

The engine is fed events (a sale to start, a gateway answer, a clock tick, a
cashier abort, recovery after a restart) and answers with commands (record
this, send that request, show this message, print, alarm). It never sleeps,
never reads the wall clock (every event carries `now` from the caller's
clock) and never touches the network or the disk, so a test runs the
60-second query schedule of seed 003 in milliseconds.

Ordering contract: the first command of every answer is a `Record` holding
the new state of every item that changed; the caller commits it to the
journal before it runs any command after it (design rule 1, write before you
send). The engine keeps the schedule itself: a request is emitted only when
it is due and only when no other request of the same item is in flight, so
the caller sends each Send* command at once.

The two transition tables below are the whole state machine, as data
(`transitions`, auto_transitions=False, callables only). Seed 003 and
reference §12 are behind every number; the numbers come from [payment].
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Union

from transitions import EventData, Machine

from pos.config import PaymentSection
from pos.core.errors import UserError
from pos.core.outcomes import Failed, GatewayResult, QueryOutcome, Succeeded
from pos.gateway.offline.status import query_outcome
from pos.core.money import Money
from pos.core.records import (
    REFUND_FINAL, SALE_ACTIVE, SALE_FINAL, RefundRecord, RefundState, SaleRecord, SaleState,
)

__all__ = [
    # events
    "StartSale", "StartRefund", "GatewayAnswer", "Tick", "Abort", "Recover", "Event",
    # commands
    "Record", "LogEntry", "SendPay", "SendQuery", "SendCancel", "SendRefund", "Show",
    "PrintReceipt", "Alarm", "Finished", "Command",
    # engine
    "Engine", "SaleRefused", "RefundRefused", "SALE_TRANSITIONS", "REFUND_TRANSITIONS",
    "SALE_STATES", "REFUND_STATES",
]

S = SaleState
R = RefundState


# --------------------------------------------------------------------------- events

@dataclass(frozen=True)
class StartSale:
    """A sale the journal has just created (state CREATED, merchantTransId committed)."""

    sale: SaleRecord
    identity_code: str = field(repr=False)   # bearer token: never in a repr or a log
    now: float


@dataclass(frozen=True)
class StartRefund:
    refund: RefundRecord   # created by the journal (merchantRefundId committed)
    now: float


@dataclass(frozen=True)
class GatewayAnswer:
    kind: Literal["sale", "refund"]
    item_id: int
    request: Literal["pay", "query", "cancel", "refund"]
    seq: int                 # the seq of the Send* command this answers
    result: GatewayResult
    now: float


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class Abort:
    """The cashier cancels the sale on the terminal or the till."""

    sale_id: int
    now: float


@dataclass(frozen=True)
class Recover:
    """After a restart: every sale and refund the journal holds that is not final."""

    sales: tuple[SaleRecord, ...]
    refunds: tuple[RefundRecord, ...]
    now: float


Event = Union[StartSale, StartRefund, GatewayAnswer, Tick, Abort, Recover]


# ------------------------------------------------------------------------- commands

@dataclass(frozen=True)
class LogEntry:
    at: float
    item_kind: str
    item_id: int
    trigger: str
    source: str
    dest: str
    detail: str = ""


@dataclass(frozen=True)
class Record:
    """Commit these records and log lines before running any later command."""

    sales: tuple[SaleRecord, ...] = ()
    refunds: tuple[RefundRecord, ...] = ()
    log: tuple[LogEntry, ...] = ()


@dataclass(frozen=True)
class SendPay:
    sale_id: int
    seq: int
    due: float
    merchant_trans_id: str
    amount: Money
    order_title: str
    identity_code: str = field(repr=False)


@dataclass(frozen=True)
class SendQuery:
    sale_id: int
    seq: int
    due: float
    merchant_trans_id: str


@dataclass(frozen=True)
class SendCancel:
    sale_id: int
    seq: int
    due: float
    merchant_trans_id: str


@dataclass(frozen=True)
class SendRefund:
    refund_id: int
    seq: int
    due: float
    acquirement_id: str
    merchant_refund_id: str
    amount: Money
    reason: str


@dataclass(frozen=True)
class Show:
    """A message for the cashier/customer display; `key` is a message-catalogue key."""

    key: str
    params: dict[str, str] = field(default_factory=dict)
    sale_id: int | None = None
    refund_id: int | None = None


@dataclass(frozen=True)
class PrintReceipt:
    sale_id: int
    refund_id: int | None = None


@dataclass(frozen=True)
class Alarm:
    text: str
    sale_id: int | None = None
    refund_id: int | None = None


@dataclass(frozen=True)
class Finished:
    """An item reached a state that ends the cashier's (or manager's) wait."""

    kind: Literal["sale", "refund"]
    item_id: int
    state: str


Command = Union[Record, SendPay, SendQuery, SendCancel, SendRefund, Show, PrintReceipt, Alarm, Finished]


class SaleRefused(UserError):
    """A new sale cannot start; `key` is the display message key (busy, scan_too_old, ...)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class RefundRefused(UserError):
    """A refund is not allowed; the message says why."""


# ------------------------------------------------------------- the working models

class _Item(ABC):
    """Mutable working copy of one record, driven by a `transitions` Machine."""

    kind: str = ""
    state: str
    engine: "Engine"

    def __init__(self, engine: "Engine", record: Any) -> None:
        self.engine = engine
        self.__dict__.update({f.name: getattr(record, f.name) for f in fields(record)})
        self.state = record.state.value
        self.awaiting: tuple[str, int] | None = None   # (request, seq) in flight
        self.last: Any = record                        # the last record handed out

    @property
    @abstractmethod
    def item_id(self) -> int:
        """The journal id of the sale or refund."""

    def schedule(self, request: str, at: float) -> None:
        self.next_request = request
        self.next_at = at


class _Sale(_Item):
    kind = "sale"
    identity_code: str | None = None

    @property
    def item_id(self) -> int:
        return self.sale_id  # type: ignore[attr-defined,no-any-return]

    def snapshot(self) -> SaleRecord:
        values = {f.name: getattr(self, f.name) for f in fields(SaleRecord)}
        values["state"] = SaleState(self.state)
        return SaleRecord(**values)


class _Refund(_Item):
    kind = "refund"

    @property
    def item_id(self) -> int:
        return self.refund_id  # type: ignore[attr-defined,no-any-return]

    def snapshot(self) -> RefundRecord:
        values = {f.name: getattr(self, f.name) for f in fields(RefundRecord)}
        values["state"] = RefundState(self.state)
        return RefundRecord(**values)


def _now(ev: EventData) -> float:
    now: float = ev.kwargs["now"]  # epoch seconds from the event, never the wall clock
    return now


def _result(ev: EventData) -> GatewayResult | None:
    return ev.kwargs.get("result")


# ------------------------------------------------------- sale callbacks (pure)

def _sale_show(key: str) -> Callable[[EventData], None]:
    def show(ev: EventData) -> None:
        sale: _Sale = ev.model
        sale.engine._emit(Show(key, {"amount": sale.amount.display()}, sale_id=sale.sale_id))
    show.__name__ = f"show_{key}"
    return show


def _queue_pay(ev: EventData) -> None:
    sale: _Sale = ev.model
    sale.schedule("pay", _now(ev))


def _enter_querying(ev: EventData) -> None:
    sale: _Sale = ev.model
    now = _now(ev)
    if sale.querying_since is None:  # type: ignore[attr-defined]
        sale.querying_since = now
    # Seed 003: the first payQuery a little after the unknown pay, not at once.
    sale.schedule("query", now + sale.engine.settings.query_first_delay)
    sale.engine._emit(Show("checking", {"amount": sale.amount.display()}, sale_id=sale.sale_id))


def _deadline(sale: _Sale) -> float:
    since = sale.querying_since if sale.querying_since is not None else sale.pay_sent_at  # type: ignore[attr-defined]
    return (since if since is not None else 0.0) + sale.engine.settings.query_deadline


def _before_deadline(ev: EventData) -> bool:
    return _now(ev) < _deadline(ev.model)


def _not_found_retry_left(ev: EventData) -> bool:
    sale: _Sale = ev.model
    # Seed 003 note 1: after ORDER_NOT_EXIST, query "another two times" 5-7 s apart.
    return sale.not_found_count <= sale.engine.settings.not_found_retries and _before_deadline(ev)  # type: ignore[attr-defined]


def _count_not_found(ev: EventData) -> None:
    ev.model.not_found_count += 1


def _reset_not_found(ev: EventData) -> None:
    ev.model.not_found_count = 0


def _schedule_query(ev: EventData) -> None:
    sale: _Sale = ev.model
    now = _now(ev)
    # The last query lands on the deadline itself; its answer decides whether to cancel.
    sale.schedule("query", min(now + sale.engine.jitter(), max(_deadline(sale), now)))


def _schedule_query_now(ev: EventData) -> None:
    ev.model.schedule("query", _now(ev))


def _enter_cancelling(ev: EventData) -> None:
    sale: _Sale = ev.model
    sale.schedule("cancel", _now(ev))
    sale.engine._emit(Show("cancelling", {"amount": sale.amount.display()}, sale_id=sale.sale_id))


def _cancel_retry_left(ev: EventData) -> bool:
    # Seed 003 note 3: on U retry the cancel "another three to five times" (cancel_retries more).
    sale: _Sale = ev.model
    return sale.cancel_attempts <= sale.engine.settings.cancel_retries  # type: ignore[attr-defined]


def _schedule_cancel(ev: EventData) -> None:
    sale: _Sale = ev.model
    sale.schedule("cancel", _now(ev) + sale.engine.settings.cancel_interval)


def _schedule_cancel_now(ev: EventData) -> None:
    ev.model.schedule("cancel", _now(ev))


def _schedule_review(ev: EventData) -> None:
    sale: _Sale = ev.model
    sale.schedule("query", _now(ev) + sale.engine.settings.background_interval)


def _code_and_message(result: GatewayResult) -> tuple[str | None, str]:
    """What the journal keeps of a gateway answer: its code and why."""
    if isinstance(result, Succeeded):
        return result.code, ""
    if isinstance(result, Failed):
        return result.code, result.message
    return result.code, result.reason


def _store_result(ev: EventData) -> None:
    """Keep what the gateway told us: acquirementId on success, the code on failure."""
    sale: _Sale = ev.model
    result = _result(ev)
    if isinstance(result, Succeeded):
        acq = result.data.get("acquirementId")
        if isinstance(acq, str) and acq:
            sale.acquirement_id = acq
    if result is not None:
        sale.result_code, sale.result_message = _code_and_message(result)


def _mark_resolved(ev: EventData) -> None:
    ev.model.resolved_by_corrector = True


def _finish_sale(ev: EventData, key: str, params: dict[str, str] | None = None) -> None:
    sale: _Sale = ev.model
    now = _now(ev)
    sale.finished_at = now
    sale.next_request = None
    sale.next_at = None
    shown = {"amount": sale.amount.display(), **(params or {})}
    sale.engine._emit(Show(key, shown, sale_id=sale.sale_id))


def _enter_paid(ev: EventData) -> None:
    sale: _Sale = ev.model
    _finish_sale(ev, "paid")
    sale.engine._emit(PrintReceipt(sale.sale_id))
    sale.engine._emit(Finished("sale", sale.sale_id, S.PAID.value))


def _enter_declined(ev: EventData) -> None:
    sale: _Sale = ev.model
    code = sale.result_code or "UNKNOWN"  # type: ignore[attr-defined]
    # The catalogue has one plain-words text per result code (code.<RESULT_CODE>);
    # "declined" is the fallback for a code it does not know. Only an F answer's
    # code explains a decline: a payQuery that reports CLOSED answers S with code
    # SUCCESS, whose text ("Done") would tell the cashier to hand over the goods.
    key = f"code.{code}" if isinstance(_result(ev), Failed) else "declined"
    _finish_sale(ev, key, {"code": code, "fallback": "declined"})
    sale.engine._emit(Finished("sale", sale.sale_id, S.DECLINED.value))


def _enter_cancelled(ev: EventData) -> None:
    sale: _Sale = ev.model
    _finish_sale(ev, "cancelled")
    sale.engine._emit(Finished("sale", sale.sale_id, S.CANCELLED.value))


def _enter_manual_review(ev: EventData) -> None:
    sale: _Sale = ev.model
    now = _now(ev)
    sale.engine._emit(Show("manual_review", {"amount": sale.amount.display()}, sale_id=sale.sale_id))
    sale.engine._emit(Alarm(
        f"sale {sale.merchant_trans_id} ({sale.amount.receipt()}) is not settled: the cancel "  # type: ignore[attr-defined]
        f"answered {sale.result_code or 'nothing certain'}; do not hand over the goods; "  # type: ignore[attr-defined]
        "a manager must check it ('pos journal list --open')", sale_id=sale.sale_id))
    sale.engine._emit(Finished("sale", sale.sale_id, S.MANUAL_REVIEW.value))
    # The background corrector keeps asking payQuery (reference §12: "a back-office
    # job should later correct any transaction left pending").
    sale.schedule("query", now + sale.engine.settings.background_interval)


# The sale machine: every state, what happens on entering it, and every transition.
SALE_STATES: list[dict[str, Any]] = [
    {"name": S.CREATED.value},
    {"name": S.PAYING.value, "on_enter": [_sale_show("processing")]},
    {"name": S.QUERYING.value, "on_enter": [_enter_querying]},
    {"name": S.CANCELLING.value, "on_enter": [_enter_cancelling]},
    {"name": S.PAID.value, "on_enter": [_enter_paid]},
    {"name": S.DECLINED.value, "on_enter": [_enter_declined]},
    {"name": S.CANCELLED.value, "on_enter": [_enter_cancelled]},
    {"name": S.MANUAL_REVIEW.value, "on_enter": [_enter_manual_review]},
]

# Several rows with one trigger are tried in order; the first whose conditions
# hold wins (transitions' semantics). dest None is an internal transition: the
# state stays and only the `after` callbacks run.
SALE_TRANSITIONS: list[dict[str, Any]] = [
    # Write before you send: PAYING is committed before the pay leaves.
    {"trigger": "send_pay", "source": S.CREATED.value, "dest": S.PAYING.value, "after": [_queue_pay]},
    # A pay that was never sent moved no money: nothing to ask the gateway.
    {"trigger": "abort", "source": S.CREATED.value, "dest": S.CANCELLED.value},
    {"trigger": "void", "source": S.CREATED.value, "dest": S.CANCELLED.value},
    # §6.3: S paid, F final, anything else (U, timeout, transport, bad signature) unknown.
    {"trigger": "pay_succeeded", "source": S.PAYING.value, "dest": S.PAID.value, "prepare": [_store_result]},
    {"trigger": "pay_failed", "source": S.PAYING.value, "dest": S.DECLINED.value, "prepare": [_store_result]},
    {"trigger": "pay_unknown", "source": S.PAYING.value, "dest": S.QUERYING.value, "prepare": [_store_result]},
    # After a restart a pay that may have left is only ever queried, never sent again.
    {"trigger": "resume", "source": S.PAYING.value, "dest": S.QUERYING.value},
    {"trigger": "resume", "source": [S.QUERYING.value, S.MANUAL_REVIEW.value], "dest": None,
     "after": [_schedule_query_now]},
    {"trigger": "resume", "source": S.CANCELLING.value, "dest": None, "after": [_schedule_cancel_now]},
    # QUERYING (seed 003, reference §12).
    {"trigger": "query_paid", "source": S.QUERYING.value, "dest": S.PAID.value, "prepare": [_store_result]},
    {"trigger": "query_closed", "source": S.QUERYING.value, "dest": S.DECLINED.value, "prepare": [_store_result]},
    {"trigger": "query_open", "source": S.QUERYING.value, "dest": None, "prepare": [_reset_not_found],
     "conditions": [_before_deadline], "after": [_schedule_query]},
    {"trigger": "query_open", "source": S.QUERYING.value, "dest": S.CANCELLING.value},
    {"trigger": "query_not_found", "source": S.QUERYING.value, "dest": None, "prepare": [_count_not_found],
     "conditions": [_not_found_retry_left], "after": [_schedule_query]},
    {"trigger": "query_not_found", "source": S.QUERYING.value, "dest": S.CANCELLING.value},
    # The cashier gives up: cancel whatever the pay did (the cancel waits for a pay in flight).
    {"trigger": "abort", "source": [S.PAYING.value, S.QUERYING.value], "dest": S.CANCELLING.value},
    # CANCELLING (seed 003 note 3).
    {"trigger": "cancel_succeeded", "source": S.CANCELLING.value, "dest": S.CANCELLED.value,
     "prepare": [_store_result]},
    {"trigger": "cancel_failed", "source": S.CANCELLING.value, "dest": S.MANUAL_REVIEW.value,
     "prepare": [_store_result]},
    {"trigger": "cancel_unknown", "source": S.CANCELLING.value, "dest": None, "prepare": [_store_result],
     "conditions": [_cancel_retry_left], "after": [_schedule_cancel]},
    {"trigger": "cancel_unknown", "source": S.CANCELLING.value, "dest": S.MANUAL_REVIEW.value},
    # The background corrector (see Engine docstring for the PAID rule).
    {"trigger": "review_paid", "source": S.MANUAL_REVIEW.value, "dest": S.PAID.value,
     "prepare": [_store_result, _mark_resolved]},
    {"trigger": "review_closed", "source": S.MANUAL_REVIEW.value, "dest": S.CANCELLED.value,
     "prepare": [_store_result, _mark_resolved]},
    {"trigger": "review_open", "source": S.MANUAL_REVIEW.value, "dest": None, "after": [_schedule_review]},
]


# ----------------------------------------------------- refund callbacks (pure)

def _refund_schedule_now(ev: EventData) -> None:
    ev.model.schedule("refund", _now(ev))


def _refund_retry_left(ev: EventData) -> bool:
    refund: _Refund = ev.model
    return refund.attempts <= refund.engine.settings.refund_retries  # type: ignore[attr-defined]


def _refund_schedule_retry(ev: EventData) -> None:
    refund: _Refund = ev.model
    refund.schedule("refund", _now(ev) + refund.engine.settings.refund_interval)


def _refund_schedule_background(ev: EventData) -> None:
    refund: _Refund = ev.model
    refund.schedule("refund", _now(ev) + refund.engine.settings.background_interval)


def _refund_store(ev: EventData) -> None:
    refund: _Refund = ev.model
    result = _result(ev)
    if isinstance(result, Succeeded):
        rid = result.data.get("refundId")
        if isinstance(rid, str) and rid:
            refund.gateway_refund_id = rid
    if result is not None:
        refund.result_code, refund.result_message = _code_and_message(result)


def _refund_finish(ev: EventData, key: str) -> None:
    refund: _Refund = ev.model
    refund.finished_at = _now(ev)
    refund.next_request = None
    refund.next_at = None
    params = {"amount": refund.amount.display()}
    if refund.result_code and key == "refund_declined":
        params["code"] = refund.result_code
    refund.engine._emit(Show(key, params, sale_id=refund.sale_id, refund_id=refund.refund_id))  # type: ignore[attr-defined]


def _enter_refunded(ev: EventData) -> None:
    refund: _Refund = ev.model
    _refund_finish(ev, "refund_done")
    refund.engine._emit(PrintReceipt(refund.sale_id, refund.refund_id))  # type: ignore[attr-defined]
    refund.engine._emit(Finished("refund", refund.refund_id, R.REFUNDED.value))


def _enter_refund_declined(ev: EventData) -> None:
    refund: _Refund = ev.model
    _refund_finish(ev, "refund_declined")
    refund.engine._emit(Finished("refund", refund.refund_id, R.REFUND_DECLINED.value))


def _enter_refund_pending(ev: EventData) -> None:
    refund: _Refund = ev.model
    refund.engine._emit(Show("refund_pending", {"amount": refund.amount.display()},
                             sale_id=refund.sale_id, refund_id=refund.refund_id))  # type: ignore[attr-defined]
    refund.engine._emit(Finished("refund", refund.refund_id, R.REFUND_PENDING.value))
    _refund_schedule_background(ev)


REFUND_STATES: list[dict[str, Any]] = [
    {"name": R.REFUND_CREATED.value},
    {"name": R.REFUNDING.value},
    {"name": R.REFUNDED.value, "on_enter": [_enter_refunded]},
    {"name": R.REFUND_DECLINED.value, "on_enter": [_enter_refund_declined]},
    {"name": R.REFUND_PENDING.value, "on_enter": [_enter_refund_pending]},
]

REFUND_TRANSITIONS: list[dict[str, Any]] = [
    # The merchantRefundId is committed with REFUND_CREATED; REFUNDING before the request.
    {"trigger": "send_refund", "source": R.REFUND_CREATED.value, "dest": R.REFUNDING.value,
     "after": [_refund_schedule_now]},
    {"trigger": "resume", "source": R.REFUND_CREATED.value, "dest": R.REFUNDING.value,
     "after": [_refund_schedule_now]},
    {"trigger": "resume", "source": [R.REFUNDING.value, R.REFUND_PENDING.value], "dest": None,
     "after": [_refund_schedule_now]},
    {"trigger": "refund_succeeded", "source": [R.REFUNDING.value, R.REFUND_PENDING.value],
     "dest": R.REFUNDED.value, "prepare": [_refund_store]},
    {"trigger": "refund_failed", "source": [R.REFUNDING.value, R.REFUND_PENDING.value],
     "dest": R.REFUND_DECLINED.value, "prepare": [_refund_store]},
    # Reference §9: on U or timeout retry with the same merchantRefundId.
    {"trigger": "refund_unknown", "source": R.REFUNDING.value, "dest": None, "prepare": [_refund_store],
     "conditions": [_refund_retry_left], "after": [_refund_schedule_retry]},
    {"trigger": "refund_unknown", "source": R.REFUNDING.value, "dest": R.REFUND_PENDING.value},
    {"trigger": "refund_unknown", "source": R.REFUND_PENDING.value, "dest": None, "prepare": [_refund_store],
     "after": [_refund_schedule_background]},
]


def _machine(states: list[dict[str, Any]], transitions: list[dict[str, Any]]) -> Machine:
    return Machine(model=None, states=states, transitions=transitions, initial=states[0]["name"],
                   auto_transitions=False, send_event=True, ignore_invalid_triggers=False)


# --------------------------------------------------------------------- the engine

class Engine:
    """Holds the open sales and refunds and decides what happens next.

    One engine per terminal. Every public method is pure: it reads `now` from
    the event, the jitter from the injected `rng`, and returns commands.

    The MANUAL_REVIEW rule. A sale lands in MANUAL_REVIEW when payCancel answered
    F or stayed unknown. Every cancel we sent has answered by then (one request
    per sale at a time), and a cancel the gateway applied turns a paid payment
    into a closed one (reference §8 (c)). So the corrector's payQuery is the
    truth: a verified PAID status means no cancel took effect and the customer
    was charged, so the sale becomes PAID (flagged resolved_by_corrector, so the
    manager can hand over the goods or refund); a CLOSED status means no money
    stayed with us and the sale becomes CANCELLED; anything else stays in review.
    """

    def __init__(self, settings: PaymentSection, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        # Injected so tests are deterministic (stripe-python isolates jitter the same way).
        self._rng = rng if rng is not None else random.Random()
        self._sales: dict[int, _Sale] = {}
        self._refunds: dict[int, _Refund] = {}
        self._sale_machine = _machine(SALE_STATES, SALE_TRANSITIONS)
        self._refund_machine = _machine(REFUND_STATES, REFUND_TRANSITIONS)
        self._out: list[Command] = []
        self._log: list[LogEntry] = []
        self._seq = 0

    # ---- queries

    def jitter(self) -> float:
        s = self.settings
        return self._rng.uniform(s.query_interval_min, s.query_interval_max)

    def active_sale(self) -> SaleRecord | None:
        """The sale that keeps the terminal busy, if any (CREATED..CANCELLING)."""
        for sale in self._sales.values():
            if SaleState(sale.state) in SALE_ACTIVE:
                return sale.snapshot()
        return None

    def sale(self, sale_id: int) -> SaleRecord | None:
        item = self._sales.get(sale_id)
        return item.snapshot() if item else None

    def open_sales(self) -> list[SaleRecord]:
        return [s.snapshot() for s in self._sales.values()]

    def open_refunds(self) -> list[RefundRecord]:
        return [r.snapshot() for r in self._refunds.values()]

    def next_wakeup(self) -> float | None:
        """The earliest time a Tick could do something (a send or an alarm)."""
        times: list[float] = []
        for item in [*self._sales.values(), *self._refunds.values()]:
            if item.awaiting is None and item.next_at is not None:  # type: ignore[attr-defined]
                times.append(item.next_at)  # type: ignore[attr-defined]
            if not item.alarmed:  # type: ignore[attr-defined]
                times.append(item.created_at + self.settings.alarm_after)  # type: ignore[attr-defined]
        return min(times) if times else None

    def admit_sale(self, *, scanned_at: float, now: float) -> None:
        """Raise SaleRefused unless a new sale may start now (nothing is created)."""
        active = self.active_sale()
        if active is not None:
            raise SaleRefused("busy", f"sale {active.merchant_trans_id} is still open ({active.state.value}): "
                              "wait for its result or abort it first")
        age = now - scanned_at
        if age > self.settings.scan_max_age:
            raise SaleRefused("scan_too_old", f"the code was scanned {age:.0f} s ago (more than "
                              f"[payment] scan_max_age = {self.settings.scan_max_age:g} s): scan it again")

    @staticmethod
    def check_refund(sale: SaleRecord, refunds: Sequence[RefundRecord], amount: Money) -> None:
        """Raise RefundRefused unless `amount` may be refunded on `sale` (reference §9, §13)."""
        if sale.state is not SaleState.PAID:
            raise RefundRefused(f"sale {sale.merchant_trans_id} is {sale.state.value}, not PAID: "
                                "only a paid sale can be refunded")
        if not sale.acquirement_id:
            raise RefundRefused(f"sale {sale.merchant_trans_id} has no Alipay transaction id "
                                "(acquirementId) on record, so it cannot be refunded here: refund it "
                                "in the merchant portal")
        if amount.currency != sale.amount.currency:
            raise RefundRefused(f"the refund is in {amount.currency} but the sale was in "
                                f"{sale.amount.currency}: refund in {sale.amount.currency}")
        if amount.minor <= 0:
            raise RefundRefused("the refund amount must be above zero")
        # Pending and in-flight refunds count: they may still succeed.
        taken = sum((r.amount.minor for r in refunds
                     if r.sale_id == sale.sale_id and r.state is not RefundState.REFUND_DECLINED), 0)
        left = sale.amount.minor - taken
        if amount.minor > left:
            raise RefundRefused(
                f"refund of {amount.receipt()} is more than is left to refund on sale "
                f"{sale.merchant_trans_id}: {Money(max(left, 0), sale.amount.currency).receipt()} of "
                f"{sale.amount.receipt()} (refunds so far, pending included: "
                f"{Money(taken, sale.amount.currency).receipt()})")

    # ---- the one entry point

    def handle(self, event: Event) -> list[Command]:
        """Feed one event; return the commands, a Record first when anything changed."""
        self._out = []
        self._log = []
        now = event.now
        if isinstance(event, StartSale):
            self._start_sale(event)
        elif isinstance(event, StartRefund):
            self._start_refund(event)
        elif isinstance(event, GatewayAnswer):
            self._answer(event)
        elif isinstance(event, Abort):
            self._abort(event)
        elif isinstance(event, Recover):
            self._recover(event)
        elif isinstance(event, Tick):
            pass
        else:  # pragma: no cover - a bug in the caller
            raise TypeError(f"not an engine event: {event!r}")
        self._alarms(now)
        self._pump(now)
        return self._collect()

    # ---- internals

    def _emit(self, command: Command) -> None:
        self._out.append(command)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _fire(self, item: _Item, trigger: str, now: float, detail: str = "", **kwargs: Any) -> bool:
        before = item.state
        ok = bool(getattr(item, "trigger")(trigger, now=now, **kwargs))
        if ok:
            item.updated_at = now  # type: ignore[attr-defined]
            self._log.append(LogEntry(now, item.kind, item.item_id, trigger, before, item.state, detail))
        return ok

    def _start_sale(self, ev: StartSale) -> None:
        if ev.sale.state is not SaleState.CREATED:
            raise ValueError(f"a new sale must be CREATED, got {ev.sale.state.value}")
        if self.active_sale() is not None:
            raise SaleRefused("busy", "another sale is still open")
        sale = _Sale(self, ev.sale)
        sale.identity_code = ev.identity_code
        sale.last = None
        self._sales[sale.sale_id] = sale  # type: ignore[attr-defined]
        self._sale_machine.add_model(sale, initial=S.CREATED.value)
        self._fire(sale, "send_pay", ev.now, "pay queued")

    def _start_refund(self, ev: StartRefund) -> None:
        refund = _Refund(self, ev.refund)
        refund.last = None
        self._refunds[refund.refund_id] = refund  # type: ignore[attr-defined]
        self._refund_machine.add_model(refund, initial=R.REFUND_CREATED.value)
        self._fire(refund, "send_refund", ev.now, "refund queued")

    def _abort(self, ev: Abort) -> None:
        sale = self._sales.get(ev.sale_id)
        if sale is None or sale.state not in (S.CREATED.value, S.PAYING.value, S.QUERYING.value):
            return
        sale.abort_requested = True
        # A query waiting for its time is dropped; a request in flight is let finish.
        sale.next_request = None
        sale.next_at = None
        self._fire(sale, "abort", ev.now, "cashier abort")

    def _recover(self, ev: Recover) -> None:
        for rec in ev.sales:
            if rec.is_final or rec.sale_id in self._sales:
                continue
            sale = _Sale(self, rec)
            self._sales[rec.sale_id] = sale
            self._sale_machine.add_model(sale, initial=rec.state.value)
            if rec.state is SaleState.CREATED:
                # PAYING is committed before a pay is sent, so a CREATED sale's pay never
                # left. It is not sent after a restart: the scan is stale, the customer may
                # have gone. Nothing moved, so it is closed locally.
                self._fire(sale, "void", ev.now, "restart: pay never sent")
            else:
                self._fire(sale, "resume", ev.now, "restart")
        for rrec in ev.refunds:
            if rrec.is_final or rrec.refund_id in self._refunds:
                continue
            refund = _Refund(self, rrec)
            self._refunds[rrec.refund_id] = refund
            self._refund_machine.add_model(refund, initial=rrec.state.value)
            self._fire(refund, "resume", ev.now, "restart")

    def _answer(self, ev: GatewayAnswer) -> None:
        items: dict[int, Any] = self._sales if ev.kind == "sale" else self._refunds
        item = items.get(ev.item_id)
        if item is None or item.awaiting != (ev.request, ev.seq):
            return  # an answer to a request we no longer wait for (not possible in one process)
        item.awaiting = None
        result = ev.result
        detail = _describe(result)
        if ev.kind == "refund":
            trigger = {Succeeded: "refund_succeeded", Failed: "refund_failed"}.get(type(result), "refund_unknown")
            self._fire(item, trigger, ev.now, detail, result=result)
            return
        sale: _Sale = item
        state = SaleState(sale.state)
        if ev.request == "pay":
            if state is S.PAYING:
                trigger = {Succeeded: "pay_succeeded", Failed: "pay_failed"}.get(type(result), "pay_unknown")
                self._fire(sale, trigger, ev.now, detail, result=result)
            elif isinstance(result, Succeeded):
                # Aborted while the pay was out: the cancel (which waited for this
                # answer) decides; keep the acquirementId for the record.
                acq = result.data.get("acquirementId")
                if isinstance(acq, str) and acq:
                    sale.acquirement_id = acq
                self._log.append(LogEntry(ev.now, "sale", sale.sale_id, "pay_answer", sale.state, sale.state,
                                          detail + " (after abort)"))
        elif ev.request == "query":
            outcome = query_outcome(result, self.settings.not_found_codes)
            if state is S.QUERYING:
                trigger = {
                    QueryOutcome.PAID: "query_paid", QueryOutcome.CLOSED: "query_closed",
                    QueryOutcome.NOT_FOUND: "query_not_found",
                }.get(outcome, "query_open")
                self._fire(sale, trigger, ev.now, f"{outcome.value}: {detail}", result=result)
            elif state is S.MANUAL_REVIEW:
                trigger = {QueryOutcome.PAID: "review_paid", QueryOutcome.CLOSED: "review_closed"}.get(
                    outcome, "review_open")
                self._fire(sale, trigger, ev.now, f"{outcome.value}: {detail}", result=result)
                if trigger != "review_open":
                    self._emit(Alarm(f"sale {sale.merchant_trans_id} resolved by the background check: "  # type: ignore[attr-defined]
                                     f"{sale.state}", sale_id=sale.sale_id))
        elif ev.request == "cancel" and state is S.CANCELLING:
            trigger = {Succeeded: "cancel_succeeded", Failed: "cancel_failed"}.get(type(result), "cancel_unknown")
            self._fire(sale, trigger, ev.now, detail, result=result)

    def _alarms(self, now: float) -> None:
        for item in [*self._sales.values(), *self._refunds.values()]:
            if item.alarmed or now < item.created_at + self.settings.alarm_after:  # type: ignore[attr-defined]
                continue
            item.alarmed = True
            if item.kind == "sale":
                self._emit(Alarm(f"sale {item.merchant_trans_id} has been open for more than "  # type: ignore[attr-defined]
                                 f"{self.settings.alarm_after:g} s in {item.state}: check it "
                                 "('pos journal show')", sale_id=item.item_id))
            else:
                self._emit(Alarm(f"refund {item.merchant_refund_id} has been open for more than "  # type: ignore[attr-defined]
                                 f"{self.settings.alarm_after:g} s in {item.state}: check it "
                                 "('pos journal show')", refund_id=item.item_id))

    def _pump(self, now: float) -> None:
        """Emit every request that is due, one in flight per item."""
        for sale in self._sales.values():
            if sale.awaiting is not None or sale.next_request is None or now < sale.next_at:  # type: ignore[attr-defined]
                continue
            request, due = sale.next_request, sale.next_at  # type: ignore[attr-defined]
            sale.next_request = None
            sale.next_at = None
            seq = self._next_seq()
            sale.awaiting = (request, seq)
            mtid = sale.merchant_trans_id  # type: ignore[attr-defined]
            if request == "pay":
                code = sale.identity_code or ""
                sale.identity_code = None   # held in memory only until the pay is out
                sale.pay_sent_at = now
                self._emit(SendPay(sale.sale_id, seq, due, mtid, sale.amount, sale.order_title, code))  # type: ignore[attr-defined]
            elif request == "query":
                sale.query_count += 1  # type: ignore[attr-defined]
                self._emit(SendQuery(sale.sale_id, seq, due, mtid))
            elif request == "cancel":
                sale.cancel_attempts += 1  # type: ignore[attr-defined]
                self._emit(SendCancel(sale.sale_id, seq, due, mtid))
        for refund in self._refunds.values():
            if refund.awaiting is not None or refund.next_request is None or now < refund.next_at:  # type: ignore[attr-defined]
                continue
            due = refund.next_at  # type: ignore[attr-defined]
            refund.next_request = None
            refund.next_at = None
            seq = self._next_seq()
            refund.awaiting = ("refund", seq)
            refund.attempts += 1  # type: ignore[attr-defined]
            self._emit(SendRefund(refund.refund_id, seq, due, refund.acquirement_id,  # type: ignore[attr-defined]
                                  refund.merchant_refund_id, refund.amount, refund.reason))  # type: ignore[attr-defined]

    def _collect(self) -> list[Command]:
        sales: list[SaleRecord] = []
        refunds: list[RefundRecord] = []
        for sid, sale in list(self._sales.items()):
            snap = sale.snapshot()
            if snap != sale.last:
                sales.append(snap)
                sale.last = snap
            if snap.state in SALE_FINAL:
                self._sale_machine.remove_model(sale)
                del self._sales[sid]
        for rid, refund in list(self._refunds.items()):
            rsnap = refund.snapshot()
            if rsnap != refund.last:
                refunds.append(rsnap)
                refund.last = rsnap
            if rsnap.state in REFUND_FINAL:
                self._refund_machine.remove_model(refund)
                del self._refunds[rid]
        commands: list[Command] = []
        if sales or refunds or self._log:
            commands.append(Record(tuple(sales), tuple(refunds), tuple(self._log)))
        commands.extend(self._out)
        self._out = []
        self._log = []
        return commands


def _describe(result: GatewayResult) -> str:
    if isinstance(result, Succeeded):
        return f"S {result.code}"
    if isinstance(result, Failed):
        return f"F {result.code}" + (f" {result.message}" if result.message else "")
    return f"U {result.code or ''} {result.reason}".replace("  ", " ").strip()


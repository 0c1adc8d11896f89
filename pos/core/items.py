"""The engine's working copies of open sales and refunds, and what their callbacks share.

A `transitions` Machine drives each working copy (`state` is set by it);
everything else the item knows is its journal record, replaced (never
mutated) as it changes, so `snapshot()` is the record with the current state.
A step's changes to the record are kept apart and copied into it at once, when
it is next read or handed out: a record is about 30 fields, and each copy costs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum
from typing import Any, ClassVar, Generic, NotRequired, Required, TypeAlias, TypedDict, TypeVar, cast

from transitions import EventData

from pos.core.events import Command, ItemKind, Request
from pos.core.money import Money
from pos.core.outcomes import Failed, GatewayResult, QueryOutcome, Succeeded, query_outcome_of
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState
from pos.core.schedule import Retried, Retry, Schedule, retry_table

__all__ = [
    "Context", "Item", "SaleItem", "RefundItem", "Callback", "Condition", "Row", "StateRow", "Verdict",
    "Reading", "reading_of", "now_of", "result_of", "code_and_message", "describe", "Start", "StartQuerying",
    "RetryLeft",
    "Repeat",
]

RecordT = TypeVar("RecordT", SaleRecord, RefundRecord)

Callback = Callable[[EventData], None]
Condition = Callable[[EventData], bool]


class StateRow(TypedDict, total=False):
    name: Required[str]
    on_enter: list[Callback]


class Row(TypedDict):
    """One transition. Rows with one trigger are tried in order; the first whose
    conditions hold wins. dest None is an internal transition: the state stays and
    only the callbacks run."""

    trigger: str
    source: str | list[str]
    dest: str | None
    prepare: NotRequired[list[Callback]]
    conditions: NotRequired[list[Condition]]
    after: NotRequired[list[Callback]]


class Verdict(StrEnum):
    """A pay, cancel or refund answer (§6.3): S, F, or anything else (U, timeout, transport, bad signature)."""

    SUCCEEDED = "S"
    FAILED = "F"
    UNKNOWN = "U"


# What an answer says: a verdict, or for a query the protocol's reading of the payment.
Reading: TypeAlias = Verdict | QueryOutcome


def reading_of(request: Request, result: GatewayResult) -> Reading:
    if request == "query":
        return query_outcome_of(result)
    if isinstance(result, Succeeded):
        return Verdict.SUCCEEDED
    if isinstance(result, Failed):
        return Verdict.FAILED
    return Verdict.UNKNOWN


class Context:
    """What the callbacks of one engine share: the numbers, the jitter and the outbox."""

    def __init__(self, schedule: Schedule, rng: random.Random) -> None:
        self.schedule = schedule
        self.retries = retry_table(schedule)
        # Injected so tests are deterministic (stripe-python isolates jitter the same way).
        self.rng = rng
        self.out: list[Command] = []

    def emit(self, command: Command) -> None:
        self.out.append(command)

    def retry(self, retried: Retried) -> Retry:
        return self.retries[retried]

    def interval(self, retried: Retried) -> float:
        low, high = self.retries[retried].every
        return low if low == high else self.rng.uniform(low, high)


class Item(Generic[RecordT]):
    """Mutable working copy of one record, driven by a `transitions` Machine.

    What never changes once the item is created (its id, its name, its amount: the journal refuses
    a record whose fixed columns differ) is kept on the item too: reading it there copies no pending
    change into the record."""

    kind: ClassVar[ItemKind]
    state: str                        # set by the Machine
    item_id: int
    name: str

    def __init__(self, ctx: Context, record: RecordT, *, new: bool) -> None:
        self.ctx = ctx
        self.amount: Money = record.amount
        self._record: RecordT = record
        self._changes: dict[str, Any] = {}   # fields set since the record was last copied
        self.awaiting: tuple[Request, int] | None = None   # (request, seq) in flight
        self.next_request: Request | None = None
        self.next_at: float | None = record.next_at
        # Kept here and put into the record by snapshot(), as state and next_at are: every step
        # touches it, and reading the record in the same step would copy it for this alone.
        self.updated_at = record.updated_at
        self.last: RecordT | None = None if new else record   # the last record handed out
        # When an alarm is due: checked at every step, so kept here rather than read from the record.
        self.alarm_at: float | None = None if record.alarmed else record.created_at + ctx.schedule.alarm_after

    @property
    def record(self) -> RecordT:
        """The record as it stands, every change made so far in it."""
        if self._changes:
            self._record = replace(self._record, **self._changes)
            self._changes = {}
        return self._record

    def change(self, **fields: Any) -> None:
        """Set fields of the record (copied into it when it is next read or handed out)."""
        self._changes.update(fields)

    def _fold(self, **machine_fields: Any) -> RecordT:
        """The record with every change and `machine_fields` (what is kept on the item: state, plan, time)."""
        self._record = replace(self._record, **self._changes, **machine_fields)
        self._changes = {}
        return self._record

    def plan(self, request: Request, at: float) -> None:
        self.next_request = request
        self.next_at = at

    def unplan(self) -> None:
        self.next_request = None
        self.next_at = None

    def mark_alarmed(self) -> None:
        self.alarm_at = None
        self.change(alarmed=True)

    def touch(self, now: float) -> None:
        self.updated_at = now

    def deadline(self) -> float | None:
        """When retries bound by the query deadline stop; None: no deadline applies."""
        return None


class SaleItem(Item[SaleRecord]):
    kind = "sale"

    def __init__(self, ctx: Context, record: SaleRecord, *, new: bool, identity_code: str | None = None) -> None:
        super().__init__(ctx, record, new=new)
        self.item_id = record.sale_id
        self.name = f"sale {record.merchant_trans_id}"
        self.identity_code = identity_code   # held in memory only until the pay is out
        self.next_request = record.next_request

    def snapshot(self) -> SaleRecord:
        return self._fold(state=SaleState(self.state), next_request=self.next_request, next_at=self.next_at,
                          updated_at=self.updated_at)

    def deadline(self) -> float:
        rec = self.record
        since = rec.querying_since if rec.querying_since is not None else rec.pay_sent_at
        return (since if since is not None else 0.0) + self.ctx.schedule.query_deadline


class RefundItem(Item[RefundRecord]):
    kind = "refund"

    def __init__(self, ctx: Context, record: RefundRecord, *, new: bool) -> None:
        super().__init__(ctx, record, new=new)
        self.item_id = record.refund_id
        self.name = f"refund {record.merchant_refund_id}"
        if record.next_at is not None:
            self.next_request = "refund"

    def snapshot(self) -> RefundRecord:
        return self._fold(state=RefundState(self.state), next_at=self.next_at, updated_at=self.updated_at)


def now_of(ev: EventData) -> float:
    now: float = ev.kwargs["now"]  # epoch seconds from the event, never the wall clock
    return now


def result_of(ev: EventData) -> GatewayResult | None:
    result: GatewayResult | None = ev.kwargs.get("result")
    return result


def code_and_message(result: GatewayResult) -> tuple[str | None, str]:
    """What the journal keeps of a gateway answer: its code and why."""
    if isinstance(result, Succeeded):
        return result.code, ""
    if isinstance(result, Failed):
        return result.code, result.message
    return result.code, result.reason


def describe(result: GatewayResult) -> str:
    """A gateway answer in one log line, with the ids Alipay's support asks for."""
    if isinstance(result, Succeeded):
        text = f"S {result.code}"
    elif isinstance(result, Failed):
        text = f"F {result.code}" + (f" {result.message}" if result.message else "")
    else:
        text = f"U {result.code or ''} {result.reason}".replace("  ", " ").strip()
    if result.gateway_id:
        text += f" acquirementId={result.gateway_id}"
    if result.req_msg_id:
        text += f" reqMsgId={result.req_msg_id}"
    return text


# ------------------------------------------------ callbacks that read the retry table

def _item(ev: EventData) -> Item[SaleRecord] | Item[RefundRecord]:
    return cast("Item[SaleRecord] | Item[RefundRecord]", ev.model)


class Start:
    """On entering a state: plan the first attempt of `retried`."""

    def __init__(self, retried: Retried) -> None:
        self.retried = retried
        self.__name__ = f"start_{retried.value}"

    def __call__(self, ev: EventData) -> None:
        item = _item(ev)
        retry = item.ctx.retry(self.retried)
        item.plan(retry.request, now_of(ev) + (retry.first or 0.0))


class StartQuerying(Start):
    """On entering QUERYING: the first payQuery `first` seconds after the pay's unknown answer,
    but never later than [payment] first_query_after after the pay was sent (a pay that took
    its whole read timeout to say nothing is queried at once)."""

    def __call__(self, ev: EventData) -> None:
        item = _item(ev)
        retry = item.ctx.retry(self.retried)
        now = now_of(ev)
        at = now + (retry.first or 0.0)
        sent = item.record.pay_sent_at if isinstance(item.record, SaleRecord) else None
        if sent is not None:
            at = max(now, min(at, sent + item.ctx.schedule.first_query_after))
        item.plan(retry.request, at)


class RetryLeft:
    """Condition: may `retried` be attempted once more (count and deadline)?"""

    def __init__(self, retried: Retried) -> None:
        self.retried = retried
        self.__name__ = f"{retried.value}_left"

    def __call__(self, ev: EventData) -> bool:
        item = _item(ev)
        retry = item.ctx.retry(self.retried)
        if retry.more is not None and retry.counted_by is not None:
            used: int = getattr(item.record, retry.counted_by)
            if used > retry.more:
                return False
        deadline = item.deadline()
        return not retry.until_deadline or deadline is None or now_of(ev) < deadline


class Repeat:
    """Plan the next attempt of `retried`; one bound by the deadline lands on it at the latest."""

    def __init__(self, retried: Retried) -> None:
        self.retried = retried
        self.__name__ = f"repeat_{retried.value}"

    def __call__(self, ev: EventData) -> None:
        item = _item(ev)
        now = now_of(ev)
        retry = item.ctx.retry(self.retried)
        at = now + item.ctx.interval(self.retried)
        deadline = item.deadline()
        if retry.until_deadline and deadline is not None and at > deadline:
            # The last attempt lands on the deadline itself, its answer deciding what follows,
            # but never closer to the one before than the shortest interval (the deadline's
            # query too: seed 003's 5-7 s apart).
            at = max(deadline, now + retry.every[0])
        item.plan(retry.request, at)

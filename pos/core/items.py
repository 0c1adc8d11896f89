"""The engine's working copies of open sales and refunds, and what their callbacks share.

A `transitions` Machine drives each working copy (`state`, `trigger` are set
by it); everything else the item knows is its journal record, replaced (never
mutated) as it changes, so `snapshot()` is the record with the current state.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum
from typing import ClassVar, Generic, NotRequired, Required, TypeAlias, TypedDict, TypeVar, cast

from transitions import EventData

from pos.core.events import Command, ItemKind, Request
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
    """Mutable working copy of one record, driven by a `transitions` Machine."""

    kind: ClassVar[ItemKind]
    state: str                        # set by the Machine
    trigger: Callable[..., bool]      # added by Machine.add_model

    def __init__(self, ctx: Context, record: RecordT, *, new: bool) -> None:
        self.ctx = ctx
        self.record: RecordT = record
        self.awaiting: tuple[Request, int] | None = None   # (request, seq) in flight
        self.next_request: Request | None = None
        self.next_at: float | None = record.next_at
        # Kept here and put into the record by snapshot(), as state and next_at are: every step
        # touches it, and a copy of the record per step for it alone costs.
        self.updated_at = record.updated_at
        self.last: RecordT | None = None if new else record   # the last record handed out

    def plan(self, request: Request, at: float) -> None:
        self.next_request = request
        self.next_at = at

    def unplan(self) -> None:
        self.next_request = None
        self.next_at = None

    @property
    def alarm_at(self) -> float | None:
        return None if self.record.alarmed else self.record.created_at + self.ctx.schedule.alarm_after

    def mark_alarmed(self) -> None:
        self.record = replace(self.record, alarmed=True)

    def touch(self, now: float) -> None:
        self.updated_at = now

    def deadline(self) -> float | None:
        """When retries bound by the query deadline stop; None: no deadline applies."""
        return None


class SaleItem(Item[SaleRecord]):
    kind = "sale"

    def __init__(self, ctx: Context, record: SaleRecord, *, new: bool, identity_code: str | None = None) -> None:
        super().__init__(ctx, record, new=new)
        self.identity_code = identity_code   # held in memory only until the pay is out
        self.next_request = record.next_request

    @property
    def item_id(self) -> int:
        return self.record.sale_id

    @property
    def name(self) -> str:
        return f"sale {self.record.merchant_trans_id}"

    def snapshot(self) -> SaleRecord:
        return replace(self.record, state=SaleState(self.state), next_request=self.next_request,
                       next_at=self.next_at, updated_at=self.updated_at)

    def deadline(self) -> float:
        rec = self.record
        since = rec.querying_since if rec.querying_since is not None else rec.pay_sent_at
        return (since if since is not None else 0.0) + self.ctx.schedule.query_deadline


class RefundItem(Item[RefundRecord]):
    kind = "refund"

    def __init__(self, ctx: Context, record: RefundRecord, *, new: bool) -> None:
        super().__init__(ctx, record, new=new)
        if record.next_at is not None:
            self.next_request = "refund"

    @property
    def item_id(self) -> int:
        return self.record.refund_id

    @property
    def name(self) -> str:
        return f"refund {self.record.merchant_refund_id}"

    def snapshot(self) -> RefundRecord:
        return replace(self.record, state=RefundState(self.state), next_at=self.next_at,
                       updated_at=self.updated_at)


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

"""When the engine sends a request again: the numbers, and the one retry table.

`Schedule` holds every number the engine needs (seed 003 and reference §12 are
behind them). The terminal builds it from its configuration
(`PaymentSection.schedule()`); the engine never sees the configuration model.

`retry_table(schedule)` is the whole retry policy, as data: for each request
the engine repeats, when the first attempt goes, how far apart the next ones
are, how many there may be, and which state the item moves to when they run
out. The transition tables (pos/core/sale.py, pos/core/refund.py) name a row
of it wherever a request is repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pos.core.events import Request
from pos.core.records import RefundState, SaleState

__all__ = ["Schedule", "Retried", "Retry", "retry_table"]


@dataclass(frozen=True)
class Schedule:
    """Every interval, deadline and count of the engine, in seconds and attempts."""

    query_first_delay: float     # first payQuery after an unknown pay
    query_interval_min: float    # later payQueries: jittered between min and max
    query_interval_max: float
    query_deadline: float        # from the first query (or the pay): then cancel
    not_found_retries: int       # more payQueries after a not-found answer
    cancel_retries: int          # more payCancels after an unknown answer
    cancel_interval: float
    refund_retries: int          # more refunds (same merchantRefundId) after an unknown answer
    refund_interval: float
    background_interval: float   # MANUAL_REVIEW and REFUND_PENDING are re-checked this often
    alarm_after: float           # an item open this long raises an alarm (once)
    scan_max_age: float          # an older scan never starts a payment
    # A sale the cashier was told "No goods" for and later found paid: refund it
    # in full (True, [payment] late_success = "refund") or leave it to the manager.
    late_success_refund: bool = True
    # The first payQuery after a pay with no answer goes no later than this after the pay
    # was sent (Alipay's in-store guidance: start asking after about 5 s).
    first_query_after: float = 5.0
    # How long after the pay the wallet may still settle it by itself (it closes an unconfirmed
    # payment after about 3 minutes, reference §12): after a cancel refused as too late, the
    # payment's fate is asked for on the query schedule until then (plus query_deadline).
    wallet_auto_close: float = 180.0


class Retried(StrEnum):
    """Each request the engine repeats, named for why it is repeated."""

    PAY_QUERY = "pay_query"              # payQuery after a pay whose outcome is unknown
    NOT_FOUND_QUERY = "not_found_query"  # payQuery after a not-found answer
    CANCEL = "cancel"                    # payCancel after an unknown answer
    REVIEW_QUERY = "review_query"        # the background corrector's payQuery on MANUAL_REVIEW
    LATE_QUERY = "late_query"            # payQuery after a cancel refused as too late, until the fate is known
    REFUND = "refund"                    # refund (same merchantRefundId) after an unknown answer
    PENDING_REFUND = "pending_refund"    # the background corrector's refund on REFUND_PENDING
    REVERSE = "reverse"                  # the full refund of a sale found paid too late, after an unknown answer
    PENDING_REVERSE = "pending_reverse"  # the same, by the background corrector once those run out


# The record field that counts the attempts a limit applies to.
Counter = Literal["not_found_count", "cancel_attempts", "attempts", "reversal_attempts"]


@dataclass(frozen=True)
class Retry:
    request: Request
    first: float | None             # seconds from entering the state to the first attempt;
                                    # None: not started by a state, it only continues a series
    every: tuple[float, float]      # seconds between attempts: drawn between the bounds
    more: int | None = None         # attempts allowed after the first; None: no count limit
    counted_by: Counter | None = None
    until_deadline: bool = False    # never past the query deadline; the last attempt lands on it
    exhausted: SaleState | RefundState | None = None   # where the item goes when it runs out


def retry_table(s: Schedule) -> dict[Retried, Retry]:
    """The retry policy for the numbers in `s`."""
    jittered = (s.query_interval_min, s.query_interval_max)
    return {
        # Seed 003: the first payQuery a little after the unknown pay, not at once;
        # then 5-7 s apart, the last on the deadline, whose answer decides whether to cancel.
        Retried.PAY_QUERY: Retry("query", first=s.query_first_delay, every=jittered,
                                 until_deadline=True, exhausted=SaleState.CANCELLING),
        # Seed 003 note 1: after ORDER_NOT_EXIST, query "another two times" 5-7 s apart.
        Retried.NOT_FOUND_QUERY: Retry("query", first=None, every=jittered,
                                       more=s.not_found_retries, counted_by="not_found_count",
                                       until_deadline=True, exhausted=SaleState.CANCELLING),
        # Seed 003 note 3: on U retry the cancel "another three to five times".
        Retried.CANCEL: Retry("cancel", first=0.0, every=(s.cancel_interval, s.cancel_interval),
                              more=s.cancel_retries, counted_by="cancel_attempts",
                              exhausted=SaleState.MANUAL_REVIEW),
        # Reference §12: "a back-office job should later correct any transaction left pending".
        Retried.REVIEW_QUERY: Retry("query", first=s.background_interval,
                                    every=(s.background_interval, s.background_interval)),
        # Issue 17: a cancel answered CANCEL_EXPIRED "keeps querying until the payment's fate is
        # known": 5-7 s apart like seed 003's queries, for as long as the wallet may still settle
        # the payment (sale.py's late_query_left); then the background corrector's pace.
        Retried.LATE_QUERY: Retry("query", first=s.query_interval_min, every=jittered),
        # Reference §9: on U or timeout retry with the same merchantRefundId.
        Retried.REFUND: Retry("refund", first=0.0, every=(s.refund_interval, s.refund_interval),
                              more=s.refund_retries, counted_by="attempts",
                              exhausted=RefundState.REFUND_PENDING),
        Retried.PENDING_REFUND: Retry("refund", first=s.background_interval,
                                      every=(s.background_interval, s.background_interval)),
        # A reversal is a refund (reference §9): same merchantRefundId on every retry,
        # first at once, then by the background corrector for as long as it takes.
        Retried.REVERSE: Retry("reverse", first=0.0, every=(s.refund_interval, s.refund_interval),
                               more=s.refund_retries, counted_by="reversal_attempts"),
        Retried.PENDING_REVERSE: Retry("reverse", first=None,
                                       every=(s.background_interval, s.background_interval)),
    }

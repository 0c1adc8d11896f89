"""What the engine is fed (events) and what it answers with (commands).

Plain frozen dataclasses, so the runner, the journal and the tests can build
and read them without the state machine. Ordering contract: the first command
of every answer is a `Record`; the caller commits it before it runs any
command after it (design rule 1, write before you send).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pos.core.money import Money
from pos.core.outcomes import GatewayResult
from pos.core.records import RefundRecord, Request, Resolution, SaleRecord

__all__ = [
    "ItemKind", "Request",
    "StartSale", "StartRefund", "GatewayAnswer", "Notified", "RefundNotified", "Tick", "Abort", "Resolve",
    "Recover", "Event",
    "Record", "LogEntry", "SendPay", "SendQuery", "SendCancel", "SendRefund", "SendReverse", "Send", "Show",
    "ShowQr", "PrintReceipt", "Alarm", "Finished", "Command",
]

ItemKind = Literal["sale", "refund"]


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
    kind: ItemKind
    item_id: int
    request: Request
    seq: int                 # the seq of the Send* command this answers
    result: GatewayResult
    now: float


@dataclass(frozen=True)
class Notified:
    """Alipay's verified notification about a sale's payment: one more answer, read like a query's.

    `result` carries the protocol-neutral reading in `query` (the listener sets
    it). Only a PAID reading resolves a sale, and only one that is still being
    queried. A CLOSED reading (a failure notification) is a hint: the sale's next
    query is sent at once, and its answer decides. Anything else changes nothing
    (the schedule's queries decide).
    """

    sale_id: int
    result: GatewayResult
    now: float


@dataclass(frozen=True)
class RefundNotified:
    """Alipay's verified notification about a refund (v1 notifyRefund): one more refund answer.

    `result` is read like a refund's answer: S settles a refund that is still being
    sent (REFUNDING) or waits in REFUND_PENDING as REFUNDED, F as REFUND_DECLINED;
    anything else, or a refund that is final already, changes nothing.
    """

    refund_id: int
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
class Resolve:
    """A manager settles a PAID_LATE sale (charged after "No goods"): refund it now, or the goods
    were given. `by` says who and where (keypad, till, command line): it goes into the audit log."""

    sale_id: int
    action: Resolution
    by: str
    now: float


@dataclass(frozen=True)
class Recover:
    """After a restart: every sale and refund the journal holds that is not final."""

    sales: tuple[SaleRecord, ...]
    refunds: tuple[RefundRecord, ...]
    now: float


Event = StartSale | StartRefund | GatewayAnswer | Notified | RefundNotified | Tick | Abort | Resolve | Recover


# ------------------------------------------------------------------------- commands

@dataclass(frozen=True)
class LogEntry:
    at: float
    item_kind: ItemKind
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
    goods: str = ""          # the till's line items (AlipayCN goodsInfo text), "" = none
    # A merchant-presented QR sale: the pay asks for a code to show the customer (no identity_code).
    qr: bool = False


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
class SendReverse:
    """The full refund of a sale charged after the cashier was told "No goods" (REVERSING)."""

    sale_id: int
    seq: int
    due: float
    acquirement_id: str
    merchant_refund_id: str
    amount: Money


@dataclass(frozen=True)
class Show:
    """A message for the cashier/customer display; `key` is a message-catalogue key."""

    key: str
    params: dict[str, str] = field(default_factory=dict)
    sale_id: int | None = None
    refund_id: int | None = None


@dataclass(frozen=True)
class ShowQr:
    """A QR sale's code is ready: print the "scan to pay" slip and show its text to the cashier.

    `qr_text` is what the QR code carries (the wallet's order code or cashier URL), as the
    gateway gave it; the customer's display is told by a `Show("scan_qr")`.
    """

    sale_id: int
    qr_text: str
    amount: Money
    merchant_trans_id: str


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

    kind: ItemKind
    item_id: int
    state: str


Send = SendPay | SendQuery | SendCancel | SendRefund | SendReverse
Command = (Record | SendPay | SendQuery | SendCancel | SendRefund | SendReverse | Show | ShowQr | PrintReceipt
           | Alarm | Finished)

"""The sandbox gateway's truth: what was charged, cancelled and refunded. Pure: no I/O, no clock.

Every operation takes `now` (an aware datetime); delayed effects (a customer
confirming in the wallet, a late success, a pay that arrives late) are applied
lazily when the ledger is next asked at a later `now`. The rules follow the
reference: idempotency §14, payment codes §15, cancel §8/§13, refund §9/§13.
Replies name a result code; ids and statuses come from pos/data/result_codes.csv.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from pos.core.money import CURRENCY_EXPONENTS, Money, parse_amount
from pos.gateway.offline.codes import result_codes
from pos.sandbox.scenarios import SCENARIOS, SandboxOptions, Scenario, scenario_for

__all__ = [
    "BEIJING", "ORDER_CODE_SCENARIO", "Reply", "Payment", "Refund", "Ledger", "as_datetime", "valid_code_format",
    "TRANSACTION_DETAIL_COLUMNS", "SETTLEMENT_DETAIL_COLUMNS", "SETTLEMENT_SUMMARY_COLUMNS", "HK_COLUMNS",
]

BEIJING = timezone(timedelta(hours=8))  # §13: cancel windows are defined in GMT+8
# Payment.scenario of a payment made by the order code (the merchant-presented QR): no customer code.
ORDER_CODE_SCENARIO = "order-code"

# §16.1 Transaction File - Detail, in order.
TRANSACTION_DETAIL_COLUMNS = [
    "merchantId", "sellerID", "storeId", "productCode", "paymentTime", "orderTitle", "transType",
    "transStatus", "merchantTransId", "acquirementId", "originalAcquirementId", "orderAmount",
    "orderCurrency", "remark", "userSite", "siteUserId",
]
# §16.1 Settlement File - Detail: the 15 published columns, then settlement amount, currency and fee
# (the reference cannot read the columns after orderCurrency; these are the ones the product reads).
SETTLEMENT_DETAIL_COLUMNS = [
    "merchantId", "sellerID", "storeId", "transType", "productCode", "remark", "acquirementId",
    "originalAcquirementId", "paymentTime", "userSite", "referenceId", "settlementTime", "merchantTransId",
    "orderAmount", "orderCurrency", "settlementAmount", "settlementCurrency", "fee",
]
# §16.1 Settlement File - Summary: one row per type, then TOTAL; commission signed like the published sample.
SETTLEMENT_SUMMARY_COLUMNS = ["type", "settlementTime", "count", "settlementAmount", "settlementCurrency",
                              "commission", "referenceId", "merchantId"]
# §16.2 AlipayHK variant: transaction (`<MID>_fptrade_<date>.csv`) and settlement (`<MID>_settle_<date>_<batch>.csv`).
HK_COLUMNS = [
    "Partner_transaction_id", "Transaction_id", "Amount", "Fee", "Settlement", "Currency", "Payment_time",
    "Settlement_time", "Issue", "Product", "Type", "Status", "Remarks", "original_partner_transaction_ID",
]


def as_datetime(value: datetime | float | int) -> datetime:
    """A clock reading (aware datetime or epoch seconds) as an aware datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("the sandbox clock must return timezone-aware datetimes")
        return value
    return datetime.fromtimestamp(float(value), UTC)


def _time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def valid_code_format(code: str) -> bool:
    """§15: digits only, starting 25-30; 16-24 digits (Alipay CN/HK), up to 32 (Alipay+)."""
    return (isinstance(code, str) and code.isascii() and code.isdigit()
            and 16 <= len(code) <= 32 and 25 <= int(code[:2]) <= 30)


@dataclass(frozen=True)
class Reply:
    """One business answer: resultStatus, resultCode and the body fields beside resultInfo."""

    status: str
    code: str
    body: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def code_id(self) -> str:
        row = result_codes().get(self.code)
        return row.code_id if row else ""

    def result_info(self) -> dict[str, str]:
        row = result_codes().get(self.code)
        return {"resultStatus": self.status, "resultCodeId": self.code_id, "resultCode": self.code,
                "resultMsg": self.message or (row.meaning if row else self.code)}


def _reply(code: str, body: dict[str, Any] | None = None, message: str = "") -> Reply:
    row = result_codes()[code]
    return Reply(row.status, code, body or {}, message)


@dataclass
class Payment:
    merchant_id: str
    merchant_trans_id: str
    acquirement_id: str
    amount: Money
    order_title: str
    code_tail: str                  # last 4 digits only: codes are bearer tokens
    code_digest: str
    scenario: str
    created_at: datetime
    status: str                     # PROCESSING | SUCCESS | CLOSED | CANCELLED
    decline: str | None = None
    paid_at: datetime | None = None
    settle_at: datetime | None = None
    cancelled_at: datetime | None = None
    refunded: int = 0
    query_errors_left: int = 0
    cancel_errors_left: int = 0
    cancel_allowed: bool = True
    cancel_expired: bool = False
    store: dict[str, str] = field(default_factory=dict)   # the store identity the pay carried, by [store] key
    # v1 AlipayCN fields the pay carried (settlementCurrency, chinaExtraTransInfo), as read
    alipay_cn: dict[str, Any] = field(default_factory=dict)
    # An order code (merchant-presented QR): when its code stops taking payment; set once it did (unpaid)
    expires_at: datetime | None = None
    expired: bool = False

    @property
    def charged(self) -> bool:
        return self.paid_at is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "merchantId": self.merchant_id, "merchantTransId": self.merchant_trans_id,
            "acquirementId": self.acquirement_id, "orderAmount": self.amount.wire(),
            "orderTitle": self.order_title, "identityCodeTail": self.code_tail, "scenario": self.scenario,
            "status": self.status, "decline": self.decline, "createdAt": _time(self.created_at),
            "paymentTime": _time(self.paid_at) if self.paid_at else None,
            "cancelTime": _time(self.cancelled_at) if self.cancelled_at else None,
            "refunded": {"currency": self.amount.currency, "value": str(self.refunded)},
            **({"expireTime": _time(self.expires_at), "expired": self.expired} if self.expires_at else {}),
            "store": dict(self.store),
            **({"alipayCn": dict(self.alipay_cn)} if self.alipay_cn else {}),
        }


@dataclass(frozen=True)
class Refund:
    merchant_id: str
    merchant_refund_id: str
    acquirement_id: str
    refund_id: str
    amount: Money
    reason: str
    refunded_at: datetime               # when it succeeds (in the future while it is in process)
    # scenario 20: the refund is in process (answers REFUND_IN_PROCESS) until refunded_at
    processing_until: datetime | None = None

    def settled(self, now: datetime) -> bool:
        return self.processing_until is None or now >= self.processing_until

    def as_json(self) -> dict[str, Any]:
        return {"merchantId": self.merchant_id, "merchantRefundId": self.merchant_refund_id,
                "acquirementId": self.acquirement_id, "refundId": self.refund_id,
                "refundAmount": self.amount.wire(), "refundReason": self.reason,
                "refundTime": _time(self.refunded_at)}


@dataclass(frozen=True)
class _InFlightPay:
    arrives_at: datetime
    args: tuple[str, str, str, Money, str]
    store: dict[str, str] = field(default_factory=dict)


class Ledger:
    """Payments, cancels and refunds, with the gateway's rules. Thread-safe; all times passed in."""

    def __init__(self, options: SandboxOptions | None = None) -> None:
        self.options = options or SandboxOptions()
        self._lock = threading.RLock()
        self._payments: dict[tuple[str, str], Payment] = {}
        self._by_acquirement: dict[str, Payment] = {}
        self._cancelled_unknown: dict[tuple[str, str], datetime] = {}  # cancels that came before any pay
        self._refunds: dict[tuple[str, str], Refund] = {}
        self._used_codes: set[str] = set()                             # sha256 of used codes, never the codes
        self._in_flight: list[_InFlightPay] = []
        # Payments that time can still change (a settle_at or an expires_at was set while PROCESSING):
        # _advance walks these, not every payment, so a request costs the same after 10,000 pays.
        self._timed: dict[tuple[str, str], Payment] = {}
        self._seq = 0

    # -- reading ---------------------------------------------------------------

    def payments(self, now: datetime) -> list[Payment]:
        with self._lock:
            self._advance(now)
            return list(self._payments.values())

    def payment(self, merchant_trans_id: str, now: datetime, merchant_id: str | None = None) -> Payment | None:
        with self._lock:
            self._advance(now)
            for (mid, mtid), p in self._payments.items():
                if mtid == merchant_trans_id and (merchant_id is None or mid == merchant_id):
                    return p
            return None

    def payment_by_id(self, acquirement_id: str, now: datetime) -> Payment | None:
        """The payment with this acquirementId (the v1 API's paymentId), whoever the merchant."""
        with self._lock:
            self._advance(now)
            return self._by_acquirement.get(acquirement_id)

    def refunds(self) -> list[Refund]:
        with self._lock:
            return list(self._refunds.values())

    def cancelled_before_pay(self) -> list[str]:
        with self._lock:
            return [mtid for (_, mtid) in self._cancelled_unknown]

    def total_charged(self, currency: str, now: datetime) -> int:
        """Minor units the customers are out of pocket: charged, not cancelled, minus refunds."""
        with self._lock:
            self._advance(now)
            return sum(p.amount.minor - p.refunded for p in self._payments.values()
                       if p.charged and p.status == "SUCCESS" and p.amount.currency == currency)

    def to_json(self, now: datetime) -> dict[str, Any]:
        with self._lock:
            self._advance(now)
            return {
                "payments": [p.as_json() for p in self._payments.values()],
                "refunds": [r.as_json() for r in self._refunds.values()],
                "cancelledBeforePay": self.cancelled_before_pay(),
            }

    # -- pay ---------------------------------------------------------------------

    def pay(self, merchant_id: str, merchant_trans_id: str, identity_code: str, amount: Money,
            order_title: str, now: datetime, store: dict[str, str] | None = None) -> Reply:
        with self._lock:
            self._advance(now)
            scenario = scenario_for(identity_code)
            if scenario.race and valid_code_format(identity_code):
                arrives = now + timedelta(seconds=self.options.race_delay)
                self._in_flight.append(_InFlightPay(arrives, (merchant_id, merchant_trans_id, identity_code,
                                                              amount, order_title), dict(store or {})))
                return _reply("SYSTEM_ERROR", message="the pay has not reached the gateway yet")
            return self._pay_now(merchant_id, merchant_trans_id, identity_code, amount, order_title, now,
                                 store or {})

    def _pay_now(self, merchant_id: str, mtid: str, code: str, amount: Money, title: str,
                 now: datetime, store: dict[str, str] | None = None) -> Reply:
        key = (merchant_id, mtid)
        digest = hashlib.sha256(code.encode("utf-8")).hexdigest()
        existing = self._payments.get(key)
        if existing is not None:  # §14: a repeat returns the real current status, never a second charge
            if (existing.amount != amount or existing.scenario == ORDER_CODE_SCENARIO
                    or (self.options.compare_identity_code and existing.code_digest != digest)):
                return _reply("REPEAT_REQ_INCONSISTENT",
                              message="same merchantTransId with another amount or currency")
            return self._pay_status(existing)
        if key in self._cancelled_unknown:
            return _reply("ORDER_IS_CLOSED", {"merchantTransId": mtid},
                          "this merchantTransId was cancelled before the pay arrived")
        if not valid_code_format(code):
            return _reply("AUTH_CODE_ILLEGAL", message="payment code must be 16-32 digits starting 25-30")
        if digest in self._used_codes:
            return _reply("AUTH_CODE_ALREADY_USED", message="this payment code was already used")
        scenario = scenario_for(code)
        if not scenario.record:
            return _reply("SYSTEM_ERROR", message="the pay was lost")
        self._seq += 1
        payment = Payment(
            merchant_id=merchant_id, merchant_trans_id=mtid,
            acquirement_id=f"{now.astimezone(BEIJING):%Y%m%d}11121280010016{self._seq:012d}",
            amount=amount, order_title=title, code_tail=code[-4:], code_digest=digest,
            scenario=scenario.number, created_at=now, status="PROCESSING", store=dict(store or {}))
        self._apply_scenario(payment, scenario, now)
        self._payments[key] = payment
        self._by_acquirement[payment.acquirement_id] = payment
        if payment.decline is None:
            self._used_codes.add(digest)
        return self._pay_status(payment, first=scenario)

    # -- the order code (merchant-presented QR) ------------------------------------------

    def order_code(self, merchant_id: str, merchant_trans_id: str, amount: Money, order_title: str,
                   now: datetime, store: dict[str, str] | None = None) -> Reply:
        """A payment the customer pays by scanning the merchant's code: created PROCESSING (no customer
        code), settled only when the wallet pays it (`wallet_pay`). Idempotent like a pay (§14)."""
        with self._lock:
            self._advance(now)
            key = (merchant_id, merchant_trans_id)
            existing = self._payments.get(key)
            if existing is not None:
                if existing.amount != amount or existing.scenario != ORDER_CODE_SCENARIO:
                    return _reply("REPEAT_REQ_INCONSISTENT",
                                  message="same paymentRequestId with another amount, currency or product")
                return self._pay_status(existing)
            if key in self._cancelled_unknown:
                return _reply("ORDER_IS_CLOSED", {"merchantTransId": merchant_trans_id},
                              "this paymentRequestId was cancelled before the pay arrived")
            self._seq += 1
            payment = Payment(
                merchant_id=merchant_id, merchant_trans_id=merchant_trans_id,
                acquirement_id=f"{now.astimezone(BEIJING):%Y%m%d}11121280010016{self._seq:012d}",
                amount=amount, order_title=order_title, code_tail="", code_digest="",
                scenario=ORDER_CODE_SCENARIO, created_at=now, status="PROCESSING", store=dict(store or {}),
                expires_at=now + timedelta(seconds=self.options.order_code_expiry))
            self._payments[key] = payment
            self._timed[key] = payment
            self._by_acquirement[payment.acquirement_id] = payment
            return self._pay_status(payment)

    def wallet_pay(self, acquirement_id: str, now: datetime) -> Payment | None:
        """The customer pays an order code in the wallet (the cashier page's Pay). Paying a payment that is
        already paid changes nothing; a closed, cancelled or expired one cannot be paid. The payment, or None."""
        with self._lock:
            self._advance(now)
            p = self._by_acquirement.get(acquirement_id)
            if p is None:
                return None
            if p.status == "PROCESSING":
                p.status, p.paid_at = "SUCCESS", now
            return p

    def wallet_decline(self, acquirement_id: str, now: datetime) -> Payment | None:
        """The customer turns the order code down in the wallet (the cashier page's Cancel): the payment
        closes unpaid (inquiryPayment reads FAIL). A paid payment stays paid. The payment, or None."""
        with self._lock:
            self._advance(now)
            p = self._by_acquirement.get(acquirement_id)
            if p is None:
                return None
            if p.status == "PROCESSING":
                p.status, p.decline = "CLOSED", "ORDER_IS_CLOSED"
            return p

    def _apply_scenario(self, p: Payment, s: Scenario, now: datetime) -> None:
        if s.decline:
            p.status, p.decline = "CLOSED", s.decline
            return
        if s.settled:
            p.status, p.paid_at = "SUCCESS", now
        elif s.settles_after:
            p.settle_at = now + timedelta(seconds=getattr(self.options, s.settles_after))
            self._timed[(p.merchant_id, p.merchant_trans_id)] = p
        p.query_errors_left = self.options.query_errors if s.query_errors else 0
        p.cancel_errors_left = self.options.cancel_errors if s.cancel_errors else 0
        p.cancel_allowed = s.cancel_allowed
        p.cancel_expired = s.cancel_expired

    def _pay_status(self, p: Payment, first: Scenario | None = None) -> Reply:
        if p.decline:
            return _reply(p.decline, {"merchantTransId": p.merchant_trans_id})
        if p.status == "SUCCESS":
            if first is not None and first.pay_status == "U":
                return _reply("SYSTEM_ERROR", {"merchantTransId": p.merchant_trans_id})
            return _reply("SUCCESS", self._payment_body(p))
        if p.status == "PROCESSING":
            return _reply("USER_PAYING", {"merchantTransId": p.merchant_trans_id,
                                          "acquirementId": p.acquirement_id})
        return _reply("ORDER_IS_CLOSED", {"merchantTransId": p.merchant_trans_id,
                                          "acquirementId": p.acquirement_id})

    def _payment_body(self, p: Payment) -> dict[str, Any]:
        body: dict[str, Any] = {"acquirementId": p.acquirement_id, "merchantTransId": p.merchant_trans_id,
                                "orderAmount": p.amount.wire(), "payAmount": p.amount.wire()}
        rate = dict(self.options.cny_rates).get(p.amount.currency)
        if self.options.user_site == "ALIPAY_CN" and rate is not None and p.amount.currency != "CNY":
            major = Decimal(p.amount.minor).scaleb(-CURRENCY_EXPONENTS[p.amount.currency]) * Decimal(rate)
            cny = int(major.scaleb(CURRENCY_EXPONENTS["CNY"]).to_integral_value(ROUND_HALF_UP))
            body["payAmount"] = Money(cny, "CNY").wire()
            body["conversionRate"] = {"sourceCurrency": p.amount.currency, "targetCurrency": "CNY", "rate": rate}
        if p.paid_at:
            body["paymentTime"] = _time(p.paid_at)
        return body

    # -- payQuery ------------------------------------------------------------------

    def _find(self, merchant_id: str, mtid: str | None, acquirement_id: str | None) -> Payment | None:
        if acquirement_id:  # §7.1: acquirementId wins when both are given
            p = self._by_acquirement.get(acquirement_id)
            return p if p is not None and p.merchant_id == merchant_id else None
        return self._payments.get((merchant_id, mtid or ""))

    def query(self, merchant_id: str, now: datetime, *, merchant_trans_id: str | None = None,
              acquirement_id: str | None = None) -> Reply:
        with self._lock:
            self._advance(now)
            p = self._find(merchant_id, merchant_trans_id, acquirement_id)
            if p is None:
                return _reply(self.options.not_found_code, message="no such payment (yet)")
            if p.query_errors_left > 0:
                p.query_errors_left -= 1
                return _reply("SYSTEM_ERROR", message="try again")
            body = self._payment_body(p)
            body["acquirementStatus"] = p.status
            if p.cancelled_at:
                body["cancelTime"] = _time(p.cancelled_at)
            return _reply("SUCCESS", body)

    # -- payCancel -----------------------------------------------------------------

    def _cancel_deadline(self, p: Payment) -> datetime:
        if self.options.cancel_window == "24h":  # §13: "within 24 hours since the time of payment"
            return (p.paid_at or p.created_at) + timedelta(hours=24)
        # §13: same Beijing calendar day, with a 15-minute buffer after 00:00 GMT+8.
        local = p.created_at.astimezone(BEIJING)
        next_midnight = datetime(local.year, local.month, local.day, tzinfo=BEIJING) + timedelta(days=1)
        return next_midnight + timedelta(seconds=self.options.cancel_buffer)

    def cancel(self, merchant_id: str, now: datetime, *, merchant_trans_id: str | None = None,
               acquirement_id: str | None = None) -> Reply:
        with self._lock:
            self._advance(now)
            p = self._find(merchant_id, merchant_trans_id, acquirement_id)
            if p is None:
                if acquirement_id:
                    return _reply("ORDER_NOT_EXIST", message="no payment with this acquirementId")
                # §8 (a): never created -> S; remember it so a late pay cannot charge.
                self._cancelled_unknown.setdefault((merchant_id, merchant_trans_id or ""), now)
                return _reply("SUCCESS", {"merchantTransId": merchant_trans_id})
            body = {"acquirementId": p.acquirement_id, "merchantTransId": p.merchant_trans_id}
            if p.status in ("CANCELLED", "CLOSED"):  # repeats and declined payments: nothing to undo
                return _reply("SUCCESS", {**body, "cancelTime": _time(p.cancelled_at or now)})
            if p.cancel_errors_left > 0:
                p.cancel_errors_left -= 1
                return _reply("SYSTEM_ERROR", message="try again")
            if not p.cancel_allowed:
                return _reply("CANCEL_NOT_ALLOWED", body)
            if p.cancel_expired or now > self._cancel_deadline(p):
                return _reply("CANCEL_EXPIRED", body, "cancel window has passed: refund instead")
            if p.refunded:
                return _reply("ORDER_STATUS_INVALID", body, "payment has refunds: refund the rest instead")
            # §8 (b) unpaid -> force-closed; (c) paid -> refunded and closed; declined -> already closed.
            p.status = "CLOSED" if p.charged else "CANCELLED"
            p.cancelled_at, p.settle_at = now, None
            return _reply("SUCCESS", {**body, "cancelTime": _time(now)})

    # -- refund ----------------------------------------------------------------------

    def refund(self, merchant_id: str, acquirement_id: str, merchant_refund_id: str, amount: Money,
               reason: str, now: datetime) -> Reply:
        with self._lock:
            self._advance(now)
            key = (merchant_id, merchant_refund_id)
            done = self._refunds.get(key)
            if done is not None:  # §14: same merchantRefundId -> the real status of that refund
                if done.amount != amount or done.acquirement_id != acquirement_id:
                    return _reply("REPEAT_REQ_INCONSISTENT",
                                  message="same merchantRefundId with another payment or amount")
                return self._refund_status(done, now)
            p = self._by_acquirement.get(acquirement_id)
            if p is None or p.merchant_id != merchant_id:
                return _reply("ORDER_NOT_EXIST", message="no payment with this acquirementId")
            if p.status != "SUCCESS":
                return _reply("ORDER_STATUS_INVALID", message=f"payment is {p.status}, not SUCCESS")
            if amount.currency != p.amount.currency:
                return _reply("CURRENCY_NOT_SUPPORT", message="refund in the payment's currency")
            if amount.minor <= 0:
                return _reply("PARAM_ILLEGAL", message="refundAmount must be above zero")
            if p.refunded + amount.minor > p.amount.minor:
                return _reply("REFUND_AMOUNT_EXCEED",
                              message=f"refunds would exceed the payment ({p.amount.minor - p.refunded} left)")
            if now > (p.paid_at or p.created_at) + timedelta(days=self.options.refund_window_days):
                return _reply("REFUND_WINDOW_EXCEED")
            self._seq += 1
            until = (now + timedelta(seconds=self.options.refund_settles_after)
                     if SCENARIOS.get(p.scenario, SCENARIOS["00"]).refund_processing else None)
            refund = Refund(merchant_id, merchant_refund_id, acquirement_id,
                            f"{now.astimezone(BEIJING):%Y%m%d}11121280010016{self._seq:012d}",
                            amount, reason, until or now, until)
            p.refunded += amount.minor
            self._refunds[key] = refund
            return self._refund_status(refund, now)

    def note_alipay_cn(self, merchant_id: str, merchant_trans_id: str, fields: dict[str, Any]) -> None:
        """Keep what a v1 pay carried for AlipayCN with its payment (shown in the ledger)."""
        with self._lock:
            payment = self._payments.get((merchant_id, merchant_trans_id))
            if payment is not None and not payment.alipay_cn:
                payment.alipay_cn = dict(fields)

    def refund_of(self, merchant_id: str, merchant_refund_id: str) -> Refund | None:
        with self._lock:
            return self._refunds.get((merchant_id, merchant_refund_id))

    def _refund_status(self, r: Refund, now: datetime) -> Reply:
        if not r.settled(now):
            return _reply("REFUND_IN_PROCESS", {"acquirementId": r.acquirement_id,
                                                "merchantRefundId": r.merchant_refund_id},
                          "refund in process: send it again with the same merchantRefundId")
        return _reply("SUCCESS", self._refund_body(r))

    @staticmethod
    def _refund_body(r: Refund) -> dict[str, Any]:
        return {"acquirementId": r.acquirement_id, "merchantRefundId": r.merchant_refund_id,
                "refundId": r.refund_id, "refundAmount": r.amount.wire(), "refundTime": _time(r.refunded_at)}

    # -- time --------------------------------------------------------------------------

    def _advance(self, now: datetime) -> None:
        """Apply what has happened by `now`: late pays arrive, confirmations settle, order codes expire."""
        due = sorted((f for f in self._in_flight if f.arrives_at <= now), key=lambda f: f.arrives_at)
        for flight in due:
            self._in_flight.remove(flight)
            self._pay_now(*flight.args, now=flight.arrives_at, store=flight.store)
        for key, p in list(self._timed.items()):
            if p.status == "PROCESSING" and p.settle_at is not None and p.settle_at <= now:
                p.status, p.paid_at, p.settle_at = "SUCCESS", p.settle_at, None
            if p.status == "PROCESSING" and p.expires_at is not None and p.expires_at <= now:
                # An order code nobody paid by its expireTime: the payment closes unpaid, as at Alipay
                # (pay's paymentExpiryTime: "after which the payment will not succeed").
                p.status, p.decline, p.expired = "CLOSED", "ORDER_IS_CLOSED", True
            if p.status != "PROCESSING":
                del self._timed[key]

    # -- files -------------------------------------------------------------------------

    def transaction_rows(self, day: date, now: datetime | None = None) -> list[dict[str, str]]:
        """§16.1 Transaction File - Detail rows for one Beijing calendar day, every currency."""
        with self._lock:
            if now is not None:
                self._advance(now)
            rows: list[dict[str, str]] = []
            for p in self._payments.values():
                if p.paid_at and p.paid_at.astimezone(BEIJING).date() == day:
                    rows.append(self._row(p, "PAYMENT", p.paid_at, p.merchant_trans_id, p.acquirement_id, "",
                                          p.amount))
                if p.charged and p.cancelled_at and p.cancelled_at.astimezone(BEIJING).date() == day:
                    rows.append(self._row(p, "CANCEL", p.cancelled_at, p.merchant_trans_id, p.acquirement_id,
                                          p.acquirement_id, p.amount))
            for r in self._refunds.values():
                if r.refunded_at.astimezone(BEIJING).date() == day:
                    p = self._by_acquirement[r.acquirement_id]
                    rows.append(self._row(p, "REFUND", r.refunded_at, r.merchant_refund_id, r.refund_id,
                                          r.acquirement_id, r.amount, remark=r.reason))
            return rows

    def _row(self, p: Payment, kind: str, when: datetime, mtid: str, acq: str, original: str,
             amount: Money, remark: str = "") -> dict[str, str]:
        return {
            "merchantId": p.merchant_id, "sellerID": p.store.get("secondary_merchant_id", ""),
            "storeId": p.store.get("id", ""),
            "productCode": self.options.file_product_code, "paymentTime": _time(when),
            "orderTitle": p.order_title, "transType": kind, "transStatus": "Success",
            "merchantTransId": mtid, "acquirementId": acq, "originalAcquirementId": original,
            "orderAmount": amount.major_str(), "orderCurrency": amount.currency, "remark": remark,
            "userSite": self.options.user_site, "siteUserId": "",
        }

    def export_csv(self, path_or_dir: str | os.PathLike[str], day: date | str,
                   now: datetime | None = None) -> list[Path]:
        """Write §16.1 ALIPAY_TRANSACTION_DETAIL_<currency>_<YYYYMMDD>.csv files, one per currency.

        If `path_or_dir` is an existing folder the files go inside it under their
        published names; otherwise it is the file to write (all currencies in it).
        Amounts are decimal major units (§16.1). Pass `now` to apply delayed effects
        first. This is the one method that touches the file system.
        """
        if isinstance(day, str):
            day = datetime.strptime(day, "%Y%m%d").date()
        rows = self.transaction_rows(day, now)
        target = Path(path_or_dir)
        if target.is_dir():
            currencies = sorted({r["orderCurrency"] for r in rows})
            groups = {target / f"ALIPAY_TRANSACTION_DETAIL_{c}_{day:%Y%m%d}.csv":
                      [r for r in rows if r["orderCurrency"] == c] for c in currencies}
        else:
            groups = {target: rows}
        for path, group in groups.items():
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=TRANSACTION_DETAIL_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(group)
            path.write_text(buf.getvalue(), encoding="utf-8")
        return list(groups)

    def fee(self, amount: Money) -> Money:
        """The sandbox's fee on a payment: fee_basis_points of the amount, rounded half up, minor units."""
        return Money((amount.minor * self.options.fee_basis_points + 5000) // 10000, amount.currency)

    def settlement_rows(self, day: date, now: datetime | None = None) -> list[dict[str, str]]:
        """§16.1 Settlement File - Detail rows: the day's payments (net of fee) and refunds (negative).

        The sandbox settles on the day of the transaction, in the payment's currency; a payment
        cancelled the same day is not settled at all.
        """
        rows: list[dict[str, str]] = []
        transactions = self.transaction_rows(day, now)
        cancelled = {t["merchantTransId"] for t in transactions if t["transType"] == "CANCEL"}
        for tx in transactions:
            kind = tx["transType"]
            if kind == "CANCEL" or (kind == "PAYMENT" and tx["merchantTransId"] in cancelled):
                continue
            amount = Money(_minor(tx["orderAmount"], tx["orderCurrency"]), tx["orderCurrency"])
            fee = self.fee(amount) if kind == "PAYMENT" else Money(0, amount.currency)
            net = amount.minor - fee.minor if kind == "PAYMENT" else -amount.minor
            rows.append({
                "merchantId": tx["merchantId"], "sellerID": "", "storeId": tx["storeId"], "transType": kind,
                "productCode": tx["productCode"], "remark": tx["remark"], "acquirementId": tx["acquirementId"],
                "originalAcquirementId": tx["originalAcquirementId"], "paymentTime": tx["paymentTime"],
                "userSite": tx["userSite"], "referenceId": f"SANDBOX{day:%Y%m%d}",
                "settlementTime": f"{day:%Y-%m-%d}T23:59:59+08:00", "merchantTransId": tx["merchantTransId"],
                "orderAmount": tx["orderAmount"], "orderCurrency": tx["orderCurrency"],
                "settlementAmount": Money(net, amount.currency).major_str(), "settlementCurrency": amount.currency,
                "fee": fee.major_str(),
            })
        return rows

    def export_files(self, folder: str | os.PathLike[str], day: date | str, *, family: str = "2.0.4",
                     merchant_id: str = "", now: datetime | None = None) -> list[Path]:
        """Write the day's transaction and settlement files into `folder` under their published names.

        family "2.0.4" (§16.1): ALIPAY_TRANSACTION_DETAIL_<cur>_<date>.csv and
        ALIPAY_SETTLEMENT_DETAIL_<cur>_<date>.csv per currency; "hk" (§16.2):
        <MID>_fptrade_<date>.csv and <MID>_settle_<date>_1.csv. Files are written to a
        temporary name and renamed, so a reader never sees half a file.
        """
        if isinstance(day, str):
            day = datetime.strptime(day.replace("-", ""), "%Y%m%d").date()
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        tx = self.transaction_rows(day, now)
        st = self.settlement_rows(day)
        stamp = f"{day:%Y%m%d}"
        files: dict[Path, tuple[list[str], list[dict[str, str]]]] = {}
        if family == "hk":
            mid = merchant_id or (tx[0]["merchantId"] if tx else "SANDBOX")
            originals = {a: p.merchant_trans_id for a, p in self._by_acquirement.items()}
            files[target / f"{mid}_fptrade_{stamp}.csv"] = (HK_COLUMNS, [_hk(r, None, originals) for r in tx])
            files[target / f"{mid}_settle_{stamp}_1.csv"] = (
                HK_COLUMNS, [_hk(r, s, originals) for r in tx for s in st if _same_tx(r, s)])
        elif family == "2.0.4":
            for cur in sorted({r["orderCurrency"] for r in tx}):
                files[target / f"ALIPAY_TRANSACTION_DETAIL_{cur}_{stamp}.csv"] = (
                    TRANSACTION_DETAIL_COLUMNS, [r for r in tx if r["orderCurrency"] == cur])
                detail = [r for r in st if r["settlementCurrency"] == cur]
                files[target / f"ALIPAY_SETTLEMENT_DETAIL_{cur}_{stamp}.csv"] = (SETTLEMENT_DETAIL_COLUMNS, detail)
                files[target / f"ALIPAY_SETTLEMENT_SUMMARY_{cur}_{stamp}.csv"] = (
                    SETTLEMENT_SUMMARY_COLUMNS, _summary(detail, cur, day, merchant_id))
        else:
            raise ValueError(f"unknown file family {family!r}: use '2.0.4' or 'hk'")
        for path, (columns, rows) in files.items():
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(buf.getvalue(), encoding="utf-8")
            os.replace(tmp, path)
        return list(files)


def _summary(detail: list[dict[str, str]], currency: str, day: date, merchant_id: str) -> list[dict[str, str]]:
    """§16.1 Settlement File - Summary rows for one settlement currency: per type, then TOTAL."""
    rows: list[dict[str, str]] = []
    totals = [0, 0, 0]
    for kind in ("PAYMENT", "REFUND"):
        group = [r for r in detail if r["transType"] == kind]
        if not group:
            continue
        net = sum(_minor(r["settlementAmount"].lstrip("-"), currency) * (-1 if r["settlementAmount"].startswith("-")
                                                                        else 1) for r in group)
        fee = sum(_minor(r["fee"], currency) for r in group)
        totals = [totals[0] + len(group), totals[1] + net, totals[2] + fee]
        rows.append(_summary_row(kind, len(group), net, fee, currency, day, merchant_id))
    rows.append(_summary_row("TOTAL", totals[0], totals[1], totals[2], currency, day, merchant_id))
    return rows


def _summary_row(kind: str, count: int, net: int, fee: int, currency: str, day: date,
                 merchant_id: str) -> dict[str, str]:
    return {"type": kind, "settlementTime": f"{day:%Y-%m-%d}T23:59:59+08:00", "count": str(count),
            "settlementAmount": Money(net, currency).major_str(), "settlementCurrency": currency,
            "commission": ("-" if fee else "+") + Money(fee, currency).major_str(),
            "referenceId": f"SANDBOX{day:%Y%m%d}", "merchantId": merchant_id}


def _minor(major: str, currency: str) -> int:
    return parse_amount(major, currency, allow_zero=True).minor


def _same_tx(tx: dict[str, str], st: dict[str, str]) -> bool:
    return tx["transType"] == st["transType"] and tx["merchantTransId"] == st["merchantTransId"]


def _hk_time(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%m/%d/%Y %H:%M:%S")


def _hk(tx: dict[str, str], st: dict[str, str] | None, originals: dict[str, str]) -> dict[str, str]:
    """One §16.2 row: the transaction file's (st None) or the settlement file's."""
    return {
        "Partner_transaction_id": tx["merchantTransId"], "Transaction_id": tx["acquirementId"],
        "Amount": tx["orderAmount"], "Fee": st["fee"] if st else "", "Settlement": st["settlementAmount"] if st else "",
        "Currency": tx["orderCurrency"], "Payment_time": _hk_time(tx["paymentTime"]),
        "Settlement_time": _hk_time(st["settlementTime"]) if st else "", "Issue": "", "Product": tx["productCode"],
        "Type": tx["transType"], "Status": "SETTLED" if st else "SUCCESS", "Remarks": tx["remark"],
        # the original payment's merchantTransId (refunds only)
        "original_partner_transaction_ID": originals.get(tx["originalAcquirementId"], "")
        if tx["transType"] == "REFUND" else "",
    }

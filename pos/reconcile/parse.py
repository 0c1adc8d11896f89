"""Alipay's reconciliation files, parsed exactly. Pure: text in, rows out.

Two published families (reference §16):

* 2.0.4 ("files" pages, §16.1): `ALIPAY_TRANSACTION_DETAIL_<cur>_<date>.csv` and
  `ALIPAY_SETTLEMENT_DETAIL_<cur>_<date>.csv`, comma-separated with a header row,
  amounts in decimal major units. The settlement detail's columns after
  `orderCurrency` are not readable in the reference; this product reads
  `settlementAmount`, `settlementCurrency` and `fee` there (by header name, so
  their order does not matter) and treats a file without them as carrying no fees.
* AlipayHK "openapi" (§16.2): `<MID>_fptrade_<date>.csv` and
  `<MID>_settle_<date>_<batch>.csv` with `Partner_transaction_id`, `Amount`, `Fee`...

The format is recognised from the header row. A file is parsed whole or not at
all: the first bad line raises FileError with the file, the line and the reason.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from pos.core.money import CURRENCY_EXPONENTS, Money

__all__ = [
    "FileError", "AlipayRow", "ParsedFile", "parse_file", "to_minor",
    "TRANSACTION_COLUMNS", "SETTLEMENT_COLUMNS", "SUMMARY_COLUMNS", "HK_COLUMNS",
]

KINDS = ("PAYMENT", "REFUND", "CANCEL")

# §16.1 Transaction File - Detail, in order.
TRANSACTION_COLUMNS = [
    "merchantId", "sellerID", "storeId", "productCode", "paymentTime", "orderTitle", "transType",
    "transStatus", "merchantTransId", "acquirementId", "originalAcquirementId", "orderAmount",
    "orderCurrency", "remark", "userSite", "siteUserId",
]
# §16.1 Settlement File - Detail: the 15 published columns, then the three this product reads (see above).
SETTLEMENT_COLUMNS = [
    "merchantId", "sellerID", "storeId", "transType", "productCode", "remark", "acquirementId",
    "originalAcquirementId", "paymentTime", "userSite", "referenceId", "settlementTime", "merchantTransId",
    "orderAmount", "orderCurrency", "settlementAmount", "settlementCurrency", "fee",
]
# §16.1 Settlement File - Summary (`ALIPAY_SETTLEMENT_SUMMARY_<cur>_<date>.csv`): one row per type and a TOTAL.
SUMMARY_COLUMNS = ["type", "settlementTime", "count", "settlementAmount", "settlementCurrency", "commission",
                   "referenceId", "merchantId"]
# §16.2 AlipayHK, transaction and settlement files share the columns.
HK_COLUMNS = [
    "Partner_transaction_id", "Transaction_id", "Amount", "Fee", "Settlement", "Currency", "Payment_time",
    "Settlement_time", "Issue", "Product", "Type", "Status", "Remarks", "original_partner_transaction_ID",
]

_TX_REQUIRED = {"merchantId", "transType", "transStatus", "merchantTransId", "acquirementId", "orderAmount",
                "orderCurrency"}
_SETTLE_REQUIRED = {"transType", "referenceId", "settlementTime", "merchantTransId", "orderAmount",
                    "orderCurrency"}
_SUMMARY_REQUIRED = {"type", "count", "settlementAmount", "settlementCurrency", "commission"}
_HK_REQUIRED = {"Partner_transaction_id", "Transaction_id", "Amount", "Currency", "Type", "Status"}


class FileError(ValueError):
    """A file that cannot be read: where and why. Nothing of it is used."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}, line {line}: {reason}")
        self.file, self.line, self.reason = file, line, reason


@dataclass(frozen=True)
class AlipayRow:
    """One transaction as Alipay reports it, amounts in exact minor units."""

    file: str
    line: int
    kind: str                        # PAYMENT | REFUND | CANCEL (and TOTAL in a settlement summary)
    status: str                      # as in the file: Success, SUCCESS, SETTLED...
    merchant_trans_id: str           # for a REFUND row: the merchantRefundId
    acquirement_id: str
    original_acquirement_id: str     # REFUND rows: the payment's acquirementId (16.1); empty if not given
    original_merchant_trans_id: str  # REFUND rows of 16.2: the payment's merchantTransId
    amount: Money
    store_id: str = ""
    time: str = ""
    fee: Money | None = None         # settlement files only
    settlement: Money | None = None  # net amount settled, signed (refunds negative)
    reference_id: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status.upper() in ("SUCCESS", "SETTLED")

    def as_json(self) -> dict[str, object]:
        def money(m: Money | None) -> dict[str, object] | None:
            return None if m is None else {"minor": m.minor, "currency": m.currency}
        return {"file": self.file, "line": self.line, "kind": self.kind, "status": self.status,
                "merchantTransId": self.merchant_trans_id, "acquirementId": self.acquirement_id,
                "originalAcquirementId": self.original_acquirement_id,
                "originalMerchantTransId": self.original_merchant_trans_id,
                "amount": money(self.amount), "storeId": self.store_id, "time": self.time,
                "fee": money(self.fee), "settlement": money(self.settlement), "referenceId": self.reference_id}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> AlipayRow:
        def money(v: object) -> Money | None:
            if v is None:
                return None
            assert isinstance(v, dict)
            return Money(int(v["minor"]), str(v["currency"]))
        amount = money(d["amount"])
        assert amount is not None
        return cls(file=str(d["file"]), line=int(str(d["line"])), kind=str(d["kind"]), status=str(d["status"]),
                   merchant_trans_id=str(d["merchantTransId"]), acquirement_id=str(d["acquirementId"]),
                   original_acquirement_id=str(d["originalAcquirementId"]),
                   original_merchant_trans_id=str(d["originalMerchantTransId"]), amount=amount,
                   store_id=str(d["storeId"]), time=str(d["time"]), fee=money(d["fee"]),
                   settlement=money(d["settlement"]), reference_id=str(d["referenceId"]))


@dataclass(frozen=True)
class ParsedFile:
    name: str
    family: str        # "2.0.4" | "hk"
    role: str          # "transaction" | "settlement" | "summary"
    rows: tuple[AlipayRow, ...]


def to_minor(text: str, currency: str, *, signed: bool = False) -> int:
    """Decimal major units ("73.00", "-0.73", "+0.00") to exact minor units; ValueError if not exact."""
    if currency not in CURRENCY_EXPONENTS:
        raise ValueError(f"unknown currency {currency!r}")
    raw = text.strip()
    if not raw:
        raise ValueError("amount is empty")
    body = raw[1:] if raw[0] in "+-" else raw
    if not body.replace(".", "", 1).isdigit() or not body.isascii():
        raise ValueError(f"amount {text!r} is not a decimal number")
    if raw[0] == "-" and not signed:
        raise ValueError(f"amount {text!r} is negative")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"amount {text!r} is not a decimal number") from None
    scaled = value.scaleb(CURRENCY_EXPONENTS[currency])
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {text!r} has more decimals than {currency} allows "
                         f"({CURRENCY_EXPONENTS[currency]})")
    return int(scaled)


def _money(text: str, currency: str, *, signed: bool = False) -> Money:
    return Money(to_minor(text, currency, signed=signed), currency)


def parse_file(name: str, text: str) -> ParsedFile:
    """Parse one file's text; raise FileError (file, line, reason) at the first problem."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = list(csv.reader(io.StringIO(text, newline="")))
    if not lines or not any(c.strip() for c in lines[0]):
        raise FileError(name, 1, "the file is empty: it has no header row (truncated download?)")
    header = [c.strip() for c in lines[0]]
    cols = set(header)
    if cols >= _TX_REQUIRED and "referenceId" not in cols:
        family, role = "2.0.4", "transaction"
    elif cols >= _SETTLE_REQUIRED:
        family, role = "2.0.4", "settlement"
    elif cols >= _SUMMARY_REQUIRED:
        family, role = "2.0.4", "summary"
    elif cols >= _HK_REQUIRED:
        family = "hk"
        role = "settlement" if "_settle_" in name else "transaction"
    else:
        raise FileError(name, 1, "the header row is not one of Alipay's reconciliation formats "
                                 "(reference §16.1 transaction detail, settlement detail or summary, or §16.2)")
    if not text.endswith(("\n", "\r")):
        raise FileError(name, len(lines), "the file does not end with a line break: it is truncated; "
                                          "fetch it again with 'pos reconcile fetch'")
    rows: list[AlipayRow] = []
    for number, cells in enumerate(lines[1:], start=2):
        if not cells or not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise FileError(name, number, f"{len(cells)} fields where the header has {len(header)} "
                                          "(truncated or damaged line)")
        rec = {h: c.strip() for h, c in zip(header, cells, strict=True)}
        try:
            rows.append(_row(name, number, family, role, rec))
        except ValueError as exc:
            raise FileError(name, number, str(exc)) from None
    return ParsedFile(name, family, role, tuple(rows))


def _kind(value: str) -> str:
    kind = value.upper()
    if kind not in KINDS:
        raise ValueError(f"unknown transaction type {value!r}: expected PAYMENT, REFUND or CANCEL")
    return kind


def _need(rec: dict[str, str], *names: str) -> None:
    for n in names:
        if not rec.get(n):
            raise ValueError(f"{n} is empty")


def _summary_row(name: str, line: int, rec: dict[str, str]) -> AlipayRow:
    """A summary row: amount and settlement are the (signed) settlement amount, fee the commission."""
    _need(rec, "type", "count", "settlementAmount", "settlementCurrency")
    kind = rec["type"].upper()
    if kind not in (*KINDS, "TOTAL"):
        raise ValueError(f"unknown summary type {rec['type']!r}: expected PAYMENT, REFUND, CANCEL or TOTAL")
    if not rec["count"].isdigit():
        raise ValueError(f"count {rec['count']!r} is not a whole number")
    cur = rec["settlementCurrency"]
    if cur not in CURRENCY_EXPONENTS:
        raise ValueError(f"unknown settlement currency {cur!r}")
    net = _money(rec["settlementAmount"], cur, signed=True)
    fee = Money(abs(to_minor(rec.get("commission") or "0", cur, signed=True)), cur)
    return AlipayRow(file=name, line=line, kind=kind, status="SETTLED", merchant_trans_id="",
                     acquirement_id="", original_acquirement_id="", original_merchant_trans_id="",
                     amount=net, time=rec.get("settlementTime", ""), fee=fee, settlement=net,
                     reference_id=rec.get("referenceId", ""))


def _row(name: str, line: int, family: str, role: str, rec: dict[str, str]) -> AlipayRow:
    if role == "summary":
        return _summary_row(name, line, rec)
    if family == "2.0.4":
        _need(rec, "merchantTransId", "orderAmount", "orderCurrency", "transType")
        currency = rec["orderCurrency"]
        if currency not in CURRENCY_EXPONENTS:
            raise ValueError(f"unknown currency {currency!r}")
        kind = _kind(rec["transType"])
        fee = settlement = None
        if role == "settlement" and rec.get("settlementCurrency"):
            scur = rec["settlementCurrency"]
            if scur not in CURRENCY_EXPONENTS:
                raise ValueError(f"unknown settlement currency {scur!r}")
            settlement = _money(rec.get("settlementAmount", ""), scur, signed=True)
            fee = Money(abs(to_minor(rec.get("fee") or "0", scur, signed=True)), scur)
        return AlipayRow(
            file=name, line=line, kind=kind, status=rec.get("transStatus") or "SETTLED",
            merchant_trans_id=rec["merchantTransId"], acquirement_id=rec.get("acquirementId", ""),
            original_acquirement_id=rec.get("originalAcquirementId", ""), original_merchant_trans_id="",
            amount=_money(rec["orderAmount"], currency), store_id=rec.get("storeId", ""),
            time=rec.get("paymentTime", ""), fee=fee, settlement=settlement,
            reference_id=rec.get("referenceId", ""))
    _need(rec, "Partner_transaction_id", "Amount", "Currency", "Type")
    currency = rec["Currency"]
    if currency not in CURRENCY_EXPONENTS:
        raise ValueError(f"unknown currency {currency!r}")
    kind = _kind(rec["Type"])
    fee = settlement = None
    if rec.get("Fee"):
        fee = Money(abs(to_minor(rec["Fee"], currency, signed=True)), currency)
    if rec.get("Settlement"):
        settlement = _money(rec["Settlement"], currency, signed=True)
    return AlipayRow(
        file=name, line=line, kind=kind, status=rec["Status"],
        merchant_trans_id=rec["Partner_transaction_id"], acquirement_id=rec["Transaction_id"],
        original_acquirement_id="", original_merchant_trans_id=rec.get("original_partner_transaction_ID", ""),
        amount=_money(rec["Amount"], currency), time=rec.get("Payment_time", ""), fee=fee, settlement=settlement)

"""Customs declarations of PAID AlipayCN payments (`pos customs declare|status`, the till).

Rules:
- only a PAID sale of an AlipayCN terminal on the v1 API can be declared;
  anything else is refused with a sentence saying why and nothing is sent;
- the declarationRequestId is committed to the journal before the first call;
  an unanswered declaration (timeout, crash) is repeated with the same id when
  the same declaration is asked for again, so customs see it once;
- a declaration the API took (DECLARED) is not sent again: asking for it again
  shows it; a declaration refused by the API (F) or rejected by customs
  (declarationRequestStatus FAILED) may be made again under a new id;
- `status` asks inquiryDeclarationRequests and journals every change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pos.core.errors import EXIT_CONFIG, UserError
from pos.core.money import AmountError, CurrencyError, Money, parse_amount
from pos.core.outcomes import Failed, Succeeded
from pos.core.records import SaleRecord, SaleState
from pos.gateway.ams.backoffice import BackOffice, declaration_records
from pos.journal.backoffice import BackOfficeJournal, Declaration
from pos.journal.journal import Journal

__all__ = ["CustomsRefused", "CustomsRequest", "DeclareOutcome", "Customs", "check_customs_fields"]


class CustomsRefused(UserError):
    """A declaration that must not be sent; nothing was sent or recorded."""

    exit_code = EXIT_CONFIG


@dataclass(frozen=True)
class CustomsRequest:
    customs_code: str
    merchant_customs_code: str
    merchant_customs_name: str
    amount: str = ""            # CNY, e.g. "100.00"; empty: the sale's amount when it is in CNY
    split: bool = False


@dataclass(frozen=True)
class DeclareOutcome:
    declaration: Declaration
    sent: bool                  # a call was made (False: already declared, shown from the journal)
    repeated: bool              # the call repeated an unanswered declaration (same id)
    message: str                # one sentence for the manager

    @property
    def answered(self) -> bool:
        return self.declaration.state != "SENDING"


def check_customs_fields(req: CustomsRequest) -> None:
    for name, value, limit in (("customs code", req.customs_code, 32),
                               ("merchant customs code", req.merchant_customs_code, 32),
                               ("merchant customs name", req.merchant_customs_name, 256)):
        if not value.strip():
            raise CustomsRefused(f"the {name} is empty: give the code customs gave you (e.g. ZONGSHU)")
        if len(value) > limit:
            raise CustomsRefused(f"the {name} {value!r} is longer than {limit} characters")


class Customs:
    """Declarations of one terminal: its journal, its v1 client, its wallet."""

    def __init__(self, journal: Journal, back: BackOffice | None, *, wallet: str, protocol: str) -> None:
        self.journal = journal
        self.store = BackOfficeJournal(journal.db, journal.install_id)
        self._back = back
        self._wallet = wallet
        self._protocol = protocol

    # -- checks ------------------------------------------------------------------

    def sale(self, key: str) -> SaleRecord:
        sale = self.journal.get_sale(key)
        if sale is None:
            raise CustomsRefused(f"no sale {key!r} in {self.journal.path}: see 'pos journal list' for the numbers")
        return sale

    def _declarable(self, sale: SaleRecord) -> None:
        if self._protocol != "ams" or self._wallet != "ALIPAY_CN":
            raise CustomsRefused(
                f"sale {sale.sale_id} was not paid with AlipayCN on the v1 API ([terminal] wallet = "
                f"{self._wallet}, [gateway] protocol = {self._protocol}): customs declarations are only for "
                "AlipayCN payments")
        if sale.state != SaleState.PAID or not sale.acquirement_id:
            raise CustomsRefused(f"sale {sale.sale_id} is {sale.state.value}, not PAID: only a paid sale can be "
                                 "declared to customs")

    def _amount(self, sale: SaleRecord, text: str) -> Money:
        if not text:
            if sale.amount.currency == "CNY":
                return sale.amount
            raise CustomsRefused(f"sale {sale.sale_id} is in {sale.amount.currency}; customs take CNY: give "
                                 "--amount with the CNY amount to declare (the payment's customsDeclarationAmount "
                                 "in Alipay's payment details), e.g. --amount 100.00")
        try:
            amount = parse_amount(text, "CNY")
        except (AmountError, CurrencyError) as exc:
            raise CustomsRefused(f"--amount: {exc} (a CNY amount)") from None
        if sale.amount.currency == "CNY" and amount > sale.amount:
            raise CustomsRefused(f"--amount {amount.receipt()} is above the sale's {sale.amount.receipt()}")
        return amount

    # -- declare -----------------------------------------------------------------

    def declare(self, key: str, req: CustomsRequest) -> DeclareOutcome:
        sale = self.sale(key)
        self._declarable(sale)
        check_customs_fields(req)
        amount = self._amount(sale, req.amount)
        fields: dict[str, Any] = {"customs_code": req.customs_code, "merchant_customs_code": req.merchant_customs_code,
                  "merchant_customs_name": req.merchant_customs_name, "amount": amount, "split_order": req.split}
        existing = [d for d in self.store.declarations_of_sale(sale.sale_id) if d.state != "REFUSED"]
        for d in existing:
            if d.state == "SENDING":
                if d.same_request(**fields):
                    return self._send(d, repeated=True)
                raise CustomsRefused(
                    f"declaration {d.declaration_request_id} of sale {sale.sale_id} has no answer yet and was made "
                    f"with other fields (customs {d.customs_code}, {d.amount.receipt()}): repeat that one with the "
                    "same fields, or see 'pos customs status'")
        live = [d for d in existing if d.customs_status != "FAILED"]
        for d in live:
            if d.same_request(**fields):
                return DeclareOutcome(d, False, False, f"sale {sale.sale_id} is declared already as "
                                      f"{d.declaration_request_id}: nothing sent")
        if live and not req.split:
            d = live[0]
            raise CustomsRefused(
                f"sale {sale.sale_id} is declared already as {d.declaration_request_id} (customs {d.customs_code}, "
                f"{d.amount.receipt()}): declare parts with --split, or see 'pos customs status'")
        assert sale.acquirement_id is not None
        created = self.store.create_declaration(sale_id=sale.sale_id, payment_id=sale.acquirement_id, **fields)
        return self._send(created, repeated=False)

    def _send(self, d: Declaration, *, repeated: bool) -> DeclareOutcome:
        if self._back is None:
            raise CustomsRefused("no v1 client: [gateway] protocol must be ams")
        result = self._back.declare(
            declaration_request_id=d.declaration_request_id, payment_id=d.payment_id, amount=d.amount,
            customs_code=d.customs_code, merchant_customs_code=d.merchant_customs_code,
            merchant_customs_name=d.merchant_customs_name, split_order=d.split_order, suborder_id=d.suborder_id)
        rid = d.declaration_request_id
        if isinstance(result, Succeeded):
            data = result.data
            d = self.store.update_declaration(
                rid, what="declare S", state="DECLARED", customs_payment_id=str(data.get("customsPaymentId") or ""),
                customs_order_id=str(data.get("customsOrderId") or ""), result_code=result.code,
                result_message="", detail=f"customsPaymentId {data.get('customsPaymentId') or '-'}")
            return DeclareOutcome(d, True, repeated, f"declared: {rid} (customsPaymentId "
                                  f"{d.customs_payment_id or '-'}); customs decide later: 'pos customs status'")
        if isinstance(result, Failed):
            d = self.store.update_declaration(rid, what="declare F", state="REFUSED", result_code=result.code,
                                              result_message=result.message, detail=result.code)
            return DeclareOutcome(d, True, repeated, f"refused by Alipay: {result.code} {result.message}".rstrip()
                                  + ": nothing was declared")
        reason = getattr(result, "reason", "no answer")
        d = self.store.update_declaration(rid, what="declare U", detail=str(reason))
        return DeclareOutcome(d, True, repeated, f"no answer ({reason}): {rid} is kept; run the same command "
                              "again to repeat it (customs see it once)")

    # -- status ------------------------------------------------------------------

    def status(self, key: str) -> list[Declaration]:
        """Ask Alipay about every declaration of the sale that may be with customs; journal the changes."""
        sale = self.sale(key)
        declarations = self.store.declarations_of_sale(sale.sale_id)
        asked = [d for d in declarations if d.state != "REFUSED"]
        if not asked or self._back is None:
            return declarations
        for start in range(0, len(asked), 10):
            batch = asked[start:start + 10]
            result = self._back.inquiry_declarations([d.declaration_request_id for d in batch])
            if not isinstance(result, Succeeded):
                raise UserError(f"inquiryDeclarationRequests got no usable answer ("
                                f"{getattr(result, 'reason', '') or getattr(result, 'code', '')}): "
                                "the journal is unchanged; try again later", exit_code=3)
            records, _missing = declaration_records(result)
            by_id = {d.declaration_request_id: d for d in batch}
            for rec in records:
                d = by_id.get(rec.declaration_request_id)
                if d is None:
                    continue
                state = "DECLARED" if d.state == "SENDING" else None
                if rec.status != d.customs_status or state:
                    self.store.update_declaration(
                        d.declaration_request_id, what="inquiry", state=state, customs_status=rec.status,
                        customs_payment_id=rec.customs_payment_id or None,
                        customs_order_id=rec.customs_order_id or None,
                        result_code=rec.result_code or None, result_message=rec.result_desc or None,
                        detail=" ".join(x for x in (rec.status, rec.result_code, rec.result_desc) if x))
        return self.store.declarations_of_sale(sale.sale_id)

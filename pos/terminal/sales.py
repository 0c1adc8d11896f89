"""Finding a sale by any name it goes by, and starting a refund on it under the business rules.

A sale is named by the till's sale id (S + 12 hex digits), the journal's sale
number or its merchantTransId (printed on the receipt, and in its QR code);
on the keypad, also by the sequence number at the end of the merchantTransId.
Refund rules are pos.core.rules' (stated once); a refusal comes back as a
`Refusal` value and each caller shows it its own way (an HTTP problem, a
display line).
"""

from __future__ import annotations

import logging

from pos.config import Config
from pos.core.money import AmountError, Money, parse_amount
from pos.core.records import Resolution, SaleRecord
from pos.core.rules import Refusal, check_refund, refund_left
from pos.journal.journal import Journal
from pos.journal.till import TillLinks
from pos.payments.runner import PaymentRunner, RefundRefused, ResolveRefused

__all__ = ["SaleDesk"]

log = logging.getLogger("pos.terminal.sales")


class SaleDesk:
    def __init__(self, cfg: Config, journal: Journal, links: TillLinks, payments: PaymentRunner) -> None:
        self._cfg = cfg
        self._journal = journal
        self._links = links
        self._payments = payments

    def find(self, key: str) -> SaleRecord | None:
        """The journal sale for a till sale id, a sale number or a merchantTransId."""
        till = self._links.get(key)
        if till is not None and till.sale_id is not None:
            return self._journal.get_sale(till.sale_id)
        if till is not None:
            return None   # a till sale that never reached a scan has no journal sale
        return self._journal.get_sale(key)

    def keyed(self, digits: str) -> SaleRecord | None:
        """A sale number typed on the keypad: the number at the end of the Sale ID on the
        receipt (its merchantTransId sequence), or the journal's sale number."""
        sale_id = self._links.sale_with_sequence(int(digits))
        return self._journal.get_sale(sale_id if sale_id is not None else int(digits))

    def left(self, sale: SaleRecord) -> Money:
        return refund_left(sale, self._journal.list_refunds(sale_id=sale.sale_id))

    def refund_limit(self, currency: str) -> Money | None:
        try:
            return parse_amount(self._cfg.manager.refund_limit, currency)
        except AmountError:
            return None   # no limit set (or none in this currency)

    def refund(self, sale: SaleRecord, amount: Money | None, reason: str) -> int | Refusal:
        """Start a refund (None: all that is left); its refund id, or why it may not start."""
        refunds = self._journal.list_refunds(sale_id=sale.sale_id)
        amount = amount if amount is not None else refund_left(sale, refunds)
        refusal = check_refund(sale, refunds, amount, self.refund_limit(amount.currency))
        if refusal is not None:
            return refusal
        try:
            refund_id = self._payments.refund(sale.sale_id, amount, reason)
        except RefundRefused as exc:
            return Refusal("refused", str(exc))
        log.info("refund started", extra={"kv": {"merchantTransId": sale.merchant_trans_id,
                                                 "amount": amount.receipt(), "refund_id": refund_id}})
        return refund_id

    def resolve(self, sale: SaleRecord, action: Resolution, by: str) -> SaleRecord | Refusal:
        """A manager settles a PAID_LATE sale (refund it now, or the goods were given); why not, if not."""
        try:
            record = self._payments.resolve(sale.sale_id, action, by)
        except ResolveRefused as exc:
            return exc.refusal
        log.info("late charge settled", extra={"kv": {"merchantTransId": sale.merchant_trans_id,
                                                      "action": action, "by": by}})
        return record

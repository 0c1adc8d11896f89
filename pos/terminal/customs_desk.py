"""Customs declarations for the till interface (POST/GET /v1/sales/{id}/customs-declarations).

The same rules as `pos customs` (pos/backoffice/customs.py): only PAID AlipayCN
sales on the v1 API, the declarationRequestId journaled before the call, a
repeat after a timeout is the same declaration. Calls run outside the
terminal's lock (a declaration never holds up the keypad); the journal's own
lock orders the writes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pos.backoffice.customs import Customs, CustomsRefused, CustomsRequest
from pos.config import Config
from pos.core.errors import UserError
from pos.gateway.ams.backoffice import BackOffice
from pos.gateway.ams.client import AmsGateway
from pos.gateway.client import GatewayClient
from pos.journal.backoffice import Declaration
from pos.journal.journal import Journal
from pos.terminal.till_service import TillError

__all__ = ["CustomsDesk", "declaration_view"]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def declaration_view(d: Declaration) -> dict[str, Any]:
    return {
        "declarationRequestId": d.declaration_request_id, "state": d.state,
        "customsStatus": d.customs_status or None, "customs": d.customs_code,
        "merchantCustomsCode": d.merchant_customs_code, "merchantCustomsName": d.merchant_customs_name,
        "amount": {"value": d.amount.minor, "currency": d.amount.currency, "text": d.amount.major_str()},
        "split": d.split_order, "customsPaymentId": d.customs_payment_id or None,
        "resultCode": d.result_code or None, "resultMessage": d.result_message or None,
        "createdAt": _iso(d.created_at), "updatedAt": _iso(d.updated_at),
    }


class CustomsDesk:
    def __init__(self, config: Config, journal: Journal, gateway: GatewayClient | None) -> None:
        back = BackOffice(gateway) if isinstance(gateway, AmsGateway) else None
        self._customs = Customs(journal, back, wallet=config.terminal.wallet, protocol=config.gateway.protocol)

    def declare(self, merchant_trans_id: str, req: CustomsRequest) -> tuple[dict[str, Any], bool]:
        """(the declaration, whether it is new or repeated); refusals as TillError."""
        try:
            outcome = self._customs.declare(merchant_trans_id, req)
        except CustomsRefused as exc:
            raise TillError(409, "Declaration refused", str(exc)) from None
        view = declaration_view(outcome.declaration)
        view["message"] = outcome.message
        return view, outcome.sent

    def declarations(self, merchant_trans_id: str) -> list[dict[str, Any]]:
        try:
            return [declaration_view(d) for d in self._customs.status(merchant_trans_id)]
        except CustomsRefused as exc:
            raise TillError(409, "Declaration refused", str(exc)) from None
        except UserError as exc:
            raise TillError(503, "Alipay did not answer", str(exc)) from None

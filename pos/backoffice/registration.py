"""Merchant registration over the v1 API (`pos merchant register|status|info`) and the sales gate.

Journal first: the registrationRequestId is committed with the request body
before the first call; running `register` again with the same file after a
timeout or a crash repeats the same request (the API's idempotency field).
The status arrives by the notifyRegistrationStatus notification (verified,
idempotent: `apply_notification`) or by `pos merchant status`.

With `[merchant] registration_required = true` the terminal refuses sales
until the latest registration is SUCCESSFUL (`sales_refusal`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pos.backoffice.store_file import load_store_file, registration_body
from pos.core.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, UserError
from pos.core.outcomes import Failed, Succeeded
from pos.gateway.ams.backoffice import BackOffice, RegistrationNotice, registration_status_of
from pos.journal.backoffice import BackOfficeJournal, Registration
from pos.journal.db import JournalDB

__all__ = ["RegistrationRefused", "RegisterOutcome", "Merchant", "sales_refusal", "apply_notification"]


class RegistrationRefused(UserError):
    exit_code = EXIT_CONFIG


@dataclass(frozen=True)
class RegisterOutcome:
    registration: Registration
    sent: bool
    repeated: bool
    message: str


def _without_id(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "registrationRequestId"}


def sales_refusal(store: BackOfficeJournal, *, required: bool) -> str | None:
    """Why sales are refused under `[merchant] registration_required`, or None (sales allowed)."""
    if not required:
        return None
    latest = store.latest_registration()
    if latest is None:
        return "merchant registration required: run 'pos merchant register'"
    if latest.approved:
        return None
    status = latest.registration_status or latest.state
    return f"merchant registration {status}: sales open when it is approved ('pos merchant status')"


def apply_notification(store: BackOfficeJournal, notice: RegistrationNotice) -> str:
    """A verified notifyRegistrationStatus into the journal: 'applied', 'repeat' or 'unknown'."""
    if store.registration(notice.registration_request_id) is None:
        return "unknown"
    _, changed = store.update_registration(
        notice.registration_request_id, what="notification", state="SUBMITTED",
        registration_status=notice.status, result_code=notice.result_code or None,
        result_message=notice.result_message or None, detail=notice.status)
    return "applied" if changed else "repeat"


class Merchant:
    """The store's registration: its journal rows and the v1 client."""

    def __init__(self, db: JournalDB, install_id: str, back: BackOffice | None) -> None:
        self.store = BackOfficeJournal(db, install_id)
        self._back = back

    def _client(self) -> BackOffice:
        if self._back is None:
            raise RegistrationRefused("merchant registration is a v1 API call: set [gateway] protocol = \"ams\"")
        return self._back

    def register(self, path: str | Path) -> RegisterOutcome:
        body = registration_body(load_store_file(path))
        back = self._client()
        latest = self.store.latest_registration()
        if latest is not None and latest.state == "SENDING":
            if _without_id(latest.request) != body:
                raise RegistrationRefused(
                    f"registration {latest.registration_request_id} has no answer yet and was made from other "
                    "data: run 'pos merchant register' again with the same file first")
            return self._send(back, latest, repeated=True)
        if latest is not None and latest.state == "SUBMITTED" and latest.registration_status != "FAILED":
            if _without_id(latest.request) == body:
                return RegisterOutcome(latest, False, False, f"registered already as "
                                       f"{latest.registration_request_id} ({latest.registration_status}): "
                                       "nothing sent")
            raise RegistrationRefused(
                f"the store is registered as {latest.registration_request_id} ({latest.registration_status}); "
                "a registration with other data is only made after a rejection")
        created = self.store.create_registration(body)
        return self._send(back, created, repeated=False)

    def _send(self, back: BackOffice, reg: Registration, *, repeated: bool) -> RegisterOutcome:
        rid = reg.registration_request_id
        result = back.register(reg.request)
        if isinstance(result, Succeeded):
            status, _, _ = registration_status_of(result.data)
            # A notification may have overtaken the answer: never step a known status back to PROCESSING.
            known = self.store.registration(rid)
            if not status and known is not None and known.registration_status:
                status = known.registration_status
            reg, _ = self.store.update_registration(rid, what="registration S", state="SUBMITTED",
                                                    registration_status=status or "PROCESSING",
                                                    result_code=result.code)
            return RegisterOutcome(reg, True, repeated, f"submitted: {rid} ({reg.registration_status}); the "
                                   "result arrives as a notification, or ask with 'pos merchant status'")
        if isinstance(result, Failed):
            reg, _ = self.store.update_registration(rid, what="registration F", state="REFUSED",
                                                    result_code=result.code, result_message=result.message)
            return RegisterOutcome(reg, True, repeated, f"refused by Alipay: {result.code} {result.message}"
                                   .rstrip() + ": correct the file and register again")
        reason = getattr(result, "reason", "no answer")
        reg, _ = self.store.update_registration(rid, what="registration U", detail=str(reason))
        if reg.state != "SENDING":   # its notification arrived meanwhile
            return RegisterOutcome(reg, True, repeated, f"no answer ({reason}), but Alipay has told us the "
                                   f"status of {rid}: {reg.registration_status}")
        return RegisterOutcome(reg, True, repeated, f"no answer ({reason}): {rid} is kept; run the same command "
                               "again to repeat it")

    def latest(self) -> Registration:
        latest = self.store.latest_registration()
        if latest is None:
            raise RegistrationRefused("no merchant registration in the journal: run 'pos merchant register "
                                      "--file store.toml' first")
        return latest

    def status(self) -> Registration:
        latest = self.latest()
        if latest.state == "REFUSED":
            return latest
        result = self._client().inquiry_status(latest.registration_request_id)
        if isinstance(result, Succeeded):
            status, code, message = registration_status_of(result.data)
            if status:
                latest, _ = self.store.update_registration(
                    latest.registration_request_id, what="inquiry", state="SUBMITTED", registration_status=status,
                    result_code=code or None, result_message=message or None, detail=status)
            return latest
        if isinstance(result, Failed) and result.code == "ORDER_NOT_EXIST" and latest.state == "SENDING":
            raise RegistrationRefused(f"Alipay does not know {latest.registration_request_id} (it was never "
                                      "received): run 'pos merchant register' again with the same file")
        raise UserError(f"inquiryRegistrationStatus got no usable answer "
                        f"({getattr(result, 'code', '') or getattr(result, 'reason', '')}): the journal is "
                        "unchanged; try again later", exit_code=EXIT_UNAVAILABLE)

    def info(self) -> dict[str, Any]:
        latest = self.latest()
        result = self._client().inquiry_info(latest.registration_request_id)
        if not isinstance(result, Succeeded):
            raise UserError(f"inquiryRegistrationInfo got no usable answer "
                            f"({getattr(result, 'code', '') or getattr(result, 'reason', '')})",
                            exit_code=EXIT_UNAVAILABLE)
        return {k: v for k, v in result.data.items() if k != "result"}

"""The notification listener ([notify] listen): Alipay tells us a payment's result.

One small HTTP app for both protocols:

- POST /notify/offline: `alipay.intl.acquiring.offline.notify.pay` (pos/gateway/notify.py);
- POST /notify/ams/payment, /notify/ams/refund: the v1 API's notifyPayment and
  notifyRefund (pos/gateway/ams/notify.py);
- POST /notify/ams/registration: notifyRegistrationStatus (pos/gateway/ams/backoffice.py),
  verified the same way, kept in the journal (idempotent: a repeat changes nothing).

Every notification is verified with Alipay's public key over the exact bytes
received before anything is read. A verified payment notification is handed to
the payments runner as one more answer (`PaymentRunner.notified`, and a v1
refund notification as one more refund answer, `PaymentRunner.refund_notified`): the engine
decides, and the sale's change is committed to the journal before any display
or receipt follows. A notification with a bad signature changes nothing and
gets an error answer; one for a payment we do not know, or a repeat, changes
nothing and is acknowledged (so Alipay stops retrying) and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pos.backoffice.registration import apply_notification
from pos.config import Config
from pos.gateway.ams.backoffice import REGISTRATION_NOTIFY_PATH, read_registration_notification
from pos.gateway.ams.client import NOTIFY_PATHS
from pos.gateway.ams.notify import acknowledgement, read_notification, refusal
from pos.gateway.notify import failed_result, handle_notify, paid_result
from pos.journal.backoffice import BackOfficeJournal
from pos.journal.db import JournalError
from pos.payments.runner import PaymentRunner
from pos.web import Answer, Route, Routes, read_body
from pos.wsgiserver import WsgiServer

__all__ = ["build_notify_app", "MAX_NOTIFICATION", "notify_server"]

log = logging.getLogger("pos.notify")

MAX_NOTIFICATION = 64 * 1024
# The paths the listener answers (each takes POST only).
NOTIFY_ROUTES = ("/notify/offline", NOTIFY_PATHS["payment"], NOTIFY_PATHS["refund"], REGISTRATION_NOTIFY_PATH)
# Notifications come one at a time, retried by Alipay when not acknowledged.
SERVER_THREADS = 4
_JSON = "application/json; charset=UTF-8"
_TOO_LARGE = Answer(413, b'{"result":{"resultCode":"PARAM_ILLEGAL","resultStatus":"F",'
                         b'"resultMessage":"body larger than 65536 bytes"}}', _JSON)
_UNAVAILABLE = Answer(503, b'{"result":{"resultCode":"UNKNOWN_EXCEPTION","resultStatus":"U",'
                           b'"resultMessage":"not applied now: send it again later"}}', _JSON)


_WHERE = f"Alipay posts notifications to {', '.join(NOTIFY_ROUTES)} (README 'Payment notifications')"


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers, lower-case names (the v1 API's signature is in them)."""
    found = {key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items()
             if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            found[key.replace("_", "-").lower()] = str(environ[key])
    return found


def build_notify_app(runner: PaymentRunner, config: Config, *, alipay_public_key: Any,
                     merchant_private_key: Any) -> Routes:
    client_id = config.gateway.client_id

    def apply(protocol: str, request_id: str, result: Any) -> str:
        outcome = runner.notified(request_id, result)
        level = logging.WARNING if outcome == "unknown" else logging.INFO
        log.log(level, "notification protocol=%s merchantTransId=%s outcome=%s", protocol, request_id, outcome)
        return outcome

    def offline(environ: dict[str, Any]) -> Answer:
        raw = read_body(environ, MAX_NOTIFICATION)
        if raw is None:
            return _TOO_LARGE
        answer = handle_notify(raw, alipay_public_key=alipay_public_key, merchant_private_key=merchant_private_key)
        note = answer.notification
        if note is None:
            log.warning("notification refused protocol=offline reason=%r", answer.error)
            return Answer(200, answer.reply, _JSON)
        if note.result_status == "S":
            apply("offline", note.merchant_trans_id, paid_result(note))
        elif note.result_status == "F":
            # A failure: a hint that queries the sale at once (README "Payment notifications").
            apply("offline", note.merchant_trans_id, failed_result(note))
        else:
            log.info("notification protocol=offline merchantTransId=%s status=%s: nothing to settle",
                     note.merchant_trans_id, note.result_status)
        return Answer(200, answer.reply, _JSON)

    def signed_v1(path: str, read: Callable[..., Any], act: Callable[[Any], None]) -> Callable[..., Answer]:
        """A v1 notification: bounded body, signature and fields read by `read`, refused with the
        reason, else `act` on it and answer the signed acknowledgement."""

        def handle(environ: dict[str, Any]) -> Answer:
            raw = read_body(environ, MAX_NOTIFICATION)
            if raw is None:
                return _TOO_LARGE
            note = read(path, raw, _headers(environ), alipay_public_key=alipay_public_key, client_id=client_id)
            if isinstance(note, str):
                log.warning("notification refused protocol=ams path=%s reason=%r", path, note)
                status, body = refusal(note)
                return Answer(status, body, _JSON)
            act(note)
            raw_ack, headers = acknowledgement(path, client_id, merchant_private_key,
                                               key_version=config.gateway.key_version)
            return Answer(200, raw_ack, _JSON, tuple(headers.items()))

        return handle

    def settle_payment_or_refund(note: Any) -> None:
        if note.kind == "payment":
            apply("ams", note.request_id, note.result)
            return
        outcome = runner.refund_notified(note.request_id, note.result)
        level = logging.WARNING if outcome in ("unknown", "mismatch") else logging.INFO
        log.log(level, "notification protocol=ams refundRequestId=%s refundStatus=%s outcome=%s",
                note.request_id, note.body.get("refundStatus"), outcome)

    store = BackOfficeJournal(runner.journal.db, runner.journal.install_id)

    def settle_registration(note: Any) -> None:
        outcome = apply_notification(store, note)
        log.info("notification protocol=ams registrationRequestId=%s status=%s outcome=%s",
                 note.registration_request_id, note.status, outcome)

    def not_applied(exc: Exception) -> Answer:
        """No traceback and no HTTP 500 for Alipay: a notification we could not apply now (the journal
        failed, or anything unforeseen) is answered 503, changes nothing, and Alipay sends it again."""
        log.error("notification not applied: %s: %s (Alipay will send it again)", type(exc).__name__, exc,
                  exc_info=not isinstance(exc, JournalError))
        return _UNAVAILABLE

    return Routes([
        Route("POST", NOTIFY_ROUTES[0], offline, raw=True),
        Route("POST", NOTIFY_PATHS["payment"], signed_v1(NOTIFY_PATHS["payment"], read_notification,
                                                          settle_payment_or_refund), raw=True),
        Route("POST", NOTIFY_PATHS["refund"], signed_v1(NOTIFY_PATHS["refund"], read_notification,
                                                         settle_payment_or_refund), raw=True),
        Route("POST", REGISTRATION_NOTIFY_PATH, signed_v1(REGISTRATION_NOTIFY_PATH, read_registration_notification,
                                                          settle_registration), raw=True),
    ], errors=not_applied, where=_WHERE)


def notify_server(app: Routes, host: str = "127.0.0.1", port: int = 0) -> WsgiServer:
    """The listener on its own server, bound (OSError if the address is taken), not started."""
    return WsgiServer(app, host, port, name="pos-notify-listener", threads=SERVER_THREADS, min_threads=1)

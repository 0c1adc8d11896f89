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

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pos.backoffice.registration import apply_notification
from pos.config import Config
from pos.gateway.ams.backoffice import REGISTRATION_NOTIFY_PATH, read_registration_notification
from pos.gateway.ams.client import NOTIFY_PATHS
from pos.gateway.ams.notify import acknowledgement, read_notification, refusal
from pos.gateway.notify import failed_result, handle_notify, paid_result
from pos.httpserver import router_problem
from pos.journal.backoffice import BackOfficeJournal
from pos.journal.db import JournalError
from pos.payments.runner import PaymentRunner

__all__ = ["build_notify_app", "MAX_NOTIFICATION"]

log = logging.getLogger("pos.notify")

MAX_NOTIFICATION = 64 * 1024
# The paths the listener answers (each takes POST only).
NOTIFY_ROUTES = ("/notify/offline", NOTIFY_PATHS["payment"], NOTIFY_PATHS["refund"], REGISTRATION_NOTIFY_PATH)
_JSON = "application/json; charset=UTF-8"
_TOO_LARGE = (b'{"result":{"resultCode":"PARAM_ILLEGAL","resultStatus":"F",'
              b'"resultMessage":"body larger than 65536 bytes"}}')
_UNAVAILABLE = (b'{"result":{"resultCode":"UNKNOWN_EXCEPTION","resultStatus":"U",'
                b'"resultMessage":"not applied now: send it again later"}}')


_WHERE = f"Alipay posts notifications to {', '.join(NOTIFY_ROUTES)} (README 'Payment notifications')"


def build_notify_app(runner: PaymentRunner, config: Config, *, alipay_public_key: Any,
                     merchant_private_key: Any) -> Starlette:
    client_id = config.gateway.client_id

    async def body_of(request: Request) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_NOTIFICATION:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def apply(protocol: str, request_id: str, result: Any) -> str:
        outcome = runner.notified(request_id, result)
        level = logging.WARNING if outcome == "unknown" else logging.INFO
        log.log(level, "notification protocol=%s merchantTransId=%s outcome=%s", protocol, request_id, outcome)
        return outcome

    async def offline(request: Request) -> Response:
        raw = await body_of(request)
        if raw is None:
            return Response(_TOO_LARGE, status_code=413, media_type=_JSON)
        answer = handle_notify(raw, alipay_public_key=alipay_public_key, merchant_private_key=merchant_private_key)
        note = answer.notification
        if note is None:
            log.warning("notification refused protocol=offline reason=%r", answer.error)
            return Response(answer.reply, status_code=200, media_type=_JSON)
        if note.result_status == "S":
            apply("offline", note.merchant_trans_id, paid_result(note))
        elif note.result_status == "F":
            # A failure: a hint that queries the sale at once (README "Payment notifications").
            apply("offline", note.merchant_trans_id, failed_result(note))
        else:
            log.info("notification protocol=offline merchantTransId=%s status=%s: nothing to settle",
                     note.merchant_trans_id, note.result_status)
        return Response(answer.reply, status_code=200, media_type=_JSON)

    async def signed_v1(request: Request, read: Callable[..., Any], act: Callable[[Any], None]) -> Response:
        """A v1 notification: bounded body, signature and fields read by `read`, refused with the
        reason, else `act` on it and answer the signed acknowledgement."""
        path = request.url.path
        raw = await body_of(request)
        if raw is None:
            return Response(_TOO_LARGE, status_code=413, media_type=_JSON)
        note = read(path, raw, request.headers, alipay_public_key=alipay_public_key, client_id=client_id)
        if isinstance(note, str):
            log.warning("notification refused protocol=ams path=%s reason=%r", path, note)
            status, body = refusal(note)
            return Response(body, status_code=status, media_type=_JSON)
        act(note)
        raw_ack, headers = acknowledgement(path, client_id, merchant_private_key,
                                           key_version=config.gateway.key_version)
        return Response(raw_ack, status_code=200, media_type=_JSON, headers=headers)

    def settle_payment_or_refund(note: Any) -> None:
        if note.kind == "payment":
            apply("ams", note.request_id, note.result)
            return
        outcome = runner.refund_notified(note.request_id, note.result)
        level = logging.WARNING if outcome in ("unknown", "mismatch") else logging.INFO
        log.log(level, "notification protocol=ams refundRequestId=%s refundStatus=%s outcome=%s",
                note.request_id, note.body.get("refundStatus"), outcome)

    async def ams(request: Request) -> Response:
        return await signed_v1(request, read_notification, settle_payment_or_refund)

    store = BackOfficeJournal(runner.journal.db, runner.journal.install_id)

    def settle_registration(note: Any) -> None:
        outcome = apply_notification(store, note)
        log.info("notification protocol=ams registrationRequestId=%s status=%s outcome=%s",
                 note.registration_request_id, note.status, outcome)

    async def registration(request: Request) -> Response:
        return await signed_v1(request, read_registration_notification, settle_registration)

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """No traceback and no HTTP 500 for Alipay: a notification we could not apply now (the journal
        failed, or anything unforeseen) is answered 503, changes nothing, and Alipay sends it again."""
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                log.error("notification not applied path=%s: %s: %s (Alipay will send it again)",
                          request.url.path, type(exc).__name__, exc, exc_info=not isinstance(exc, JournalError))
                return Response(_UNAVAILABLE, status_code=503, media_type=_JSON)
        return run

    async def not_routed(request: Request, exc: Exception) -> Response:
        """No such path, or a method the path does not take: a problem saying which paths there are."""
        assert isinstance(exc, HTTPException)
        body, headers = router_problem(request.scope, app.routes, exc.status_code, exc.detail, _WHERE)
        return Response(json.dumps(body), status_code=exc.status_code, media_type="application/problem+json",
                        headers=headers or dict(exc.headers or {}))

    app = Starlette(exception_handlers={HTTPException: not_routed}, routes=[
        Route(NOTIFY_ROUTES[0], guarded(offline), methods=["POST"]),
        Route(NOTIFY_PATHS["payment"], guarded(ams), methods=["POST"]),
        Route(NOTIFY_PATHS["refund"], guarded(ams), methods=["POST"]),
        Route(REGISTRATION_NOTIFY_PATH, guarded(registration), methods=["POST"]),
    ])
    return app

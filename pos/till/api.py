"""The till (ECR) interface: HTTP/JSON on loopback, for the till software.

A till starts a sale with an amount, then reads its result (long-polling
`?wait=SECONDS` for a final state). Refunds and the Z report need the
manager's token. Errors are RFC 9457 problem details. The OpenAPI document is
served at /openapi.json and kept in the repository (pos/data/openapi.json; a
test fails when they drift: regenerate with `python -m pos.till.api > pos/data/openapi.json`).

The app is a table of routes (pos/web.py: request validation and the
OpenAPI document come from the same routes and pydantic models), served by a
threaded WSGI server (pos/wsgiserver.py). It knows nothing about devices or the gateway: it calls
a `TillBackend` (the terminal's till service, pos/terminal/till_service.py),
whose refusals are `TillError`s, sent as problem details.
"""


import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from pos import __version__
from pos.backoffice.customs import CustomsRequest
from pos.core.goods import MAX_LINES, MAX_NAME, MAX_QUANTITY, GoodsLine
from pos.core.money import AmountError, CurrencyError, Money, parse_amount
from pos.core.records import RESOLUTIONS, RefundState, Resolution, SaleState
from pos.terminal.till_service import TillError
from pos.web import Answer, Param, Route, Routes, problem_answer, read_body
from pos.wsgiserver import WsgiServer

__all__ = ["TillBackend", "TillError", "create_app", "ensure_token", "read_token", "till_server"]

# The states the till may see, in the order the OpenAPI document lists them: the core's enums.
SALE_STATES = tuple(state.value for state in SaleState)
REFUND_STATES = tuple(state.value for state in RefundState)
MAX_WAIT = 60.0
# Long-polls waiting at once; one more is answered at once with the sale as it is. They wait
# on the server's threads, which has room beside them for sales, reports and health (SERVER_THREADS).
MAX_WAITERS = 32
# The largest request body: a sale or refund is a few hundred bytes.
MAX_BODY = 64 * 1024
# A till sale id, a journal sale number or a merchantTransId.
SALE_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class TillBackend(Protocol):
    """What the till interface needs from the terminal (pos.terminal.terminal.Terminal provides it)."""

    default_currency: str

    def create_sale(self, amount: Money, reference: str, order_title: str,
                    method: str = "code", goods: Sequence[GoodsLine] = ()) -> dict[str, Any]: ...
    def get_sale(self, sale_id: str) -> dict[str, Any] | None: ...
    def wait_sale(self, sale_id: str, timeout: float) -> dict[str, Any] | None: ...
    def cancel_sale(self, sale_id: str) -> dict[str, Any]: ...
    def resolve(self, sale_id: str, action: Resolution, by: str = "") -> dict[str, Any]: ...
    def refund(self, sale_id: str, amount: Money | None, reason: str,
               idempotency_key: str | None = None) -> dict[str, Any]: ...
    def x_report(self) -> dict[str, Any]: ...
    def z_report(self) -> dict[str, Any]: ...
    def health(self) -> dict[str, Any]: ...
    def reconciliation(self, day: str) -> dict[str, Any]: ...
    def declare_customs(self, sale_id: str, request: CustomsRequest) -> tuple[dict[str, Any], bool]: ...
    def customs_declarations(self, sale_id: str) -> list[dict[str, Any]]: ...


# ---------------------------------------------------------------- models

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AmountOut(BaseModel):
    value: int = Field(description="minor units (cents; yen for JPY)")
    currency: str
    text: str = Field(description="major units as a cashier reads them, e.g. '12.50'")


class ItemIn(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME,
                               description="what was sold; no '^', '|' or control characters")]
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)] = 1


class SaleIn(_Strict):
    amount: Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[0-9]+(\.[0-9]+)?$",
                                 description="decimal string in major units, as a cashier types it: "
                                             "'12.50', or '1250' for JPY", examples=["12.50"])]
    currency: Annotated[str | None, Field(default=None, min_length=3, max_length=3,
                                          description="ISO 4217; default: the terminal's currency")] = None
    reference: Annotated[str, Field(default="", max_length=64, description="the till's own reference")] = ""
    orderTitle: Annotated[str, Field(default="", max_length=128, description="shown in the customer's wallet")] = ""
    method: Annotated[Literal["code", "qr"], Field(
        default="code", description="code: the cashier scans the customer's payment code; qr: the customer "
                                    "scans the terminal's code, printed on a 'scan to pay' slip (merchant-"
                                    "presented QR; needs [gateway] protocol = \"ams\")")] = "code"
    items: Annotated[list[ItemIn] | None, Field(
        default=None, max_length=MAX_LINES,
        description="the sale's line items; an AlipayCN terminal on the v1 API sends them as "
                    "order.extendInfo.chinaExtraTransInfo (goodsInfo, totalQuantity)")] = None


class RefundIn(_Strict):
    saleId: Annotated[str, Field(min_length=1, max_length=64, pattern=SALE_ID_PATTERN,
                                 description="sale id or merchantTransId")]
    amount: Annotated[str | None, Field(default=None, max_length=20, pattern=r"^[0-9]+(\.[0-9]+)?$",
                                        description="major units; omitted = everything not yet refunded")] = None
    reason: Annotated[str, Field(default="", max_length=256)] = ""


class ResolveIn(_Strict):
    action: Literal[RESOLUTIONS] = Field(  # type: ignore[valid-type]
        description="refund: give the money back now (a full refund under a fresh merchantRefundId); "
                    "goods_given: the customer got the goods after all (the sale becomes PAID)")
    by: str = Field(default="", max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$",
                    description="who settles it, for the audit log (a name); the till if empty")


class MessageOut(BaseModel):
    cashier: list[str]
    customer: list[str]


class RefundOut(BaseModel):
    id: str
    saleId: str
    merchantRefundId: str
    refundId: str | None = Field(default=None, description="Alipay's refundId, once the refund succeeded")
    state: Literal[REFUND_STATES]  # type: ignore[valid-type]
    amount: AmountOut
    final: bool
    message: MessageOut


class ReversalOut(BaseModel):
    merchantRefundId: str
    refundId: str | None


class SaleOut(BaseModel):
    id: str
    state: Literal[SALE_STATES]  # type: ignore[valid-type]
    final: bool = Field(description="the cashier's part is over: PAID, DECLINED, CANCELLED, REVERSED, or "
                                    "MANUAL_REVIEW (not settled: no goods; a manager settles it, and the state "
                                    "may still change to CANCELLED or - charged too late - REVERSING and "
                                    "REVERSED, refunded in full, or PAID_LATE: charged, no goods given, until a "
                                    "manager refunds it or records that the goods were given, "
                                    "POST /v1/sales/{id}/resolve)")
    merchantTransId: str | None
    acquirementId: str | None
    amount: AmountOut
    refunded: AmountOut
    reference: str
    orderTitle: str
    codeLast4: str | None
    method: Literal["code", "qr"] = Field(default="code", description="code: the customer's code was scanned; "
                                                                      "qr: the customer scanned the terminal's")
    message: MessageOut
    createdAt: str
    updatedAt: str
    refunds: list[RefundOut] = []
    support: str | None = Field(default=None, description="who a manager calls about a sale that is not "
                                                          "settled ([manager] support_contact); give them the "
                                                          "merchantTransId and acquirementId")
    reversal: ReversalOut | None = Field(default=None, description="the full refund that gave back a charge made "
                                                                  "after the cashier was told 'No goods'")


class Totals(BaseModel):
    count: int
    amount: AmountOut


class CurrencyTotals(BaseModel):
    currency: str
    sales: Totals
    refunds: Totals
    cancels: Totals
    declines: Totals
    reversals: Totals
    paidLate: Totals = Field(description="charged after the cashier was told 'No goods', waiting for the "
                                         "manager (PAID_LATE); counted in net until refunded")
    net: AmountOut


class ReconciliationItemOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: Literal["matched", "cancelled", "alipay_only", "ours_only", "mismatch", "open"] = Field(alias="class")
    kind: Literal["payment", "refund", "cancel"]
    currency: str
    id: str = Field(description="merchantTransId, or merchantRefundId for a refund")
    acquirementId: str
    ours: int | None = Field(description="the journal's amount, minor units")
    alipay: int | None = Field(description="Alipay's amount, minor units")
    ourState: str
    alipayStatus: str
    where: str = Field(description="file and line of Alipay's row, or 'journal'")
    advice: str = Field(description="what the manager should do; empty when nothing")


class ReconciliationCurrencyOut(BaseModel):
    currency: str
    counts: dict[str, int]
    paid: int
    refunded: int
    fees: int
    netSettlement: int
    settlementRows: int
    summaryNet: int | None = Field(description="the settlement summary file's TOTAL, when there is one")
    summaryFees: int | None


class ReconciliationOut(BaseModel):
    date: str
    allMatched: bool
    files: list[str]
    otherStoreRows: int
    otherTerminalRows: int
    currencies: list[ReconciliationCurrencyOut]
    items: list[ReconciliationItemOut]


class ReportOut(BaseModel):
    kind: Literal["X", "Z"]
    businessDay: int
    openedAt: str
    closedAt: str | None
    currencies: list[CurrencyTotals]
    openItems: list[str]
    manualReview: list[str]
    manualReviewAcquirementIds: dict[str, str] = Field(
        default={}, description="Alipay's acquirementId of each manualReview sale, when known")


class HealthOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded", "starting"]
    version: str
    uptime_s: float


class CustomsIn(_Strict):
    customs: Annotated[str, Field(min_length=1, max_length=32, description="customs code, e.g. ZONGSHU")]
    merchantCustomsCode: Annotated[str, Field(min_length=1, max_length=32)]
    merchantCustomsName: Annotated[str, Field(min_length=1, max_length=256)]
    amount: Annotated[str | None, Field(default=None, max_length=20, pattern=r"^[0-9]+(\.[0-9]+)?$",
                                        description="CNY amount to declare, e.g. '100.00'; default: the sale's "
                                                    "amount when it is in CNY")] = None
    split: bool = Field(default=False, description="one part of a split order (more than one declaration)")


class DeclarationOut(BaseModel):
    declarationRequestId: str
    state: Literal["SENDING", "DECLARED", "REFUSED"] = Field(
        description="SENDING: no answer yet (send the same request again: it repeats this declaration); "
                    "DECLARED: Alipay took it; REFUSED: Alipay refused it, nothing was declared")
    customsStatus: str | None = Field(description="declarationRequestStatus from the last status inquiry")
    customs: str
    merchantCustomsCode: str
    merchantCustomsName: str
    amount: AmountOut
    split: bool
    customsPaymentId: str | None
    resultCode: str | None
    resultMessage: str | None
    createdAt: str
    updatedAt: str
    message: str | None = None


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""


# ---------------------------------------------------------------- tokens

def ensure_token(path: Path) -> str:
    """Read the bearer token, creating a random one (mode 0600) if the file is missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return read_token(path)


def read_token(path: Path) -> str:
    token = path.read_text().strip()
    if len(token) < 16:
        raise ValueError(f"{path}: token too short (16 characters at least)")
    return token


@dataclass(frozen=True)
class Tokens:
    till: str
    manager: str


def same_token(given: str | bytes, expected: str) -> bool:
    """Constant-time comparison on bytes: any header value (non-ASCII too) is simply wrong, never an error."""
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given, expected.encode("utf-8"))


def _guard(tokens: Tokens, max_body: int = MAX_BODY) -> Callable[[dict[str, Any]], Answer | tuple[str, bytes]]:
    """In front of /v1/: the token is checked, and the body's size bounded, before a byte of the
    body is read. A 100 MB upload without a token costs nothing. Returns the token and the body."""

    def guard(environ: dict[str, Any]) -> Answer | tuple[str, bytes]:
        header = str(environ.get("HTTP_AUTHORIZATION", "")).encode("latin-1")
        scheme, _, given = header.strip().partition(b" ")
        given = given.strip()
        # Both compared, always: the time taken says nothing about which one was close.
        good = [same_token(given, tokens.till), same_token(given, tokens.manager)]
        if scheme.lower() != b"bearer" or not given:
            return _problem(401, "Missing bearer token",
                            "send 'Authorization: Bearer <token>' with the token from [ecr] token_file",
                            headers={"WWW-Authenticate": "Bearer"})
        if not any(good):
            return _problem(401, "Wrong bearer token", "use the token from [ecr] token_file",
                            headers={"WWW-Authenticate": "Bearer"})
        body = read_body(environ, max_body)
        if body is None:
            return _problem(413, "Request too large", f"a request body is at most {max_body} bytes")
        return given.decode("latin-1"), body

    return guard


# ---------------------------------------------------------------- app

def _problem(status: int, title: str, detail: str = "", kind: str = "about:blank",
             headers: dict[str, str] | None = None) -> Answer:
    return problem_answer(status, title, detail, kind, headers)


_ENDPOINTS = "the endpoints are listed at /openapi.json and in README 'The till interface'"


def _not_json(why: str) -> Answer:
    return _problem(400, "Body is not JSON",
                    f"the request body is not valid JSON ({why}): send one JSON object in UTF-8 with "
                    'Content-Type: application/json, such as {"amount": "12.50"}')


# Declared on every operation of the OpenAPI document (status: what it means).
_PROBLEMS = {400: "the body is not JSON", 401: "missing or wrong token", 403: "needs the manager token",
             404: "no such sale", 409: "conflicts with the terminal's state",
             413: f"request body above {MAX_BODY // 1024} KiB", 422: "invalid request", 503: "terminal not ready"}
_TITLE = "pos-terminal till interface"
_DESCRIPTION = ("Start sales and read their results; refunds, settling a late charge (resolve) and Z reports need "
                "the manager token. Amounts are sent as decimal strings in major units and returned in minor units.")
OPENAPI_FILE = Path(__file__).resolve().parent.parent / "data" / "openapi.json"

SaleId = Annotated[str, Field(max_length=64, pattern=SALE_ID_PATTERN)]
_SALE_ID = Param("sale_id", "path", SaleId)


def _routes(service: TillBackend, tokens: Tokens, max_wait: float) -> list[Route]:
    # Long-polls waiting at once: one more is answered at once with the sale as it is.
    waiters = threading.BoundedSemaphore(MAX_WAITERS)

    def till(token: str) -> None:
        if not any([same_token(token, tokens.till), same_token(token, tokens.manager)]):
            raise TillError(401, "Wrong bearer token", "use the token from [ecr] token_file")

    def manager(token: str) -> None:
        if same_token(token, tokens.manager):
            return
        if same_token(token, tokens.till):
            raise TillError(403, "Manager token required",
                            "refunds, settling a PAID_LATE sale and Z reports need the token from "
                            "[ecr] manager_token_file")
        raise TillError(401, "Wrong bearer token", "use the token from [ecr] manager_token_file")

    def money(text: str, currency: str | None) -> Money:
        try:
            return parse_amount(text, currency or service.default_currency)
        except (AmountError, CurrencyError) as exc:
            raise TillError(422, "Invalid amount", str(exc)) from None

    def sale_or_404(sale: dict[str, Any] | None, sale_id: str) -> dict[str, Any]:
        if sale is None:
            raise TillError(404, "No such sale", f"no sale with id {sale_id!r}")
        return sale

    def create_sale(body: SaleIn) -> dict[str, Any]:
        goods = [GoodsLine(item.name, item.quantity) for item in body.items or []]
        return service.create_sale(money(body.amount, body.currency), body.reference, body.orderTitle,
                                   body.method, goods)

    def get_sale(sale_id: str, wait: float) -> dict[str, Any]:
        if wait > 0 and waiters.acquire(blocking=False):
            try:
                return sale_or_404(service.wait_sale(sale_id, min(wait, max_wait)), sale_id)
            finally:
                waiters.release()
        # no wait asked, or too many waiting already: the sale as it is now
        return sale_or_404(service.get_sale(sale_id), sale_id)

    def cancel_sale(sale_id: str) -> dict[str, Any]:
        sale_or_404(service.get_sale(sale_id), sale_id)
        return service.cancel_sale(sale_id)

    def resolve(sale_id: str, body: ResolveIn) -> dict[str, Any]:
        sale_or_404(service.get_sale(sale_id), sale_id)
        return service.resolve(sale_id, body.action, body.by)

    def refund(body: RefundIn, idempotency_key: str | None) -> dict[str, Any]:
        sale = sale_or_404(service.get_sale(body.saleId), body.saleId)
        amount = money(body.amount, sale["amount"]["currency"]) if body.amount is not None else None
        return service.refund(body.saleId, amount, body.reason, idempotency_key)

    def declare_customs(sale_id: str, body: CustomsIn) -> tuple[dict[str, Any], int]:
        request = CustomsRequest(body.customs, body.merchantCustomsCode, body.merchantCustomsName,
                                 body.amount or "", body.split)
        view, sent = service.declare_customs(sale_id, request)
        return view, 201 if sent else 200

    def customs_declarations(sale_id: str) -> list[dict[str, Any]]:
        return service.customs_declarations(sale_id)

    def reconciliation(date: str) -> dict[str, Any]:
        return service.reconciliation(date)

    def x_report() -> dict[str, Any]:
        return service.x_report()

    def z_report() -> dict[str, Any]:
        return service.z_report()

    def health() -> dict[str, Any]:
        # Reads the runner's counters, immutable device and gateway values and three file sizes, and
        # takes no lock (with [merchant] registration_required, one indexed read of the journal, which
        # waits at most for a commit in progress).
        return service.health()

    wait = Param("wait", "query", Annotated[float, Field(ge=0, le=MAX_WAIT)], default=0)
    key = Param("idempotency_key", "header", Annotated[str | None, Field(min_length=1, max_length=64,
                                                                         pattern=SALE_ID_PATTERN)],
                default=None, alias="Idempotency-Key",
                description="send the same key when retrying after a timeout: the refund is made once")
    date = Param("date", "path", Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")], description="YYYY-MM-DD")
    return [
        Route("POST", "/v1/sales", create_sale, "Start a sale: the terminal asks the cashier to scan the customer's "
              "code, or (method qr) prints its own code for the customer to scan", SaleOut, 201, body=SaleIn,
              check=till),
        Route("GET", "/v1/sales/{sale_id}", get_sale, "Read a sale; with wait, block up to that many seconds for a "
              "final state", SaleOut, params=(_SALE_ID, wait), check=till),
        Route("POST", "/v1/sales/{sale_id}/cancel", cancel_sale, "Cancel a sale that is not final (payCancel if the "
              "pay may have been sent)", SaleOut, params=(_SALE_ID,), check=till),
        Route("POST", "/v1/sales/{sale_id}/resolve", resolve, "Settle a sale charged after the cashier said 'No "
              "goods' (PAID_LATE; manager token)", SaleOut, params=(_SALE_ID,), body=ResolveIn, check=manager),
        Route("POST", "/v1/refunds", refund, "Refund all or part of a paid sale (manager token)", RefundOut, 201,
              params=(key,), body=RefundIn, check=manager),
        Route("GET", "/v1/reports/x", x_report, "Running totals of the business day (X report)", ReportOut,
              check=till),
        Route("POST", "/v1/reports/z", z_report, "Close the business day (Z report; manager token)", ReportOut,
              check=manager),
        Route("GET", "/v1/reconciliation/{date}", reconciliation, "Alipay's files of a day matched against the "
              "journal (after 'pos reconcile report')", ReconciliationOut, params=(date,), check=till),
        Route("POST", "/v1/sales/{sale_id}/customs-declarations", declare_customs, "Declare a PAID AlipayCN sale to "
              "customs (v1 API); 200 when it is declared already", DeclarationOut, 201, params=(_SALE_ID,),
              body=CustomsIn, check=till),
        Route("GET", "/v1/sales/{sale_id}/customs-declarations", customs_declarations, "The sale's customs "
              "declarations, with customs' status asked from Alipay", list[DeclarationOut], params=(_SALE_ID,),
              check=till),
        Route("GET", "/v1/health", health, "Uptime, gateway latency, device errors, open items, journal size",
              HealthOut, check=till),
    ]


def _till_error(exc: Exception) -> Answer | None:
    if not isinstance(exc, TillError):
        return None
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _problem(exc.status, exc.title, exc.detail, exc.kind, headers)


def create_app(service: TillBackend, tokens: Tokens, *, max_wait: float = MAX_WAIT) -> Routes:
    """The till interface as a WSGI app. /openapi.json is the kept document (pos/data/openapi.json),
    which a test keeps equal to these routes."""
    return Routes(_routes(service, tokens, max_wait), errors=_till_error, where=_ENDPOINTS, guard=_guard(tokens),
                  not_json=_not_json, documents={"/openapi.json": OPENAPI_FILE.read_bytes})


# Threads of the till's server: every long-poll that may wait at once, and room for sales, reports
# and health beside them.
SERVER_THREADS = MAX_WAITERS + 8


def till_server(service: TillBackend, tokens: Tokens, host: str = "127.0.0.1", port: int = 0, *,
                max_wait: float = MAX_WAIT) -> WsgiServer:
    """The till interface on its own server, bound (OSError if the address is taken), not started."""
    return WsgiServer(create_app(service, tokens, max_wait=max_wait), host, port, name="pos-ecr",
                      threads=SERVER_THREADS)


def openapi_document() -> dict[str, Any]:
    """The till interface's OpenAPI document, generated from the routes (kept in pos/data/openapi.json)."""

    class _NoService:
        default_currency = "USD"

    app = create_app(_NoService(), Tokens("x" * 16, "y" * 16))  # type: ignore[arg-type]
    return app.openapi(title=_TITLE, version=__version__, description=_DESCRIPTION, problems=_PROBLEMS,
                       problem_model=Problem)


if __name__ == "__main__":  # regenerate: python -m pos.till.api > pos/data/openapi.json
    import sys

    json.dump(openapi_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")

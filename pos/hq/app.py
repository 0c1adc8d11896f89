"""Headquarters' HTTP service: the terminals' ingest API and the chain's dashboard.

Ingest: `POST /v1/ingest` with `Authorization: Bearer <the terminal's credential>`,
or over HTTPS with the client certificate `pos hq add-terminal --cert` issued
(verified against the terminals' CA by TLS, then looked up by its SHA-256
fingerprint, so a revoked terminal's certificate is refused). The credential
names the terminal: a batch whose `terminal_id` is another
terminal's is refused (403) and stores nothing. Each event is stored once per
(terminal, install, seq), so a batch sent again changes nothing.

Dashboard: `GET /` (login with a user `pos hq add-user` made): stores and
terminals with their last heartbeat, today's totals per currency beside the
same day last week, and the items waiting for a person across the chain.
Sessions are rows in PostgreSQL (only a hash of the cookie), so a restart of
the service keeps everyone logged in; logging out ends the session there.
Server-rendered HTML, no script or stylesheet from elsewhere.
"""


import hashlib
import time
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pos import __version__
from pos.hq import views
from pos.hq.db import HqDB, HqError, Terminal
from pos.httpserver import router_problem

__all__ = ["create_app"]

PROBLEM = "application/problem+json"
COOKIE = "pos_hq_session"
SESSION_SECONDS = 12 * 3600


class Event(BaseModel):
    seq: Annotated[int, Field(ge=1)]
    at: Annotated[float, Field(ge=1e9, le=1e10)]   # epoch seconds (2001..2286): each day gets a partition
    kind: Annotated[str, Field(min_length=1, max_length=32)]
    body: dict[str, Any]


class Batch(BaseModel):
    terminal_id: Annotated[str, Field(min_length=1, max_length=64)]
    install_id: Annotated[str, Field(min_length=1, max_length=32)]
    events: Annotated[list[Event], Field(max_length=5000)] = []
    heartbeat: dict[str, Any] = {}


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail


def _problem(status: int, title: str, detail: str = "", headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail},
                        status_code=status, media_type=PROBLEM, headers=headers)


# What a terminal (API) or a person (dashboard) can do about a request no route takes.
_API_HELP = "the terminals' API is POST /v1/ingest and GET /v1/health (README 'The chain')"
_DASHBOARD_HELP = "open the dashboard at / (README 'The chain')"


def _answer(request: Request, status: int, title: str, detail: str,
            headers: dict[str, str] | None = None) -> Response:
    """An error as the caller reads it: problem details for the API (/v1/...), a plain page for the
    dashboard. Never an empty body, never a traceback."""
    if request.url.path.startswith("/v1/"):
        return _problem(status, title, detail, headers)
    return HTMLResponse(views.error_page(title, detail), status_code=status, headers=headers)


def create_app(db: HqDB) -> FastAPI:
    app = FastAPI(title="pos-terminal headquarters", version=__version__, docs_url=None, redoc_url=None)
    bearer = HTTPBearer(auto_error=False)

    @app.exception_handler(Problem)
    async def _on_problem(request: Request, exc: Problem) -> Response:
        return _answer(request, exc.status, exc.title, exc.detail)

    @app.exception_handler(HqError)
    async def _on_db(request: Request, exc: HqError) -> Response:
        return _answer(request, 503, "Database unavailable", f"{exc}; then try again")

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _answer(request, 422, "Invalid request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> Response:
        api = request.url.path.startswith("/v1/")
        body, headers = router_problem(request.scope, app.router.routes, exc.status_code, exc.detail,
                                       _API_HELP if api else _DASHBOARD_HELP)
        title, detail = body["title"], body["detail"]
        if exc.status_code == 404 and not api:
            title, detail = "No such page", detail.replace("No such endpoint", "No such page", 1)
        return _answer(request, exc.status_code, title, detail, headers or dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _on_bug(request: Request, exc: Exception) -> Response:
        # Logged with its traceback by the server; the caller gets a message, not the traceback.
        return _answer(request, 500, "Internal error",
                       f"headquarters could not answer ({type(exc).__name__}); the service log "
                       "('journalctl -u pos-hq' or the terminal running 'pos hq serve') says why")

    def terminal(request: Request,
                 creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Terminal:
        # A client certificate (already verified against [serve --client-ca] by the TLS layer) names the
        # terminal by its fingerprint; without one, the bearer token does.
        der = (request.scope.get("extensions") or {}).get("tls", {}).get("client_cert_der")
        if der:
            found = db.authenticate_cert(hashlib.sha256(der).hexdigest())
            if found is None:
                raise Problem(401, "Unknown or revoked certificate",
                              "issue the terminal a new certificate with 'pos hq add-terminal --cert' and put "
                              "it in [hq] cert_file and key_file")
            return found
        if creds is None or creds.scheme.lower() != "bearer":
            raise Problem(401, "Missing bearer token",
                          "send 'Authorization: Bearer <credential>' with the credential 'pos hq add-terminal' "
                          "printed, or connect with the client certificate it issued")
        found = db.authenticate(creds.credentials)
        if found is None:
            raise Problem(401, "Unknown or revoked credential",
                          "register the terminal with 'pos hq add-terminal' and put the new credential "
                          "in [hq] token_file")
        return found

    @app.post("/v1/ingest")
    def ingest(batch: Batch, who: Annotated[Terminal, Depends(terminal)]) -> dict[str, Any]:
        if batch.terminal_id != who.terminal_id:
            raise Problem(403, "Not this terminal's events",
                          f"this credential belongs to terminal {who.terminal_id}, the batch says "
                          f"{batch.terminal_id}: check [terminal] terminal_id and [hq] token_file")
        stored, duplicates = db.ingest(who, batch.install_id, [e.model_dump() for e in batch.events],
                                       batch.heartbeat)
        upto = max((e.seq for e in batch.events), default=0)
        return {"stored": stored, "duplicates": duplicates, "upto": upto}

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        db.rows("SELECT 1")
        return {"status": "ok", "version": __version__}

    # ------------------------------------------------------------ dashboard

    def user(request: Request) -> tuple[str, str]:
        cookie = request.cookies.get(COOKIE)
        found = db.session_user(cookie) if cookie else None
        if found is None:
            raise _Login()
        return found

    class _Login(Exception):
        pass

    @app.exception_handler(_Login)
    async def _to_login(_: Request, __: _Login) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(error: str = "") -> str:
        return views.login_page(error)

    @app.post("/login")
    async def login(request: Request) -> Response:
        # The form is parsed here: no multipart library for two fields.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        name, password = form.get("name", [""])[0], form.get("password", [""])[0]
        role = await run_in_threadpool(db.user_role, name, password) if name and password else None
        if role is None:
            return HTMLResponse(views.login_page("Wrong name or password."), status_code=401)
        cookie = await run_in_threadpool(db.new_session, name, SESSION_SECONDS)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", max_age=SESSION_SECONDS,
                        secure=request.url.scheme == "https")
        return resp

    @app.post("/logout")
    def logout(request: Request) -> Response:
        # The session ends at headquarters too: the same cookie sent again is refused.
        cookie = request.cookies.get(COOKIE)
        if cookie:
            db.end_session(cookie)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    @app.get("/", response_class=HTMLResponse)
    def home(who: Annotated[tuple[str, str], Depends(user)], day: str = "") -> str:
        return views.home_page(db, who, day or time.strftime("%Y-%m-%d", time.gmtime()))

    @app.post("/terminals/{terminal_id}/revoke")
    def revoke(terminal_id: str, who: Annotated[tuple[str, str], Depends(user)]) -> Response:
        # Only a manager changes anything; the session cookie is SameSite=strict (no cross-site posts).
        if who[1] != "manager":
            return HTMLResponse(views.forbidden_page(who), status_code=403)
        db.revoke(terminal_id)
        return RedirectResponse("/", status_code=303)

    @app.get("/reconcile", response_class=HTMLResponse)
    def reconciliation(who: Annotated[tuple[str, str], Depends(user)], day: str = "") -> str:
        return views.reconcile_page(db, who, day or time.strftime("%Y-%m-%d", time.gmtime()))

    @app.get("/receipt/{terminal_id}/{install_id}/{seq}.png")
    def receipt(terminal_id: str, install_id: str, seq: int,
                who: Annotated[tuple[str, str], Depends(user)], lang: str = "en") -> Response:
        from devices.messages import LANGUAGES, Catalogue
        from devices.receipt import ReceiptData
        from devices.receipt_image import receipt_png

        if lang not in LANGUAGES:
            raise Problem(422, "Unknown language", f"lang={lang}: use one of {', '.join(LANGUAGES)}")

        data = db.receipt(terminal_id, install_id, seq)
        if data is None:
            raise Problem(404, "No such receipt", f"terminal {terminal_id} shipped no receipt {install_id}/{seq}")
        try:
            png = receipt_png(ReceiptData.from_dict(data), Catalogue.load(lang))
        except (KeyError, ValueError, TypeError) as exc:
            raise Problem(422, "Receipt data not readable", str(exc)) from None
        return Response(png, media_type="image/png")

    @app.get("/item/{terminal_id}/{ref}", response_class=HTMLResponse)
    def item(terminal_id: str, ref: str, who: Annotated[tuple[str, str], Depends(user)]) -> str:
        page = views.item_page(db, who, terminal_id, ref)
        if page is None:
            raise Problem(404, "No such item", f"no sale or refund {ref} from terminal {terminal_id}")
        return page

    return app

"""The daemon's web layer: routes as data, served as a WSGI app (pos/wsgiserver.py).

The till interface (pos/till/api.py) and the notification listener
(pos/ops/notify_listener.py) are route tables here. A till `Route` says its
method, path, token, parameters, body model and answer model; from the same
routes come the request handling (pydantic validates
what comes in and shapes what goes out) and the OpenAPI document
(`openapi()`). The semantics are FastAPI's, which served this interface
before, so the till sees the same API, the same errors and the same document:

- the request's body is parsed as JSON when the route takes one (400 when it
  is not JSON), then the token's rights are checked (401/403), then every
  parameter and the body are validated together (422, the first three
  errors named);
- the answer is validated against the route's model and only its fields are
  sent (`response_model`);
- a path that matches no route is 404, a path whose routes take other methods
  405 with `Allow`, a path that matches with or without its last slash a 307
  to that path.

A `raw` route (the notification listener's) gets the WSGI environ and answers
as it likes; it reads its body with `read_body`, bounded.

Why not FastAPI and Starlette: with uvicorn, asyncio and anyio they cost the
daemon about 13 MB of memory, a fifth of its budget, for fifteen routes. The
sandbox and headquarters, processes of their own, stay on them; the text of a
router's 404 and 405 is `route_problem` for both.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import GenerateJsonSchema

__all__ = ["Answer", "BODY_READ", "NO_DEFAULT", "Param", "Route", "Routes", "problem_answer", "read_body",
           "route_problem"]

log = logging.getLogger("pos.web")

PROBLEM = "application/problem+json"
NO_DEFAULT: Any = object()
REF_TEMPLATE = "#/components/schemas/{model}"
# Set in the WSGI environ by whoever read the request's body to its end (the guard).
BODY_READ = "pos.body_read"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def problem_answer(status: int, title: str, detail: str = "", kind: str = "about:blank",
                   headers: Mapping[str, str] | None = None) -> Answer:
    """An RFC 9457 problem: what is wrong (title) and what to do (detail)."""
    body = {"type": kind, "title": title, "status": status, "detail": detail}
    return Answer(status, _json(body), PROBLEM, tuple((headers or {}).items()))


def route_problem(method: str, path: str, status: int, where: str, allowed: Sequence[str] = (),
                  detail: object = None) -> tuple[dict[str, Any], dict[str, str] | None]:
    """Problem details (RFC 9457) for an answer of a router itself, saying what is wrong and what to
    do (`where`: the endpoints there are), never an empty detail: no such path (404), a method the
    path does not take (405, with every method its routes take, `allowed`, in Allow), any other
    refusal of the router (`detail`: what it said). Returns the body and the headers to send."""
    shown = path if len(path) <= 80 else path[:77] + "..."
    headers: dict[str, str] | None = None
    if status == 404:
        title = "No such endpoint"
        text = f"No such endpoint: {method} {shown}; {where}"
    elif status == 405:
        allowed = sorted(set(allowed))
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        title = "Method not allowed"
        use = " or ".join([", ".join(allowed[:-1]), allowed[-1]] if len(allowed) > 2 else allowed)
        text = f"{shown} does not take {method}: use {use or 'another method'}; {where}"
    else:
        title = _phrase(status)
        said = "" if str(detail or title) == title else f"{detail}; "
        text = f"{method} {shown} was refused ({status} {title}); {said}{where}"
    return {"type": "about:blank", "title": title, "status": status, "detail": text}, headers


def _declared(environ: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the request's body is chunked, and its Content-Length as sent ("0" when none)."""
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    return chunked, str(environ.get("CONTENT_LENGTH", "") or "0")


def read_body(environ: dict[str, Any], max_body: int) -> bytes | None:
    """The request's body, or None when it is above `max_body` bytes (declared or sent: a chunked
    body has no length), which is then not read further."""
    chunked, length = _declared(environ)
    if not chunked and (not length.isdigit() or int(length) > max_body):
        return None
    stream = environ["wsgi.input"]
    body = stream.read(max_body + 1) if chunked else stream.read(int(length)) if int(length) else b""
    if len(body) > max_body:
        return None
    environ[BODY_READ] = True
    return bytes(body)


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter: its name in the handler and its type (with pydantic's
    constraints, as `Annotated[...]`); `alias` is its name on the wire when that differs."""

    name: str
    where: Literal["path", "query", "header"]
    type: Any
    default: Any = NO_DEFAULT
    alias: str = ""
    description: str = ""

    @property
    def wire(self) -> str:
        return self.alias or self.name


@dataclass(frozen=True)
class Route:
    """One operation. `handler` gets the parameters and `body` (the validated model) as keyword
    arguments and returns what `answer` describes, or `(that, status)` to answer another success
    status; `check` gets the request's token and raises the handler's error when it may not.
    A `raw` route's handler gets the WSGI environ and returns its `Answer`."""

    method: str
    path: str
    handler: Callable[..., Any]
    summary: str = ""
    answer: Any = None
    status: int = 200
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    check: Callable[[str], None] | None = None
    name: str = ""
    raw: bool = False

    @property
    def operation_id(self) -> str:
        # FastAPI's scheme, so a client generated from the document before keeps its method names.
        return re.sub(r"\W", "_", f"{self.name or self.handler.__name__}{self.path}") + f"_{self.method.lower()}"


@dataclass
class _Compiled:
    route: Route
    pattern: re.Pattern[str]
    adapters: dict[str, TypeAdapter[Any]] = field(default_factory=dict)
    answer: TypeAdapter[Any] | None = None


Guard = Callable[[dict[str, Any]], "Answer | tuple[str, bytes]"]


class Routes:
    """A route table as a WSGI app. `guard(environ)`, when given, runs first on every request under
    /v1/ (the token and the body's size, before a byte of the body is read) and returns either an
    `Answer` (refused) or the request's token and body; `errors` maps an exception the handlers raise
    to its `Answer` (None: not one it knows, which is logged and answered 500); `where` says, in a
    404 or 405, where the endpoints are listed."""

    def __init__(self, routes: Sequence[Route], *, errors: Callable[[Exception], Answer | None], where: str,
                 guard: Guard | None = None, not_json: Callable[[str], Answer] | None = None,
                 documents: Mapping[str, Callable[[], bytes]] = {}) -> None:
        self._routes = [_compile(route) for route in routes]
        self._guard, self._errors, self._not_json, self._where = guard, errors, not_json, where
        # Documents served as they are (GET or HEAD), without the guard: /openapi.json.
        self._documents = dict(documents)
        self._cache: dict[str, bytes] = {}

    # -- WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        try:
            answer = self._answer(environ, method)
        except Exception:
            log.exception("request failed method=%s path=%s", method, environ.get("PATH_INFO", ""))
            answer = problem_answer(500, "Internal error", "the terminal failed to answer; its log says why. "
                                    "Read the sale again before doing anything else")
        headers = [("Content-Type", answer.content_type), ("Content-Length", str(len(answer.body))),
                   *answer.headers]
        if _declares_body(environ) and BODY_READ not in environ:
            # Answered without reading the body (refused by the guard, or a path that takes none): the
            # connection closes rather than reading, say, 100 MB nobody asked for.
            headers.append(("Connection", "close"))
        start_response(f"{answer.status} {_phrase(answer.status)}", headers)
        return [] if method == "HEAD" else [answer.body]

    def _answer(self, environ: dict[str, Any], method: str) -> Answer:
        raw_path = str(environ.get("REQUEST_URI", "") or environ.get("PATH_INFO", "/")).partition("?")[0]
        # Percent-decoded as UTF-8 the way the till's clients encode them (an encoded '/' is a '/').
        path = unquote(raw_path.encode("latin-1").decode("utf-8", "replace"))
        if path in self._documents:
            if method not in ("GET", "HEAD"):
                return self._no_route(405, method, path, ["GET", "HEAD"])
            if path not in self._cache:
                self._cache[path] = self._documents[path]()
            return Answer(200, self._cache[path])
        guarded = self._guard(environ) if self._guard is not None and path.startswith("/v1/") else ("", b"")
        if isinstance(guarded, Answer):
            return guarded
        token, body = guarded
        found, allowed = self._match(path, method)
        if found is None:
            if allowed:
                return self._no_route(405, method, path, allowed)
            other = path[:-1] if path.endswith("/") else path + "/"
            if path != "/" and any(self._match(other, method)):
                query = str(environ.get("QUERY_STRING", ""))
                host = str(environ.get("HTTP_HOST", "") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}")
                location = f"{environ.get('wsgi.url_scheme', 'http')}://{host}{other}" + (f"?{query}" if query else "")
                return Answer(307, b"", "text/plain; charset=utf-8", (("Location", location),))
            return self._no_route(404, method, path, [])
        compiled, path_values = found
        try:
            if compiled.route.raw:
                raw_answer: Answer = compiled.route.handler(environ)
                return raw_answer
            return self._call(compiled, path_values, environ, token, body)
        except Exception as exc:
            answer = self._errors(exc)
            if answer is None:
                raise
            return answer

    def _match(self, path: str, method: str) -> tuple[tuple[_Compiled, dict[str, str]] | None, list[str]]:
        allowed: list[str] = []
        for compiled in self._routes:
            matched = compiled.pattern.fullmatch(path)
            if matched is None:
                continue
            if compiled.route.method == method:
                return (compiled, matched.groupdict()), []
            allowed.append(compiled.route.method)
        return None, sorted(set(allowed))

    def _no_route(self, status: int, method: str, path: str, allowed: list[str]) -> Answer:
        body, headers = route_problem(method, path, status, self._where, allowed)
        return problem_answer(status, body["title"], body["detail"], headers=headers)

    def _call(self, compiled: _Compiled, path_values: dict[str, str], environ: dict[str, Any], token: str,
              raw: bytes) -> Answer:
        route = compiled.route
        body: Any = None
        if route.body is not None and raw:
            content_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
            if not content_type or (content_type.startswith("application/")
                                    and (content_type.endswith("/json") or content_type.endswith("+json"))):
                assert self._not_json is not None, "a route with a JSON body needs not_json"
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError as exc:
                    return self._not_json(f"{exc.msg} at character {exc.pos}")
                except UnicodeDecodeError:
                    return self._not_json("its bytes are not UTF-8 text")
                except RecursionError:
                    return self._not_json("it is nested too deeply")
            else:
                body = raw
        if route.check is not None:
            route.check(token)
        query = dict(parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True))
        given = {"path": path_values, "query": query}
        errors: list[tuple[tuple[Any, ...], str]] = []
        arguments: dict[str, Any] = {}
        for param in route.params:
            if param.where == "header":
                value = environ.get("HTTP_" + param.wire.upper().replace("-", "_"))
            else:
                value = given[param.where].get(param.wire)
            if value is None and param.default is not NO_DEFAULT:
                arguments[param.name] = param.default
                continue
            try:
                arguments[param.name] = compiled.adapters[param.name].validate_python(value)
            except ValidationError as exc:
                errors += [((param.where, param.wire, *e["loc"]), e["msg"]) for e in exc.errors()]
        if route.body is not None:
            if body is None:
                errors.append((("body",), "Field required"))
            else:
                try:
                    arguments["body"] = route.body.model_validate(body)
                except ValidationError as exc:
                    errors += [(("body", *e["loc"]), e["msg"]) for e in exc.errors()]
        if errors:
            parts = []
            for loc, msg in errors[:3]:
                where = ".".join(str(p) for p in loc if p != "body")
                parts.append(f"{where or 'body'}: {msg}")
            return problem_answer(422, "Invalid request", "; ".join(parts))
        result = route.handler(**arguments)
        status = route.status
        if isinstance(result, tuple):
            result, status = result
        assert compiled.answer is not None
        value = compiled.answer.validate_python(result)
        return Answer(status, compiled.answer.dump_json(value, by_alias=True))

    # -- the OpenAPI document

    def openapi(self, *, title: str, version: str, description: str,
                problems: Mapping[int, str], problem_model: type[BaseModel]) -> dict[str, Any]:
        """The OpenAPI 3.1 document of these routes, with `problems` (status -> what it means)
        declared on every operation as `problem_model` answers."""
        inputs: list[tuple[Any, Literal["validation", "serialization"], Any]] = []
        documented = [compiled for compiled in self._routes if not compiled.route.raw]
        for compiled in documented:
            route = compiled.route
            if route.body is not None:
                inputs.append((("body", route.body), "validation", TypeAdapter(route.body).core_schema))
            assert compiled.answer is not None
            inputs.append((("answer", route.path, route.method), "serialization", compiled.answer.core_schema))
        inputs.append((("problem",), "serialization", TypeAdapter(problem_model).core_schema))
        generator = GenerateJsonSchema(ref_template=REF_TEMPLATE)
        refs, definitions = generator.generate_definitions(inputs)
        problem_ref = refs[(("problem",), "serialization")]
        problem_responses = {str(status): {"content": {"application/json": {"schema": problem_ref}, PROBLEM: {}},
                                           "description": text} for status, text in problems.items()}
        paths: dict[str, dict[str, Any]] = {}
        for compiled in documented:
            route = compiled.route
            answer_schema = dict(refs[(("answer", route.path, route.method), "serialization")])
            if "$ref" not in answer_schema:   # a list or other non-model answer gets FastAPI's title
                answer_schema["title"] = f"Response_{route.operation_id}".replace("_", " ").title()
            operation: dict[str, Any] = {
                "summary": route.summary,
                "operationId": route.operation_id,
                "responses": {str(route.status): {"content": {"application/json": {"schema": answer_schema}},
                                                  "description": "Successful Response"},
                              **problem_responses},
            }
            if route.params:
                operation["parameters"] = [self._parameter(compiled, param) for param in route.params]
            if route.body is not None:
                operation["requestBody"] = {"content": {"application/json": {
                    "schema": refs[(("body", route.body), "validation")]}}, "required": True}
            if route.check is not None:
                operation["security"] = [{"HTTPBearer": []}]
            paths.setdefault(route.path, {})[route.method.lower()] = operation
        document: dict[str, Any] = _without_nulls({
            "openapi": "3.1.0",
            "info": {"title": title, "version": version, "description": description},
            "paths": paths,
            "components": {"schemas": dict(sorted(definitions.items())),
                           "securitySchemes": {"HTTPBearer": {"type": "http", "scheme": "bearer"}}},
        })
        return document

    @staticmethod
    def _parameter(compiled: _Compiled, param: Param) -> dict[str, Any]:
        schema = compiled.adapters[param.name].json_schema(ref_template=REF_TEMPLATE)
        schema["title"] = param.wire.replace("_", " ").title()
        described = {"description": param.description} if param.description else {}
        if param.default is not NO_DEFAULT:
            schema["default"] = param.default
        if param.description:
            schema["description"] = param.description
        return {"name": param.wire, "in": param.where, "required": param.default is NO_DEFAULT,
                "schema": schema, **described}


def _compile(route: Route) -> _Compiled:
    pattern = re.compile("".join(f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
                                 for part in re.split(r"(\{[a-z_]+\})", route.path)))
    adapters: dict[str, TypeAdapter[Any]] = {param.name: TypeAdapter(param.type) for param in route.params}
    return _Compiled(route, pattern, adapters, None if route.raw else TypeAdapter(route.answer))


def _declares_body(environ: Mapping[str, Any]) -> bool:
    chunked, length = _declared(environ)
    return chunked or length != "0"


def _without_nulls(value: Any) -> Any:
    """The document as FastAPI wrote it: no key whose value is null (a default of None is not shown)."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _phrase(status: int) -> str:
    return HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"

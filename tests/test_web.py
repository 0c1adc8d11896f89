"""The daemon's web layer (pos/web.py on pos/wsgiserver.py) over real HTTP on loopback: what the till
interface's and the notification listener's tests do not reach on their own (HEAD, the slash
redirect, bodies that are not JSON by their type, chunked bodies, a handler's bug, the pool's growth)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from pos.web import Answer, Param, Route, Routes, problem_answer, read_body
from pos.wsgiserver import WsgiServer

MAX_BODY = 1024


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=10)]


class ThingOut(BaseModel):
    name: str
    size: int


class Refused(Exception):
    pass


def _guard(environ: dict[str, Any]) -> Answer | tuple[str, bytes]:
    if environ.get("HTTP_AUTHORIZATION") != "Bearer good":
        return problem_answer(401, "Missing bearer token", "send the token")
    body = read_body(environ, MAX_BODY)
    return problem_answer(413, "Request too large", "smaller") if body is None else ("good", body)


@pytest.fixture
def server() -> Iterator[Any]:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def make(body: Thing) -> dict[str, Any]:
        return {"name": body.name, "size": len(body.name), "dropped": "not in ThingOut"}

    def get(thing_id: str) -> dict[str, Any]:
        if thing_id == "bug":
            raise ZeroDivisionError("a bug")
        if thing_id == "refused":
            raise Refused()
        return {"name": thing_id, "size": 0}

    def slow() -> dict[str, Any]:
        entered.release()
        release.wait(10)
        return {"name": "slow", "size": 1}

    routes = [
        Route("POST", "/v1/things", make, "make a thing", ThingOut, 201, body=Thing),
        Route("GET", "/v1/things/{thing_id}", get, "read a thing", ThingOut,
              params=(Param("thing_id", "path", Annotated[str, Field(max_length=8)]),)),
        Route("GET", "/v1/slow", slow, "wait", ThingOut),
    ]
    app = Routes(routes, errors=lambda exc: problem_answer(409, "Refused") if isinstance(exc, Refused) else None,
                 where="see /doc.json", guard=_guard,
                 not_json=lambda why: problem_answer(400, "Body is not JSON", why),
                 documents={"/doc.json": lambda: b'{"doc": true}'})
    srv = WsgiServer(app, threads=6, min_threads=1).start()
    srv.release, srv.entered = release, entered
    try:
        yield srv
    finally:
        release.set()
        srv.stop()


def _ask(srv: Any, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Authorization": "Bearer good", **(headers or {})})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def test_an_answer_is_its_model_and_only_its_fields(server: Any) -> None:
    status, headers, body = _ask(server, "POST", "/v1/things", b'{"name": "pen"}',
                                 {"Content-Type": "application/json"})
    assert status == 201 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"name": "pen", "size": 3}


def test_head_of_a_document_has_its_length_and_no_body(server: Any) -> None:
    status, headers, body = _ask(server, "HEAD", "/doc.json")
    assert status == 200 and headers["content-length"] == str(len(b'{"doc": true}')) and body == b""
    status, headers, _ = _ask(server, "POST", "/doc.json")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_a_path_with_a_slash_too_many_is_redirected_to_its_route(server: Any) -> None:
    status, headers, _ = _ask(server, "GET", "/v1/things/pen/?x=1")
    assert status == 307 and headers["location"].endswith("/v1/things/pen?x=1")
    status, _, body = _ask(server, "GET", "/v1/nothing/")
    assert status == 404 and "see /doc.json" in json.loads(body)["detail"]


def test_a_body_of_another_type_is_not_read_as_json(server: Any) -> None:
    status, _, body = _ask(server, "POST", "/v1/things", b'{"name": "pen"}', {"Content-Type": "text/plain"})
    assert status == 422 and json.loads(body)["title"] == "Invalid request"


def test_a_body_that_is_not_json_and_a_missing_body(server: Any) -> None:
    status, _, body = _ask(server, "POST", "/v1/things", b'{"name": ', {"Content-Type": "application/json"})
    assert status == 400 and "at character 9" in json.loads(body)["detail"]
    status, _, body = _ask(server, "POST", "/v1/things", b"", {"Content-Type": "application/json"})
    assert status == 422 and json.loads(body)["detail"] == "body: Field required"


def test_parameters_and_body_are_validated_together(server: Any) -> None:
    status, _, body = _ask(server, "GET", "/v1/things/" + "x" * 9)
    assert status == 422 and json.loads(body)["detail"].startswith("path.thing_id: ")


def test_a_chunked_body_above_the_limit_is_refused_and_the_connection_closed(server: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        chunk = b"x" * 600
        s.sendall(b"POST /v1/things HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
                  b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                  + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
        answer = b""
        while data := s.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 413") and b"Request too large" in answer


def test_a_refusal_before_the_body_closes_the_connection_without_reading_it(server: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/things HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{")
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401") and b"connection: close" in answer.lower()


def test_a_handlers_error_is_its_answer_and_a_bug_a_problem_not_a_traceback(
        server: Any, caplog: pytest.LogCaptureFixture) -> None:
    status, _, body = _ask(server, "GET", "/v1/things/refused")
    assert status == 409 and json.loads(body)["title"] == "Refused"
    status, headers, body = _ask(server, "GET", "/v1/things/bug")
    assert status == 500 and headers["content-type"] == "application/problem+json"
    assert b"Traceback" not in body and b"ZeroDivisionError" not in body
    assert any("ZeroDivisionError" in (record.exc_text or "") for record in caplog.records)


def test_the_pool_grows_while_requests_wait_so_others_are_still_answered(server: Any) -> None:
    waiting = [threading.Thread(target=_ask, args=(server, "GET", "/v1/slow"), daemon=True) for _ in range(4)]
    for thread in waiting:
        thread.start()
    for _ in waiting:   # all four are being answered, each holding a thread
        assert server.entered.acquire(timeout=10)
    # One thread at start; four requests hold four; a fifth is still answered.
    status, _, body = _ask(server, "GET", "/v1/things/pen")
    assert status == 200 and json.loads(body)["name"] == "pen"
    server.release.set()
    for thread in waiting:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in waiting)


def test_stop_does_not_wait_for_a_request_still_running() -> None:
    """A long-poll in progress (here a handler waiting 30 s) holds neither the server's stop past its
    grace time nor the process: its thread is a daemon thread and its connection is closed."""
    release = threading.Event()
    entered = threading.Event()

    def slow() -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return {"name": "slow", "size": 1}

    app = Routes([Route("GET", "/v1/slow", slow, "wait", ThingOut)], errors=lambda exc: None, where="-")
    srv = WsgiServer(app, threads=2, min_threads=1).start()
    poller = threading.Thread(target=lambda: _ask(srv, "GET", "/v1/slow"), daemon=True)
    poller.start()
    assert entered.wait(10)
    stopping = threading.Thread(target=srv.stop)
    stopping.start()
    stopping.join(timeout=15)
    try:
        assert not stopping.is_alive(), "stop waited for the running request"
        assert all(t.daemon for t in threading.enumerate() if t.name.startswith("http "))
    finally:
        release.set()

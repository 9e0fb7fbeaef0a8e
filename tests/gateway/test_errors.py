"""Errors: bad input is a 4xx with a JSON detail, a handler's failure a 500 that leaks nothing."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import Message

from framework import App, Context
from framework.exceptions import DeclarationError
from framework.testing import TestApp


class Order(BaseModel):
    id: str
    total: float


app = App("errors")
app.queue("fifo-orders.fifo", fifo=True)


@app.route("/orders/{order_id}", methods=["POST"])
async def update_order(order_id: int, order: Order, dry_run: bool = False) -> dict[str, Any]:
    return {"id": order_id}


@app.route("/search")
async def search(tag: list[str], limit: int = 10) -> list[str]:
    return tag[:limit]


@app.route("/boom")
async def boom() -> None:
    raise RuntimeError("database password is hunter2")


@app.route("/unknown-queue", methods=["POST"])
async def send_to_unknown_queue() -> None:
    await app.send("no-such-queue", {"x": 1})


@app.route("/bad-message", methods=["POST"])
async def send_bad_message() -> None:
    await app.send("fifo-orders.fifo", {"x": 1})  # no group_id: the queue refuses it


@app.route("/teapot")
async def teapot() -> None:
    raise HTTPException(418, "short and stout", headers={"X-Tea": "earl grey"})


@app.route("/unserialisable")
async def unserialisable() -> dict[str, object]:
    return {"x": object()}


def detail(response: Any) -> Any:
    return response.json()["detail"]


async def test_missing_body_field_is_422_with_its_location() -> None:
    """A body missing a required field gives 422 locating it under body."""
    async with TestApp(app) as t:
        r = await t.http.post("/orders/1", json={"id": "a"})
    assert r.status_code == 422
    assert detail(r) == [{"loc": ["body", "total"], "msg": "Field required", "type": "missing"}]


async def test_malformed_json_is_422_json_invalid_at_body() -> None:
    """A body that is not JSON at all gives 422 with a json_invalid error at ["body"]."""
    async with TestApp(app) as t:
        r = await t.http.post(
            "/orders/1", content=b'{"id": ', headers={"content-type": "application/json"}
        )
    assert r.status_code == 422
    [error] = detail(r)
    assert (error["loc"], error["type"]) == (["body"], "json_invalid")


async def test_empty_body_for_a_required_body_is_422_missing() -> None:
    """A request without the body the route needs gives 422 missing at ["body"]."""
    async with TestApp(app) as t:
        r = await t.http.post("/orders/1")
    assert r.status_code == 422
    assert detail(r) == [{"loc": ["body"], "msg": "Field required", "type": "missing"}]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"id=a&total=1", "application/x-www-form-urlencoded"), (b"hello", "text/plain")],
)
async def test_non_json_content_type_is_415(content: bytes, content_type: str) -> None:
    """A form or text body sent to a JSON route gives 415 naming the expected type."""
    async with TestApp(app) as t:
        r = await t.http.post("/orders/1", content=content, headers={"content-type": content_type})
    assert r.status_code == 415
    assert "application/json" in detail(r)
    assert content_type in detail(r)


async def test_json_suffix_media_type_is_accepted() -> None:
    """A +json media type with parameters counts as JSON."""
    async with TestApp(app) as t:
        r = await t.http.post(
            "/orders/1",
            content=b'{"id": "a", "total": 1}',
            headers={"content-type": "application/merge-patch+json; charset=utf-8"},
        )
    assert r.status_code == 200


async def test_errors_from_path_query_and_body_are_reported_together() -> None:
    """Invalid path, query and body give one 422 listing all three."""
    async with TestApp(app) as t:
        r = await t.http.post("/orders/x?dry_run=perhaps", json={"id": "a", "total": "lots"})
    assert r.status_code == 422
    locs = [e["loc"] for e in detail(r)]
    assert locs == [["path", "order_id"], ["query", "dry_run"], ["body", "total"]]
    assert {e["type"] for e in detail(r)} == {"int_parsing", "bool_parsing", "float_parsing"}


async def test_bad_path_parameter_type_is_422() -> None:
    """A path segment that does not convert to the annotated type gives 422 at ["path", name]."""
    async with TestApp(app) as t:
        r = await t.http.post("/orders/abc", json={"id": "a", "total": 1})
    assert r.status_code == 422
    assert detail(r)[0]["loc"] == ["path", "order_id"]


async def test_bad_and_missing_query_parameters_are_422() -> None:
    """A missing required query list and a non-integer limit give 422 at ["query", name]."""
    async with TestApp(app) as t:
        missing = await t.http.get("/search")
        bad = await t.http.get("/search?tag=a&limit=ten")
    assert missing.status_code == bad.status_code == 422
    assert detail(missing) == [
        {"loc": ["query", "tag"], "msg": "Field required", "type": "missing"}
    ]
    assert detail(bad)[0]["loc"] == ["query", "limit"]


async def test_body_over_content_length_limit_is_413() -> None:
    """A body larger than app.max_body_size gives 413."""
    small = App("small", max_body_size=64)

    @small.route("/orders", methods=["POST"])
    async def create(order: Order) -> None: ...

    async with TestApp(small) as t:
        r = await t.http.post("/orders", json={"id": "a" * 100, "total": 1})
        ok = await t.http.post("/orders", json={"id": "a", "total": 1})
    assert r.status_code == 413
    assert "64 bytes" in detail(r)
    assert ok.status_code == 204


async def test_streamed_body_is_refused_without_reading_it_all() -> None:
    """A chunked body without Content-Length is cut off at the limit, not buffered whole."""
    chunks_read = 0

    async def receive() -> Message:
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": chunks_read < 1000}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/orders/1",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    await app.asgi(scope, receive, send)
    assert sent[0]["status"] == 413
    assert chunks_read == 17  # 16 chunks fill the 1 MiB default limit; the 17th passes it


async def test_body_announced_larger_than_the_limit_is_refused_before_reading() -> None:
    """A Content-Length over the limit is refused without receiving any of the body."""

    async def receive() -> Message:
        raise AssertionError("the body must not be read")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/orders/1",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"2000000")],
    }
    await app.asgi(scope, receive, send)
    assert sent[0]["status"] == 413


async def test_chunked_body_within_the_limit_is_joined() -> None:
    """A body arriving in several chunks is validated as a whole."""
    parts = [b'{"id": "a",', b' "total": ', b"3}"]

    async def receive() -> Message:
        return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/orders/9",
        "query_string": b"",
        "headers": [],
    }
    await app.asgi(scope, receive, send)
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"id":9}'


async def test_unknown_path_is_404_json() -> None:
    """A path no route matches gives 404 with a JSON detail."""
    async with TestApp(app) as t:
        r = await t.http.get("/nowhere")
    assert r.status_code == 404
    assert detail(r) == "no route matches /nowhere"


async def test_wrong_method_is_405_with_allow_header() -> None:
    """A known path with an unserved method gives 405 and lists the allowed methods."""
    async with TestApp(app) as t:
        r = await t.http.delete("/search")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert "DELETE" in detail(r)


async def test_handler_exception_is_500_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A handler's exception gives a bare 500 with the request id; the traceback is only logged."""
    with caplog.at_level(logging.ERROR, logger="framework.gateway"):
        async with TestApp(app) as t:
            r = await t.http.get("/boom")
    assert r.status_code == 500
    rid = r.headers["x-request-id"]
    assert r.json() == {"detail": "internal server error", "request_id": rid}
    assert "hunter2" not in r.text
    assert "Traceback" not in r.text
    [record] = [rec for rec in caplog.records if rec.getMessage() == "http.error"]
    assert record.fields["request_id"] == rid  # type: ignore[attr-defined]
    assert record.fields["error"] == "RuntimeError"  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert "hunter2" in caplog.text


@pytest.mark.parametrize("path", ["/unknown-queue", "/bad-message"])
async def test_framework_errors_from_app_send_in_a_handler_are_500(path: str) -> None:
    """An unknown queue or a refused message inside a handler is a server bug: 500."""
    async with TestApp(app) as t:
        r = await t.http.post(path)
    assert r.status_code == 500
    assert detail(r) == "internal server error"


async def test_unserialisable_result_is_500() -> None:
    """A return value that cannot be JSON gives 500, not a half-sent response."""
    async with TestApp(app) as t:
        r = await t.http.get("/unserialisable")
    assert r.status_code == 500


async def test_starlette_http_exception_sets_status_detail_and_headers() -> None:
    """A handler raising HTTPException answers with its status, detail and headers."""
    async with TestApp(app) as t:
        r = await t.http.get("/teapot")
    assert r.status_code == 418
    assert detail(r) == "short and stout"
    assert r.headers["x-tea"] == "earl grey"


async def test_sane_request_id_is_echoed() -> None:
    """A client's X-Request-ID of safe characters comes back unchanged, on errors too."""
    async with TestApp(app) as t:
        ok = await t.http.get("/search?tag=a", headers={"X-Request-ID": "client.id-1_2"})
        missing = await t.http.get("/nowhere", headers={"X-Request-ID": "client.id-3"})
    assert ok.headers["x-request-id"] == "client.id-1_2"
    assert missing.headers["x-request-id"] == "client.id-3"


@pytest.mark.parametrize("given", [None, "has space", "x" * 129, "semi;colon", ""])
async def test_missing_or_unsafe_request_id_is_replaced_by_a_uuid4_hex(given: str | None) -> None:
    """Without a safe X-Request-ID the response carries a fresh uuid4 hex."""
    headers = {} if given is None else {"X-Request-ID": given}
    async with TestApp(app) as t:
        r = await t.http.get("/search?tag=a", headers=headers)
    rid = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", rid)


async def test_request_ids_are_unique() -> None:
    """Each request without an id gets a different one."""
    async with TestApp(app) as t:
        ids = {(await t.http.get("/search?tag=a")).headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20


def test_route_under_the_admin_prefix_is_refused() -> None:
    """A route under /_framework/ cannot shadow the admin API."""
    bad = App("bad")

    with pytest.raises(DeclarationError, match="reserved for the admin API"):

        @bad.route("/_framework/health")
        async def health() -> None: ...


def test_route_with_an_unknown_auth_form_is_refused() -> None:
    """An auth= that is no authorizer is refused rather than serving the route unprotected."""
    bad = App("bad")

    with pytest.raises(DeclarationError, match="is not an authorizer"):

        @bad.route("/secret", auth="api-key")
        async def secret() -> None: ...


def test_route_taking_a_context_is_refused() -> None:
    """A route handler with a Context parameter fails at the decorator, naming the handler."""
    bad = App("bad")

    with pytest.raises(DeclarationError, match="'ctx'"):

        @bad.route("/ctx")
        async def with_context(ctx: Context) -> None: ...


def test_invalid_max_body_size_is_refused() -> None:
    """A max_body_size that is not a byte count fails when the App is made."""
    with pytest.raises(DeclarationError, match="max_body_size"):
        App("bad", max_body_size="1MB")  # type: ignore[arg-type]

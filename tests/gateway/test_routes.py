"""Routes: what a handler receives from a request, and what its return value becomes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from framework import App
from framework.testing import TestApp


class Order(BaseModel):
    id: str
    total: float


class Receipt(BaseModel):
    id: str
    at: datetime


app = App("routes")
threads: list[int] = []


@app.route("/orders", methods=["POST"], status_code=202)
async def create_order(order: Order) -> dict[str, Any]:
    return {"accepted": order.id, "total": order.total}


@app.route("/orders/{order_id}")
async def get_order(
    order_id: int, verbose: bool = False, note: str | None = None
) -> dict[str, Any]:
    return {"id": order_id, "verbose": verbose, "note": note}


@app.route("/orders/new")
async def new_order_form() -> str:
    return "form"


@app.route("/search")
async def search(tag: list[str], limit: int = 10, extra: list[str] | None = None) -> dict[str, Any]:
    return {"tag": tag, "limit": limit, "extra": extra}


@app.route("/defaults")
async def defaults(seen: list[str] = []) -> list[str]:  # noqa: B006 - the test is that it is copied
    seen.append("x")
    return seen


@app.route("/receipts/{rid}", methods=["PUT"])
async def put_receipt(rid: str, receipt: Receipt, request: Request) -> Receipt:
    assert rid == receipt.id
    raw = await request.body()
    return Receipt(id=f"{receipt.id}:{len(raw)}:{request.state.request_id}", at=receipt.at)


@app.route("/sync")
def sync_handler() -> dict[str, int]:
    threads.append(threading.get_ident())
    return {"thread": threading.get_ident()}


@app.route("/nothing", methods=["DELETE"])
async def delete_nothing() -> None:
    return None


@app.route("/created-nothing", methods=["POST"], status_code=201)
async def create_nothing() -> None:
    return None


@app.route("/custom")
async def custom() -> Response:
    return PlainTextResponse("teapot", status_code=418, headers={"x-custom": "yes"})


@app.route("/own-id")
async def own_id() -> Response:
    return Response(b"", headers={"X-Request-ID": "from-handler"})


@app.route("/items")
async def items() -> list[int]:
    return [1, 2, 3]


@app.route("/bytes")
async def raw_bytes() -> bytes:
    return b"\x00\x01"


@app.route("/optional-body", methods=["POST"])
async def optional_body(order: Order | None = None) -> dict[str, Any]:
    return {"order": None if order is None else order.id}


@app.route("/orders/{order_id}", methods=["GET"], version="v2")
async def get_order_v2(order_id: str) -> dict[str, str]:
    return {"v2": order_id}


async def test_json_body_is_validated_into_the_model_and_status_code_applied() -> None:
    """A JSON body becomes the pydantic model and the route's status_code is used."""
    async with TestApp(app) as t:
        r = await t.http.post("/orders", json={"id": "o-1", "total": "12.5"})
    assert r.status_code == 202
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"accepted": "o-1", "total": 12.5}


async def test_path_and_query_parameters_are_converted_by_annotation() -> None:
    """Path and query strings are converted to the annotated types."""
    async with TestApp(app) as t:
        r = await t.http.get("/orders/42", params={"verbose": "true", "note": "hi"})
    assert r.json() == {"id": 42, "verbose": True, "note": "hi"}


async def test_query_parameters_take_their_defaults_when_absent() -> None:
    """Query parameters that are not sent get the handler's defaults."""
    async with TestApp(app) as t:
        r = await t.http.get("/orders/7")
    assert r.json() == {"id": 7, "verbose": False, "note": None}


async def test_repeated_query_keys_fill_a_list_parameter() -> None:
    """A list[str] query parameter receives every value of a repeated key."""
    async with TestApp(app) as t:
        r = await t.http.get("/search?tag=a&tag=b&limit=3")
    assert r.json() == {"tag": ["a", "b"], "limit": 3, "extra": None}


async def test_mutable_default_is_fresh_for_every_request() -> None:
    """A list default mutated by the handler does not leak into the next request."""
    async with TestApp(app) as t:
        await t.http.get("/defaults")
        r = await t.http.get("/defaults")
    assert r.json() == ["x"]


async def test_static_path_wins_over_a_template_declared_before_it() -> None:
    """/orders/new is served by its own route, not by /orders/{order_id}."""
    async with TestApp(app) as t:
        r = await t.http.get("/orders/new")
    assert r.status_code == 200
    assert r.text == "form"


async def test_request_parameter_gets_the_request_with_its_body_and_id() -> None:
    """A request parameter can re-read the body and sees the request id in its state."""
    body = {"id": "r1", "at": "2024-05-01T12:00:00Z"}
    async with TestApp(app) as t:
        r = await t.http.put("/receipts/r1", json=body, headers={"X-Request-ID": "req-7"})
    assert r.status_code == 200
    length = len(r.request.content)
    assert r.json() == {"id": f"r1:{length}:req-7", "at": "2024-05-01T12:00:00Z"}
    assert Receipt.model_validate(r.json()).at == datetime(2024, 5, 1, 12, tzinfo=UTC)


async def test_sync_handler_runs_in_a_worker_thread() -> None:
    """A plain def handler runs outside the event loop's thread."""
    async with TestApp(app) as t:
        r = await t.http.get("/sync")
    assert r.status_code == 200
    assert r.json()["thread"] != threading.get_ident()


async def test_none_result_is_204_for_a_200_route() -> None:
    """Returning None from a route with the default status gives 204 No Content."""
    async with TestApp(app) as t:
        r = await t.http.delete("/nothing")
    assert r.status_code == 204
    assert r.content == b""


async def test_none_result_keeps_a_non_200_status_with_an_empty_body() -> None:
    """Returning None from a status_code=201 route gives 201 with an empty body."""
    async with TestApp(app) as t:
        r = await t.http.post("/created-nothing")
    assert r.status_code == 201
    assert r.content == b""


async def test_starlette_response_is_sent_as_is_with_the_request_id() -> None:
    """A returned Response keeps its status, headers and body, plus X-Request-ID."""
    async with TestApp(app) as t:
        r = await t.http.get("/custom", headers={"X-Request-ID": "abc"})
    assert (r.status_code, r.text, r.headers["x-custom"]) == (418, "teapot", "yes")
    assert r.headers["x-request-id"] == "abc"


async def test_request_id_set_by_the_handlers_response_is_kept() -> None:
    """A Response carrying its own X-Request-ID is not given a second one."""
    async with TestApp(app) as t:
        r = await t.http.get("/own-id", headers={"X-Request-ID": "from-client"})
    assert r.headers.get_list("x-request-id") == ["from-handler"]


async def test_str_result_is_plain_text() -> None:
    """A str return value is sent as text/plain."""
    async with TestApp(app) as t:
        r = await t.http.get("/orders/new")
    assert r.headers["content-type"].startswith("text/plain")


async def test_list_result_is_json() -> None:
    """A list return value is sent as a JSON array."""
    async with TestApp(app) as t:
        r = await t.http.get("/items")
    assert r.json() == [1, 2, 3]


async def test_bytes_result_is_an_octet_stream() -> None:
    """A bytes return value is sent unchanged as application/octet-stream."""
    async with TestApp(app) as t:
        r = await t.http.get("/bytes")
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == b"\x00\x01"


async def test_optional_body_may_be_omitted() -> None:
    """A body parameter with a default gets it when the request has no body."""
    async with TestApp(app) as t:
        empty = await t.http.post("/optional-body")
        sent = await t.http.post("/optional-body", json={"id": "b", "total": 1})
    assert empty.json() == {"order": None}
    assert sent.json() == {"order": "b"}


async def test_versioned_route_is_served_under_its_version_prefix() -> None:
    """A route with version="v2" lives under /v2, beside the unversioned one."""
    async with TestApp(app) as t:
        v2 = await t.http.get("/v2/orders/abc")
        v1 = await t.http.get("/orders/5")
    assert v2.json() == {"v2": "abc"}
    assert v1.json()["id"] == 5


async def test_get_route_also_answers_head() -> None:
    """A GET route answers HEAD with the same status and headers."""
    async with TestApp(app) as t:
        r = await t.http.head("/items")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"

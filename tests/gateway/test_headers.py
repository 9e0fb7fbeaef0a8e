"""Header parameters: ``Annotated[T, Header()]`` reads, converts and validates a request header."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Annotated, Any

import httpx
import pytest
from pydantic import Field

from framework import App, DeclarationError, Header
from framework.gateway import Gateway
from tests.gateway.helpers import client

# --8<-- [start:headers]
app = App("headers")


@app.route("/events")
async def events(
    x_request_source: Annotated[str, Header()],
    trace: Annotated[str | None, Header(alias="X-Trace")] = None,
    x_page_size: Annotated[int, Header(), Field(ge=1, le=100)] = 20,
    x_tag: Annotated[list[str], Header()] = [],  # noqa: B006 - copied per request
) -> dict[str, Any]:
    """Events: the source is required, the rest have defaults."""
    return {"source": x_request_source, "trace": trace, "size": x_page_size, "tags": x_tag}


# --8<-- [end:headers]


async def test_header_is_read_by_its_hyphenated_name_case_insensitively() -> None:
    """``x_request_source`` reads ``X-Request-Source`` whatever the case; an alias names its own."""
    async with client(app) as c:
        answer = await c.get("/events", headers={"x-REQUEST-source": "web", "x-trace": "t-1"})
    assert answer.json() == {"source": "web", "trace": "t-1", "size": 20, "tags": []}


async def test_missing_required_header_is_a_field_error_at_the_header_name() -> None:
    """A required header that is absent is a 422 located at ``["header", "x-request-source"]``."""
    async with client(app) as c:
        answer = await c.get("/events")
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {"loc": ["header", "x-request-source"], "msg": "Field required", "type": "missing"}
    ]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("ten", "int_parsing"),
        ("0", "greater_than_equal"),
        ("", "int_parsing"),
        ("1e3", "int_parsing"),
    ],
)
async def test_header_value_is_converted_and_validated(value: str, error: str) -> None:
    """A header is typed by its annotation, constraints included; a bad value is a 422."""
    async with client(app) as c:
        answer = await c.get("/events", headers={"X-Request-Source": "web", "X-Page-Size": value})
    assert answer.status_code == 422
    assert [(e["loc"], e["type"]) for e in answer.json()["detail"]] == [
        (["header", "x-page-size"], error)
    ]


async def test_converted_header_reaches_the_handler_typed() -> None:
    """``X-Page-Size: 50`` arrives as the int 50."""
    async with client(app) as c:
        answer = await c.get("/events", headers={"X-Request-Source": "web", "X-Page-Size": "50"})
    assert answer.json()["size"] == 50


async def test_repeated_header_gives_a_list_every_value_and_a_scalar_them_joined() -> None:
    """A ``list`` parameter gets each value of a repeated header; a scalar gets them joined."""
    headers = [
        ("X-Request-Source", "web"),
        ("X-Request-Source", "cli"),
        ("X-Tag", "a"),
        ("X-Tag", "b"),
    ]
    async with client(app) as c:
        answer = await c.get("/events", headers=headers)
    assert answer.json()["source"] == "web, cli"
    assert answer.json()["tags"] == ["a", "b"]


async def test_non_ascii_header_bytes_do_not_fail_the_request() -> None:
    """A header with bytes outside ASCII is read as latin-1, never a 500."""
    gateway = Gateway(app.registry, app.events)
    sent: list[MutableMapping[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/events",
        "raw_path": b"/events",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"X-Request-Source", b"caf\xe9\xff")],  # not lowercased, not UTF-8
        "client": ("192.0.2.1", 1234),
        "server": ("t", 80),
        "scheme": "http",
        "http_version": "1.1",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await gateway(scope, receive, send)
    assert sent[0]["status"] == 200
    assert b'"source":"caf\xc3\xa9\xc3\xbf"' in sent[1]["body"]


async def test_header_parameters_are_in_the_openapi_document() -> None:
    """Each header parameter is an ``in: header`` parameter named by its header."""
    async with client(app) as c:
        operation = (await c.get("/openapi.json")).json()["paths"]["/events"]["get"]
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    assert set(headers) == {"x-request-source", "x-trace", "x-page-size", "x-tag"}
    assert headers["x-request-source"]["required"] is True
    assert headers["x-page-size"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert headers["x-trace"]["required"] is False


async def test_header_and_query_errors_are_reported_together() -> None:
    """A bad query parameter and a missing header are both in one 422."""
    other = App("both")

    @other.route("/x")
    async def x(limit: int, x_key: Annotated[str, Header()]) -> str:
        return "ok"

    async with client(other) as c:
        answer = await c.get("/x", params={"limit": "many"})
    assert sorted(e["loc"][0] for e in answer.json()["detail"]) == ["header", "query"]


def test_header_marker_on_a_queue_handler_is_refused_at_declaration() -> None:
    """Only routes have headers: a queue handler asking for one fails at import."""
    other = App("queue")
    with pytest.raises(DeclarationError, match="only routes have"):

        @other.on_queue("q")
        async def handle(body: str, x_key: Annotated[str, Header()]) -> None: ...


@pytest.mark.parametrize("alias", ["X Trace", "X-Trace:", "", "X-Träce"])
def test_malformed_alias_is_refused_at_declaration(alias: str) -> None:
    """An alias that is not an RFC 9110 token fails when the route is declared."""
    other = App("alias")

    async def x(trace: str) -> str:
        return trace

    x.__annotations__ = {"trace": Annotated[str, Header(alias=alias)], "return": str}
    with pytest.raises(DeclarationError, match="not a header name"):
        other.route("/x")(x)


async def test_header_marker_class_without_call_works_too() -> None:
    """``Annotated[str, Header]`` (the class, not an instance) reads the header as well."""
    other = App("bare")

    @other.route("/x")
    async def x(x_key: Annotated[str, Header]) -> str:
        return x_key

    transport = httpx.ASGITransport(app=Gateway(other.registry, other.events))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        answer = await c.get("/x", headers={"X-Key": "k"})
    assert answer.text == "k"

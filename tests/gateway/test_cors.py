"""CORS: preflights answered before routing, Access-Control-* headers on answers, Vary: Origin."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.responses import PlainTextResponse

from framework import App, DeclarationError
from framework.gateway import CORS, APIKeyAuth, Throttle
from tests.gateway.helpers import client

# --8<-- [start:cors]
app = App(
    "cors",
    cors=CORS(
        allow_origins=["https://shop.example.com", "http://localhost:5173"],
        allow_methods=["GET", "POST"],
        allow_headers=["X-API-Key"],
        expose_headers=["X-Request-ID"],
        max_age=600,
    ),
)


@app.route(
    "/orders",
    methods=["GET", "POST"],
    auth=APIKeyAuth({"key-1": "shop"}),
    throttle=Throttle(rate=1, burst=1),
)
async def orders() -> dict[str, Any]:
    """Orders, for the shop's web page and key holders only."""
    return {"orders": []}


# --8<-- [end:cors]

SHOP = "https://shop.example.com"


def preflight(origin: str, method: str = "POST", headers: str | None = None) -> dict[str, str]:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        asked["Access-Control-Request-Headers"] = headers
    return asked


async def test_allowed_preflight_is_204_with_the_permissions() -> None:
    """A preflight from an allowed origin gets 204 and every Access-Control-* header."""
    async with client(app) as c:
        answer = await c.options(
            "/orders", headers=preflight(SHOP, headers="X-API-Key, Content-Type")
        )
    assert answer.status_code == 204
    assert answer.content == b""
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert answer.headers["access-control-allow-methods"] == "GET, POST"
    assert "x-api-key" in answer.headers["access-control-allow-headers"]
    assert answer.headers["access-control-max-age"] == "600"
    assert answer.headers["vary"].startswith("Origin")
    assert "access-control-allow-credentials" not in answer.headers


async def test_preflight_skips_the_authorizer_and_the_throttle() -> None:
    """Preflights carry no credentials: they never reach auth (401) or use a throttle's token."""
    async with client(app) as c:
        codes = [
            (await c.options("/orders", headers=preflight(SHOP))).status_code for _ in range(5)
        ]
        first = await c.get("/orders", headers={"Origin": SHOP, "X-API-Key": "key-1"})
    assert codes == [204] * 5
    assert first.status_code == 200


@pytest.mark.parametrize(
    ("headers", "failure"),
    [
        (preflight("https://evil.example.com"), "origin"),
        (preflight("https://shop.example.com.evil.example"), "origin"),
        (preflight("https://shop.example.com/"), "origin"),
        (preflight("null"), "origin"),
        (preflight(SHOP, method="DELETE"), "method"),
        (preflight(SHOP, headers="X-API-Key, X-Admin"), "headers"),
    ],
)
async def test_refused_preflight_is_400_without_cors_headers(
    headers: dict[str, str], failure: str
) -> None:
    """A preflight for a disallowed origin, method or header is 400 naming it and grants nothing."""
    async with client(app) as c:
        answer = await c.options("/orders", headers=headers)
    assert answer.status_code == 400
    assert answer.json() == {"detail": f"Disallowed CORS {failure}"}
    assert not [h for h in answer.headers if h.startswith("access-control-")]


async def test_allowed_origin_gets_its_origin_back_on_every_answer() -> None:
    """Answers to an allowed origin, errors included, carry its origin and Vary: Origin."""
    async with client(app) as c:
        ok = await c.get("/orders", headers={"Origin": SHOP, "X-API-Key": "key-1"})
        unauthorized = await c.get("/orders", headers={"Origin": SHOP})
        missing = await c.get("/nowhere", headers={"Origin": SHOP})
    for answer in (ok, unauthorized, missing):
        assert answer.headers["access-control-allow-origin"] == SHOP
        assert answer.headers["access-control-expose-headers"] == "X-Request-ID"
        assert answer.headers["vary"] == "Origin"
    assert (ok.status_code, unauthorized.status_code, missing.status_code) == (200, 401, 404)


async def test_disallowed_or_absent_origin_gets_no_cors_headers_but_vary() -> None:
    """Another origin, or none, gets the answer without Access-Control-* but with Vary: Origin."""
    async with client(app) as c:
        other = await c.get("/orders", headers={"Origin": "https://evil.example.com"})
        none = await c.get("/orders")
    for answer in (other, none):
        assert not [h for h in answer.headers if h.startswith("access-control-")]
        assert answer.headers["vary"] == "Origin"


async def test_options_without_request_method_is_routed_normally() -> None:
    """An OPTIONS request that is not a preflight goes to routing (405 here)."""
    async with client(app) as c:
        answer = await c.options("/orders", headers={"Origin": SHOP})
    assert answer.status_code == 405
    assert answer.headers["access-control-allow-origin"] == SHOP


async def test_any_origin_without_credentials_is_a_star_without_vary() -> None:
    """``allow_origins=["*"]`` answers ``*``; the answer does not vary with the origin."""
    open_app = App("open", cors=CORS(allow_origins=["*"], allow_headers=["*"]))

    @open_app.route("/x")
    async def x() -> str:
        return "x"

    async with client(open_app) as c:
        simple = await c.get("/x", headers={"Origin": "https://any.example"})
        pre = await c.options("/x", headers=preflight("https://any.example", "GET", "X-Custom"))
    assert simple.headers["access-control-allow-origin"] == "*"
    assert "vary" not in simple.headers
    assert pre.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-allow-headers"] == "X-Custom"


async def test_any_origin_with_credentials_echoes_the_origin() -> None:
    """With credentials, ``*`` is never sent: the origin is echoed, with Vary: Origin."""
    creds = App("creds", cors=CORS(allow_origins=["*"], allow_credentials=True))

    @creds.route("/x")
    async def x() -> str:
        return "x"

    async with client(creds) as c:
        answer = await c.get("/x", headers={"Origin": "https://any.example"})
        garbage = await c.get("/x", headers={"Origin": "https://a b/<script>"})
    assert answer.headers["access-control-allow-origin"] == "https://any.example"
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert answer.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in garbage.headers


async def test_handler_vary_header_is_merged_with_origin() -> None:
    """A handler's own ``Vary`` keeps its value and gains ``Origin``."""
    merged = App("vary", cors=CORS(allow_origins=[SHOP]))

    @merged.route("/x")
    async def x() -> PlainTextResponse:
        return PlainTextResponse("x", headers={"Vary": "Accept-Encoding"})

    async with client(merged) as c:
        answer = await c.get("/x", headers={"Origin": SHOP})
    assert answer.headers["vary"] == "Accept-Encoding, Origin"


async def test_without_cors_no_preflight_is_answered() -> None:
    """An app without ``cors=`` routes preflights like any OPTIONS request."""
    plain = App("plain")

    @plain.route("/x")
    async def x() -> str:
        return "x"

    async with client(plain) as c:
        answer = await c.options("/x", headers=preflight(SHOP, "GET"))
    assert answer.status_code == 405
    assert "vary" not in answer.headers


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"allow_origins": "https://a.example"}, "list of strings"),
        ({"allow_origins": ["https://a.example/"]}, "no path or trailing slash"),
        ({"allow_origins": ["a.example"]}, "is not an origin"),
        ({"allow_methods": ["FETCH"]}, "unknown method"),
        ({"allow_headers": ["X Bad"]}, "is not valid"),
        ({"max_age": -1}, "whole seconds"),
        ({"allow_credentials": "yes"}, "True or False"),
    ],
)
def test_bad_cors_settings_fail_at_construction(options: dict[str, Any], message: str) -> None:
    """A CORS setting that could never work is refused when it is made, saying why."""
    with pytest.raises(DeclarationError, match=message):
        CORS(**options)


def test_cors_must_be_a_cors_value() -> None:
    """``App(cors=...)`` takes a ``CORS``, checked when the app is made."""
    with pytest.raises(DeclarationError, match="must be CORS"):
        App("bad", cors={"allow_origins": ["*"]})  # type: ignore[arg-type]


async def test_preflight_through_a_real_client_transport() -> None:
    """The preflight works over httpx's ASGI transport with a base URL on another host."""
    transport = httpx.ASGITransport(app=app.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="https://api.example.com") as c:
        answer = await c.options("/orders", headers=preflight("http://localhost:5173", "GET"))
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "http://localhost:5173"

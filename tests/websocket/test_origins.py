"""Origin checks on WebSocket handshakes (cross-site WebSocket hijacking), through ``TestApp``.

``TestApp``'s client sends ``Host: testserver``, so the server's own origin is
``http://testserver``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from framework import App, Connection, DeclarationError
from framework.gateway import CORS, APIKeyAuth, CustomAuth
from framework.gateway.origins import any_origin_warnings
from framework.principal import Principal
from framework.testing import HandshakeRefusedError, TestApp

EVIL = "https://evil.example"


def guarded_app(**api: Any) -> tuple[App, list[str]]:
    """An app whose API at ``/ws`` records each authorizer and ``$connect`` call."""
    app = App("ws", cors=CORS(allow_origins=["https://shop.example"]))
    calls: list[str] = []
    if api:
        app.websocket_api("/ws", **api)

    async def check(token: str) -> Principal | None:
        calls.append("authorizer")
        return Principal("ann") if token == "t-1" else None

    @app.websocket("/ws", "$connect", auth=CustomAuth(check, ttl=0))
    async def connect(conn: Connection) -> None:
        calls.append("connect")

    @app.websocket("/ws", "whoami")
    async def whoami(conn: Connection) -> dict[str, str]:
        return {"principal": conn.principal.id if conn.principal else ""}

    return app, calls


BEARER = {"Authorization": "Bearer t-1"}


async def test_a_page_of_another_origin_is_refused_before_the_authorizer_and_connect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A foreign ``Origin`` is 403 naming the fix; no authorizer or ``$connect`` runs."""
    app, calls = guarded_app()
    with caplog.at_level(logging.INFO, logger="framework.websocket"):
        async with TestApp(app) as t:
            with pytest.raises(HandshakeRefusedError) as refused:
                async with t.websocket("/ws", headers={**BEARER, "Origin": EVIL}):
                    pass
            metrics = (await t.http.get("/metrics")).text
    assert refused.value.status == 403
    assert EVIL in refused.value.detail
    assert "allowed_origins" in refused.value.detail
    assert calls == []
    assert (
        'framework_websocket_refused_total{api="/ws",reason="origin",status="403"} 1.0' in metrics
    )
    [record] = [r for r in caplog.records if r.getMessage() == "websocket.refused"]
    assert record.levelno == logging.WARNING
    assert getattr(record, "fields", {}) == {
        "api": "/ws",
        "status": 403,
        "reason": "origin",
        "origin": EVIL,
    }


async def test_the_servers_own_origin_and_clients_without_origin_connect() -> None:
    """A page of the server's own host and port, and a non-browser client, both connect."""
    app, calls = guarded_app()
    async with TestApp(app) as t:
        for headers in (
            BEARER,
            {**BEARER, "Origin": "http://testserver"},
            {**BEARER, "Origin": "https://TestServer"},  # the scheme aside: a TLS proxy's page
        ):
            async with t.websocket("/ws", headers=headers) as ws:
                await ws.send_json({"action": "whoami"})
                assert await ws.receive_json() == {"principal": "ann"}
        with pytest.raises(HandshakeRefusedError) as refused:
            async with t.websocket("/ws", headers={**BEARER, "Origin": "http://testserver:8080"}):
                pass
    assert refused.value.status == 403  # another port is another origin
    assert calls == ["authorizer", "connect"] * 3


async def test_the_apps_cors_origins_are_allowed_but_not_its_wildcard() -> None:
    """By default the CORS origins may connect; a CORS ``"*"`` does not open WebSockets."""
    app, _ = guarded_app()
    async with (
        TestApp(app) as t,
        t.websocket("/ws", headers={**BEARER, "Origin": "https://shop.example"}),
    ):
        pass
    wildcard = App("ws", cors=CORS(allow_origins=["*"]))

    @wildcard.websocket("/ws", "$default")
    async def default(message: str) -> str:
        return message

    async with TestApp(wildcard) as t:
        with pytest.raises(HandshakeRefusedError) as refused:
            async with t.websocket("/ws", headers={"Origin": EVIL}):
                pass
    assert refused.value.status == 403


async def test_allowed_origins_replace_the_cors_ones_and_a_star_allows_any() -> None:
    """``allowed_origins=[...]`` is the API's list; ``["*"]`` admits every page."""
    app, _ = guarded_app(allowed_origins=["https://chat.example", "null"])
    async with TestApp(app) as t:
        for origin in ("https://chat.example", "null"):
            async with t.websocket("/ws", headers={**BEARER, "Origin": origin}):
                pass
        with pytest.raises(HandshakeRefusedError) as refused:
            async with t.websocket("/ws", headers={**BEARER, "Origin": "https://shop.example"}):
                pass
        assert refused.value.status == 403
    app, calls = guarded_app(allowed_origins=["*"])
    async with TestApp(app) as t, t.websocket("/ws", headers={**BEARER, "Origin": EVIL}):
        pass
    assert calls == ["authorizer", "connect"]


def test_allowed_origins_that_are_not_origins_are_refused_at_declaration() -> None:
    """A single string, a path or a missing scheme fails at ``websocket_api``."""
    app = App("ws")
    for bad, message in (
        ("https://a.example", "must be a list of strings"),
        (["https://a.example/"], "is not an origin"),
        (["a.example"], "is not an origin"),
    ):
        with pytest.raises(DeclarationError, match=message) as raised:
            app.websocket_api("/ws", allowed_origins=bad)  # type: ignore[arg-type]
        assert "websocket_api '/ws'" in str(raised.value)


def test_any_origin_warns_without_an_authorizer_or_with_a_cookie_one() -> None:
    """``"*"`` is warned about with no authorizer or a cookie one, not with header credentials."""

    async def by_cookie(value: str) -> str | None:
        return "ann" if value else None

    app = App("ws")
    for path, auth in (
        ("/open", None),
        ("/cookie", CustomAuth(by_cookie, header="Cookie")),
        ("/keyed", APIKeyAuth({"k-1": "ann"})),
        ("/listed", None),
    ):
        origins = ["https://a.example"] if path == "/listed" else ["*"]
        app.websocket_api(path, allowed_origins=origins)

        @app.websocket(path, "$connect", auth=auth)
        async def connect(conn: Connection) -> None:
            pass

    warnings = any_origin_warnings(app.registry)
    assert sorted(warnings) == ["/cookie", "/open"]
    assert "no authorizer" in warnings["/open"]
    assert "reads cookies" in warnings["/cookie"]

"""WebSocket APIs through ``TestApp.websocket``: routes, bodies, $connect, $disconnect, auth."""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import pytest
from pydantic import BaseModel

from framework import App, Connection, DeclarationError, Refuse
from framework.gateway import APIKeyAuth, JWTAuth, JWTKey
from framework.testing import HandshakeRefusedError, TestApp

SECRET = "a-test-secret-of-at-least-32-bytes!!"


class Say(BaseModel):
    """A chat message."""

    action: str
    text: str
    loud: bool = False


def chat_app(**api: Any) -> tuple[App, list[tuple[str, str]]]:
    """An app with $connect, a ``say`` route, $default and $disconnect, recording each call."""
    app = App("ws")
    seen: list[tuple[str, str]] = []
    if api:
        app.websocket_api("/chat", **api)

    @app.websocket("/chat", "$connect")
    async def connect(conn: Connection) -> None:
        if conn.query.get("name") == "mallory":
            raise Refuse(451, "not you")
        seen.append(("connect", conn.id))

    @app.websocket("/chat", "say")
    async def say(message: Say, conn: Connection) -> dict[str, Any]:
        seen.append(("say", message.text))
        return {"said": message.text.upper() if message.loud else message.text}

    @app.websocket("/chat", "$default")
    async def default(message: str, conn: Connection) -> dict[str, str]:
        seen.append(("default", message))
        return {"default": message}

    @app.websocket("/chat", "$disconnect")
    async def disconnect(conn: Connection) -> None:
        seen.append(("disconnect", conn.id))

    return app, seen


async def test_messages_go_to_the_route_their_action_names(ws_backend: str) -> None:
    """A JSON message's ``action`` picks its route; the handler's return value comes back."""
    app, seen = chat_app()
    async with TestApp(app, ws_backend) as t, t.websocket("/chat") as ws:
        await ws.send_json({"action": "say", "text": "hi", "loud": True})
        assert await ws.receive_json() == {"said": "HI"}
    assert [s[0] for s in seen] == ["connect", "say", "disconnect"]


async def test_non_json_and_unknown_actions_go_to_default(ws_backend: str) -> None:
    """Text that is not JSON, and JSON naming no declared route, reach ``$default`` as sent."""
    app, _ = chat_app()
    async with TestApp(app, ws_backend) as t, t.websocket("/chat") as ws:
        await ws.send_text("plain words")
        assert await ws.receive_json() == {"default": "plain words"}
        await ws.send_json({"action": "dance"})
        assert await ws.receive_json() == {"default": '{"action": "dance"}'}


async def test_invalid_body_answers_field_errors_and_keeps_the_connection() -> None:
    """A message failing its model gets the field errors; the next message is still handled."""
    app, _ = chat_app()
    async with TestApp(app) as t, t.websocket("/chat") as ws:
        await ws.send_json({"action": "say", "loud": "very"})
        answer = await ws.receive_json()
        assert answer["error"] == "validation"
        assert answer["route"] == "say"
        assert {tuple(e["loc"]) for e in answer["errors"]} == {("text",), ("loud",)}
        await ws.send_json({"action": "say", "text": "still here"})
        assert await ws.receive_json() == {"said": "still here"}


async def test_without_default_an_unroutable_message_gets_an_error() -> None:
    """With no ``$default``, an unknown route is answered with an error and the client stays."""
    app = App("ws")

    @app.websocket("/echo", "echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    async with TestApp(app) as t, t.websocket("/echo") as ws:
        await ws.send_text("not json")
        answer = await ws.receive_json()
        assert answer["error"] == "unknown_route"
        assert "echo" in answer["detail"]
        await ws.send_json({"action": "echo", "n": 1})
        assert await ws.receive_json() == {"action": "echo", "n": 1}


async def test_route_selection_names_another_field() -> None:
    """``websocket_api(route_selection="type")`` routes by ``type``; a sync handler works too."""
    app = App("ws")
    app.websocket_api("/rpc", route_selection="type")

    @app.websocket("/rpc", "ping")
    def ping(conn: Connection) -> str:
        return "pong"

    async with TestApp(app) as t, t.websocket("/rpc") as ws:
        await ws.send_json({"type": "ping"})
        assert await ws.receive() == "pong"


async def test_connect_handler_refuses_with_its_status() -> None:
    """``raise Refuse(451)`` in ``$connect`` refuses the handshake with 451; no $disconnect."""
    app, seen = chat_app()
    async with TestApp(app) as t:
        with pytest.raises(HandshakeRefusedError) as refused:
            async with t.websocket("/chat", query={"name": "mallory"}):
                pass
    assert refused.value.status == 451
    assert refused.value.detail == "not you"
    assert seen == []


async def test_unknown_path_is_refused_with_404() -> None:
    """A handshake at a path with no WebSocket API gets 404."""
    app, _ = chat_app()
    async with TestApp(app) as t:
        with pytest.raises(HandshakeRefusedError) as refused:
            async with t.websocket("/nowhere"):
                pass
    assert refused.value.status == 404


async def test_disconnect_runs_once_when_the_client_goes(ws_backend: str) -> None:
    """Each connection's ``$disconnect`` runs exactly once, after the client leaves."""
    app, seen = chat_app()
    async with TestApp(app, ws_backend) as t:
        for _ in range(3):
            async with t.websocket("/chat") as ws:
                await ws.send_json({"action": "say", "text": "x"})
                await ws.receive_json()
    connects = [s[1] for s in seen if s[0] == "connect"]
    disconnects = [s[1] for s in seen if s[0] == "disconnect"]
    assert len(set(connects)) == 3
    assert sorted(disconnects) == sorted(connects)


def api_key_app() -> App:
    """An app whose WebSocket API needs an API key at $connect."""
    app = App("ws")

    @app.websocket("/feed", "$connect", auth=APIKeyAuth({"k-123": "ann"}))
    async def connect(conn: Connection) -> None:
        assert conn.principal is not None

    @app.websocket("/feed", "whoami")
    async def whoami(conn: Connection) -> dict[str, Any]:
        assert conn.principal is not None
        return {"principal": conn.principal.id, "query": dict(conn.query)}

    return app


async def test_api_key_in_a_header_or_the_query_string() -> None:
    """An API key opens the connection from its header or a query parameter of its name."""
    async with TestApp(api_key_app()) as t:
        async with t.websocket("/feed", headers={"X-API-Key": "k-123"}) as ws:
            await ws.send_json({"action": "whoami"})
            assert await ws.receive_json() == {"principal": "ann", "query": {}}
        async with t.websocket("/feed", query={"x-api-key": "k-123", "room": "a"}) as ws:
            await ws.send_json({"action": "whoami"})
            # The credential is not among the query parameters handlers see.
            assert await ws.receive_json() == {"principal": "ann", "query": {"room": "a"}}


async def test_missing_or_wrong_api_key_is_refused_at_the_handshake() -> None:
    """No key is 401, a wrong key 403: the client never connects."""
    async with TestApp(api_key_app()) as t:
        query: dict[str, str]
        for query, status in (({}, 401), ({"x-api-key": "nope"}, 403)):
            with pytest.raises(HandshakeRefusedError) as refused:
                async with t.websocket("/feed", query=query):
                    pass
            assert refused.value.status == status


async def test_jwt_as_bearer_header_or_access_token_query() -> None:
    """A JWT opens the connection as a bearer header or ``?access_token=`` (for browsers)."""
    app = App("ws")

    @app.websocket("/me", "$connect", auth=JWTAuth(JWTKey(SECRET, "HS256")))
    async def connect(conn: Connection) -> None:
        pass

    @app.websocket("/me", "$default")
    async def me(conn: Connection) -> str:
        assert conn.principal is not None
        return conn.principal.id

    token = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    async with TestApp(app) as t:
        async with t.websocket("/me", headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send_text("?")
            assert await ws.receive() == "bob"
        async with t.websocket("/me", query={"access_token": token}) as ws:
            await ws.send_text("?")
            assert await ws.receive() == "bob"
        with pytest.raises(HandshakeRefusedError) as refused:
            async with t.websocket("/me", query={"access_token": token + "x"}):
                pass
        assert refused.value.status == 403


def test_declaration_errors_name_the_handler() -> None:
    """Bad declarations fail at the decorator, naming the handler."""
    app = App("ws")

    async def takes_a_body(body: dict[str, Any], conn: Connection) -> None: ...

    with pytest.raises(DeclarationError, match=r"takes_a_body.*\$connect has no message"):
        app.websocket("/x", "$connect")(takes_a_body)

    async def guarded(conn: Connection) -> None: ...

    with pytest.raises(DeclarationError, match=r"guarded.*auth= applies at the handshake"):
        app.websocket("/x", "say", auth=APIKeyAuth({"k": "a"}))(guarded)
    with pytest.raises(DeclarationError, match=r"route '\$weird'"):
        app.websocket("/x", "$weird")
    app.websocket("/x", "say")(guarded)
    with pytest.raises(DeclarationError, match="already handled by"):
        app.websocket("/x", "say")(guarded)
    with pytest.raises(DeclarationError, match="max_message_size=0"):
        app.websocket_api("/y", max_message_size=0)
    app.websocket_api("/z", route_selection="type")
    with pytest.raises(DeclarationError, match="declared twice"):
        app.websocket_api("/z", route_selection="kind")


async def test_an_http_route_and_a_websocket_api_share_a_path() -> None:
    """``GET /live`` answers over HTTP while ``/live`` is also a WebSocket API."""
    app = App("ws")

    @app.route("/live")
    async def page() -> dict[str, str]:
        return {"page": "live"}

    @app.websocket("/live")
    async def default(message: str) -> str:
        return message

    async with TestApp(app) as t, t.websocket("/live") as ws:
        assert (await t.http.get("/live")).json() == {"page": "live"}
        await ws.send_text("both")
        assert await ws.receive() == "both"


async def test_an_authorizer_that_raises_refuses_with_500_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing authorizer is a 500 refusal and ``websocket.authorizer_failed``, not an error
    escaping to the server; ``$connect`` does not run."""
    app = App("ws")
    connected: list[str] = []

    async def broken(token: str) -> str:
        raise RuntimeError("the user store is down")

    @app.websocket("/ws", "$connect", auth=broken)
    async def connect(conn: Connection) -> None:
        connected.append(conn.id)

    with caplog.at_level(logging.INFO, logger="framework.websocket"):
        async with TestApp(app) as t:
            with pytest.raises(HandshakeRefusedError) as refused:
                async with t.websocket("/ws", headers={"Authorization": "Bearer t"}):
                    pass
            metrics = (await t.http.get("/metrics")).text
    assert (refused.value.status, refused.value.detail) == (500, "internal server error")
    assert connected == []
    [failed] = [r for r in caplog.records if r.getMessage() == "websocket.authorizer_failed"]
    assert getattr(failed, "fields", {}) == {"api": "/ws", "error": "RuntimeError"}
    assert 'framework_websocket_refused_total{api="/ws",reason="error",status="500"} 1.0' in (
        metrics
    )
    assert 'framework_websocket_errors_total{api="/ws",kind="authorizer"} 1.0' in metrics

"""The gateway as an ASGI application: lifespan, websockets, disconnects, mounts, streaming."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from starlette.responses import StreamingResponse
from starlette.types import Message, Scope

from framework import App
from framework.exceptions import DeclarationError
from framework.gateway.errors import ResponseAbortedError

app = App("protocol")


@app.route("/items/{item_id:int}")
async def get_item(item_id: int) -> dict[str, Any]:
    return {"id": item_id, "type": type(item_id).__name__}


@app.route("/echo", methods=["POST"])
async def echo(data: dict[str, Any]) -> dict[str, Any]:
    return data


@app.route("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        raise RuntimeError("the stream broke")

    return StreamingResponse(chunks())


def http_scope(method: str, path: str, **extra: Any) -> Scope:
    scope: Scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"x-request-id", b"proto-1")],
    }
    scope.update(extra)
    return scope


class Recorder:
    """An ASGI send callable that keeps what it is sent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def then_wait() -> Callable[[], Awaitable[Message]]:
    """Return a receive callable: an empty body, then nothing (the client stays connected)."""
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if calls > 1:
            await anyio.sleep_forever()
        return await no_body()

    return receive


async def test_gateway_completes_the_lifespan_protocol() -> None:
    """The gateway acknowledges ASGI lifespan startup and shutdown."""
    incoming: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Message:
        return incoming.pop(0)

    sent = Recorder()
    await app.asgi({"type": "lifespan"}, receive, sent)
    assert [m["type"] for m in sent.messages] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_websocket_at_a_path_without_an_api_is_refused() -> None:
    """A handshake where no WebSocket API is declared is refused at once (the server sends 403
    when it cannot send the denial response itself)."""

    async def connect() -> Message:
        return {"type": "websocket.connect"}

    sent = Recorder()
    await app.asgi({"type": "websocket", "path": "/ws", "headers": []}, connect, sent)
    assert sent.messages == [{"type": "websocket.close", "code": 1008}]


async def test_client_gone_before_its_body_gets_no_response() -> None:
    """A client that disconnects while sending its body is not answered."""

    async def disconnect() -> Message:
        return {"type": "http.disconnect"}

    sent = Recorder()
    await app.asgi(http_scope("POST", "/echo"), disconnect, sent)
    assert sent.messages == []


async def test_routes_match_below_the_root_path() -> None:
    """Mounted under a root_path, the gateway routes on the path below it."""
    sent = Recorder()
    scope = http_scope("GET", "/api/items/3", root_path="/api")
    await app.asgi(scope, no_body, sent)
    assert sent.status == 200
    assert sent.body == b'{"id":3,"type":"int"}'


async def test_starlette_path_convertors_apply() -> None:
    """An {item_id:int} template only matches digits and passes an int."""
    digits, letters = Recorder(), Recorder()
    await app.asgi(http_scope("GET", "/items/12"), no_body, digits)
    await app.asgi(http_scope("GET", "/items/ab"), no_body, letters)
    assert digits.body == b'{"id":12,"type":"int"}'
    assert letters.status == 404


async def test_stream_failing_after_it_started_is_cut_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A streamed response that fails midway is aborted (not answered twice) and logged."""
    sent = Recorder()
    with (
        caplog.at_level(logging.ERROR, logger="framework.gateway"),
        pytest.raises(ResponseAbortedError),
    ):
        await app.asgi(http_scope("GET", "/stream"), then_wait(), sent)
    assert sent.status == 200
    assert [m["type"] for m in sent.messages].count("http.response.start") == 1
    [record] = [r for r in caplog.records if r.getMessage() == "http.error"]
    assert record.fields["request_id"] == "proto-1"  # type: ignore[attr-defined]
    assert record.fields["error"] == "RuntimeError"  # type: ignore[attr-defined]


def test_unknown_path_convertor_is_refused_at_build() -> None:
    """A template naming a convertor starlette lacks fails when the gateway is built."""
    bad = App("bad")

    @bad.route("/items/{item_id:nonsense}")
    async def get(item_id: str) -> None: ...

    with pytest.raises(DeclarationError, match="nonsense"):
        _ = bad.asgi

"""`framework run`'s HTTP/1.1 protocols in process: one write per answer, one timer a connection.

Each test runs against both: the h11 one (``http11.py``) and the own parser (``httpserver.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from framework.cli import httpserver
from framework.cli.http11 import ConnectionClock
from framework.cli.http11 import protocol_class as h11_protocol_class
from framework.cli.wsprotocol import WebSocketProtocol

GET = b"GET /known HTTP/1.1\r\nHost: t\r\n\r\n"


class FakeTransport(asyncio.Transport):
    """Records what the protocol writes, whether it closed the connection, and its protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.protocol: asyncio.BaseProtocol | None = None

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers /known with a content-length, /streamed without, /fails with a failure."""
    path = scope["path"]
    if path == "/known":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/streamed":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"late"})
    elif path == "/fails":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        raise RuntimeError("the handler failed after starting its answer")


Make = Callable[[float], type[ConnectionClock]]


@pytest.fixture(params=[h11_protocol_class, httpserver.protocol_class], ids=["h11", "own"])
def make(request: pytest.FixtureRequest) -> Make:
    """The protocol class factory under test."""
    factory: Make = request.param
    return factory


def connect(
    make: Make, read_timeout: float = 10.0, keep_alive: float = 5.0, asgi: Any = None
) -> tuple[Any, FakeTransport]:
    """A protocol of ``make``'s class serving ``asgi`` (``app`` above) on a fake transport."""
    config = uvicorn.Config(
        asgi or app,
        http=make(read_timeout),
        ws=WebSocketProtocol,
        timeout_keep_alive=keep_alive,
        log_config=None,
        lifespan="off",
        access_log=False,  # as `framework run` configures it
    )
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    assert isinstance(protocol, ConnectionClock)
    transport = FakeTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


async def answered(transport: FakeTransport, count: int) -> None:
    """Wait until ``count`` responses have been written (at most a second)."""
    for _ in range(1000):
        if b"".join(transport.writes).count(b"HTTP/1.1 ") >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"not {count} responses: {transport.writes}")


async def test_a_known_length_response_is_one_write_of_head_and_body(make: Make) -> None:
    """Head and body of a response with a content-length leave in a single transport write."""
    protocol, transport = connect(make)
    protocol.data_received(GET)
    await answered(transport, 1)
    await asyncio.sleep(0.01)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 ")
    assert transport.writes[0].endswith(b"\r\n\r\nok")
    protocol.connection_lost(None)


async def test_a_streamed_response_sends_its_head_before_its_body(make: Make) -> None:
    """A response without a content-length gets its head out before the slow first chunk."""
    protocol, transport = connect(make)
    protocol.data_received(b"GET /streamed HTTP/1.1\r\nHost: t\r\n\r\n")
    await answered(transport, 1)
    assert b"late" not in b"".join(transport.writes)  # the head went out alone
    await asyncio.sleep(0.1)
    assert b"late" in b"".join(transport.writes)
    protocol.connection_lost(None)


async def test_a_failure_after_a_held_head_answers_500(make: Make) -> None:
    """A handler failing between a held head and its body answers 500, not a cut-off 200."""
    protocol, transport = connect(make)
    protocol.data_received(b"GET /fails HTTP/1.1\r\nHost: t\r\n\r\n")
    await answered(transport, 1)
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 500 ")
    protocol.connection_lost(None)


async def test_requests_on_a_kept_alive_connection_do_not_re_arm_the_timer(make: Make) -> None:
    """Fifty sequential requests on one connection all run under the timer armed at connect."""
    protocol, transport = connect(make)
    timer = protocol._timer
    for n in range(1, 51):
        protocol.data_received(GET)
        await answered(transport, n)
    assert protocol._timer is timer
    assert not transport.closed
    protocol.connection_lost(None)


async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
    make: Make,
) -> None:
    """After its answer, a connection that sends nothing more closes at the keep-alive timeout."""
    protocol, transport = connect(make, read_timeout=1.0, keep_alive=0.1)
    protocol.data_received(GET)
    await answered(transport, 1)
    await asyncio.sleep(0.05)
    assert not transport.closed
    await asyncio.sleep(0.15)
    assert transport.closed
    assert b"408" not in b"".join(transport.writes)


async def test_a_second_request_that_stalls_gets_408_from_its_first_byte(make: Make) -> None:
    """The read timeout of a request on a kept-alive connection runs from its first byte."""
    protocol, transport = connect(make, read_timeout=0.1, keep_alive=1.0)
    protocol.data_received(GET)
    await answered(transport, 1)
    await asyncio.sleep(0.15)  # idle longer than the read timeout, shorter than keep-alive
    assert not transport.closed
    protocol.data_received(b"GET /known HTTP/1.1\r\nHost:")  # half a head, then nothing
    await asyncio.sleep(0.05)
    assert not transport.closed
    await asyncio.sleep(0.1)
    assert transport.closed
    assert b"HTTP/1.1 408 " in transport.writes[-1]


async def accept_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept a WebSocket and hold it until the client goes."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def test_a_websocket_upgrade_stops_the_http_clock() -> None:
    """Once h11 hands a connection to the WebSocket protocol, the HTTP protocol's clock is
    stopped: it neither ticks nor keeps that protocol alive while the WebSocket is open."""
    protocol, transport = connect(h11_protocol_class, asgi=accept_websocket)
    assert protocol._timer is not None
    protocol.data_received(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for _ in range(1000):
        if any(write.startswith(b"HTTP/1.1 101 ") for write in transport.writes):
            break
        await asyncio.sleep(0.001)
    else:
        raise AssertionError(f"no 101: {transport.writes}")
    assert isinstance(transport.protocol, WebSocketProtocol)
    assert protocol._timer is None
    transport.protocol.connection_lost(None)

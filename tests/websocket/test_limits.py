"""WebSocket limits and bad input: size (1009), rate, idle, connections (503), slow clients."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from framework import App, Connection, ConnectionGoneError
from framework.testing import HandshakeRefusedError, TestApp, WebSocketClosedError


def limited_app(**limits: float) -> tuple[App, list[str]]:
    """An app echoing through ``$default``, with the given limits, recording disconnects."""
    app = App("limits")
    gone: list[str] = []
    app.websocket_api("/ws", **limits)  # type: ignore[arg-type]

    @app.websocket("/ws", "$default")
    async def echo(message: bytes, conn: Connection) -> bytes:
        return message

    @app.websocket("/ws", "$disconnect")
    async def disconnect(conn: Connection) -> None:
        gone.append(conn.id)

    return app, gone


async def test_a_message_over_the_size_limit_closes_with_1009() -> None:
    """A message one byte over ``max_message_size`` closes the connection with 1009."""
    app, gone = limited_app(max_message_size=1024)
    async with TestApp(app) as t:
        async with t.websocket("/ws") as ws:
            await ws.send_text("é" * 512)  # 1024 bytes of UTF-8: at the limit
            assert await ws.receive() == "é".encode() * 512
            await ws.send_text("x" * 1025)
            assert await ws.wait_closed() == 1009
            assert "1024 bytes" in ws.close_reason
        assert len(gone) == 1


async def test_binary_frames_reach_default() -> None:
    """A binary frame goes to ``$default``, whose ``bytes`` parameter gets it as sent."""
    app, _ = limited_app()
    async with TestApp(app) as t, t.websocket("/ws") as ws:
        await ws.send_bytes(b"\x00\xff")
        assert await ws.receive() == b"\x00\xff"


async def test_messages_over_the_rate_are_answered_throttled() -> None:
    """Past ``burst`` messages at once, a message is answered ``throttled`` and not handled."""
    app, _ = limited_app(rate=0.001, burst=3)
    async with TestApp(app) as t, t.websocket("/ws") as ws:
        for n in range(5):
            await ws.send_text(str(n))
        answers = [await ws.receive() for _ in range(5)]
    assert answers[:3] == [b"0", b"1", b"2"]
    for answer in answers[3:]:
        assert isinstance(answer, str)
        assert '"error":"throttled"' in answer


async def test_an_idle_connection_is_closed() -> None:
    """No message for ``idle_timeout`` seconds closes the connection (1000, idle timeout)."""
    app, gone = limited_app(idle_timeout=0.1)
    async with TestApp(app) as t, t.websocket("/ws") as ws:
        assert await ws.wait_closed(timeout=2) == 1000
        assert ws.close_reason == "idle timeout"
    assert len(gone) == 1


async def test_messages_and_a_long_handler_keep_a_connection_past_the_idle_timeout() -> None:
    """The idle clock runs only while the server waits for the client: messages more often
    than ``idle_timeout``, and a handler taking longer, keep the connection open."""
    app, gone = limited_app(idle_timeout=0.2)

    @app.websocket("/ws", "slow")
    async def slow() -> str:
        await anyio.sleep(0.5)
        return "done"

    async with TestApp(app) as t, t.websocket("/ws") as ws:
        for _ in range(6):  # 0.6 s in all, a message every 0.1 s
            await ws.send_text("ping")
            assert await ws.receive() == b"ping"
            await anyio.sleep(0.1)
        await ws.send_json({"action": "slow"})
        assert await ws.receive() == "done"
        assert gone == []
        assert await ws.wait_closed(timeout=2) == 1000
        assert ws.close_reason == "idle timeout"
    assert len(gone) == 1


async def test_connections_over_the_limit_are_refused_with_503() -> None:
    """With ``max_connections=2`` the third handshake gets 503; a freed slot is usable again."""
    app, _ = limited_app(max_connections=2)
    async with TestApp(app) as t, t.websocket("/ws"), t.websocket("/ws") as second:
        with pytest.raises(HandshakeRefusedError) as refused:
            async with t.websocket("/ws"):
                pass
        assert refused.value.status == 503
        await second.close()
        await anyio.sleep(0.01)
        async with t.websocket("/ws") as third:
            await third.send_text("ok")
            assert await third.receive() == b"ok"


async def test_a_client_that_does_not_read_is_closed_with_1008() -> None:
    """Pushes to a client that stops reading fill its bounded send queue, then close with 1008."""
    app, gone = limited_app(send_queue=4)
    ids: list[str] = []

    @app.websocket("/ws", "$connect")
    async def connect(conn: Connection) -> None:
        ids.append(conn.id)

    async with TestApp(app) as t, t.websocket("/ws", max_queue=2) as ws:
        refused: ConnectionGoneError | None = None
        for n in range(100):
            try:
                await app.connections.send(ids[0], {"n": n})
            except ConnectionGoneError as exc:
                refused = exc
                break
            await anyio.lowlevel.checkpoint()
        assert refused is not None
        assert "read too slowly" in str(refused)
        # The client reads what reached it, then the close; never all 100.
        received: list[str | bytes] = []

        async def read_all() -> None:
            while True:
                received.append(await ws.receive(timeout=2))

        with pytest.raises(WebSocketClosedError) as closed:
            await read_all()
        assert closed.value.code == 1008
        assert len(received) < 100
        with pytest.raises(ConnectionGoneError):
            await app.connections.send(ids[0], "more")
    assert gone == ids

"""``app.connections`` between two runtimes on SQLite, RabbitMQ and AWS: each has its own id."""

from __future__ import annotations

import pytest

from framework import App, Connection, ConnectionGoneError, MessageTooLargeError
from framework.backends import from_url
from framework.runtime import Runtime
from framework.runtime.connections import Connections
from framework.testing import TestApp


def relay_app() -> tuple[App, list[str]]:
    """An app whose WebSocket API records the ids it connects."""
    app = App("relay")
    ids: list[str] = []
    app.websocket_api("/ws", max_message_size=1024)

    @app.websocket("/ws", "$connect")
    async def connect(conn: Connection) -> None:
        ids.append(conn.id)

    return app, ids


async def test_send_info_and_close_reach_a_connection_held_by_another_runtime(
    relay_url: str,
) -> None:
    """From another runtime: a push arrives, info describes it, close closes it with 1000."""
    app, ids = relay_app()
    async with (
        Runtime(app.registry, from_url(relay_url), workers=False) as remote,
        TestApp(app, relay_url) as t,
        t.websocket("/ws", query={"room": "9"}) as ws,
    ):
        await remote.connections.send(ids[0], {"hello": "from afar"})
        assert await ws.receive_json() == {"hello": "from afar"}
        await remote.connections.send(ids[0], b"\x00\x01")
        assert await ws.receive() == b"\x00\x01"
        info = await remote.connections.info(ids[0])
        assert (info.id, dict(info.query)) == (ids[0], {"room": "9"})
        with pytest.raises(MessageTooLargeError):
            await remote.connections.send(ids[0], "x" * 2000)
        await remote.connections.close(ids[0])
        assert await ws.wait_closed() == 1000
        with pytest.raises(ConnectionGoneError, match="closed"):
            await remote.connections.send(ids[0], "late")


def owner(t: TestApp) -> str:
    """The process id of the test app's runtime."""
    connections = t.runtime.connections
    assert isinstance(connections, Connections)
    return connections.process


async def test_a_push_to_a_stopped_runtime_is_gone_at_once(relay_url: str) -> None:
    """Once the runtime holding a connection has stopped, its queue is gone: so is the push."""
    app, ids = relay_app()
    async with Runtime(app.registry, from_url(relay_url), workers=False) as pusher:
        async with TestApp(app, relay_url) as t, t.websocket("/ws"):
            pass
        with pytest.raises(ConnectionGoneError, match="has stopped"):
            await pusher.connections.send(ids[0], "anyone?")
        with pytest.raises(ConnectionGoneError, match="has stopped"):
            await pusher.connections.info(f"{owner(t)}.unknown")

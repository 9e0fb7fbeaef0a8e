"""``app.connections`` in one process, metrics, and graceful shutdown of WebSocket connections."""

from __future__ import annotations

import logging

import anyio
import pytest
from pydantic import BaseModel

from framework import App, Connection, ConnectionGoneError, Context, MessageTooLargeError
from framework.testing import HandshakeRefusedError, TestApp


class Job(BaseModel):
    """Work a client asks for over HTTP."""

    connection_id: str
    n: int


def push_app() -> tuple[App, list[str], list[str]]:
    """An app where an HTTP route queues work and a queue handler pushes to the client."""
    app = App("push")
    connected: list[str] = []
    disconnected: list[str] = []

    @app.websocket("/events", "$connect")
    async def connect(conn: Connection) -> None:
        connected.append(conn.id)

    @app.websocket("/events", "$disconnect")
    async def disconnect(conn: Connection) -> None:
        disconnected.append(conn.id)

    @app.route("/jobs", methods=["POST"], status_code=202)
    async def post_job(job: Job) -> dict[str, str]:
        await app.send("jobs", job)
        return {"queued": job.connection_id}

    @app.on_queue("jobs")
    async def work(job: Job) -> None:
        await app.connections.send(job.connection_id, {"result": job.n * 2})

    return app, connected, disconnected


async def test_a_queue_handler_pushes_to_the_client_that_asked(ws_backend: str) -> None:
    """Work posted over HTTP is pushed by a queue handler to that client, and only to it."""
    app, connected, _ = push_app()
    async with (
        TestApp(app, ws_backend) as t,
        t.websocket("/events") as a,
        t.websocket("/events") as b,
    ):
        response = await t.http.post("/jobs", json={"connection_id": connected[1], "n": 21})
        assert response.status_code == 202
        assert await b.receive_json() == {"result": 42}
        with pytest.raises(TimeoutError):
            await a.receive(timeout=0.2)


async def test_info_and_close_from_the_server(ws_backend: str) -> None:
    """``info`` describes a connection; ``close`` closes it (1000) and its id is then gone."""
    app, connected, disconnected = push_app()
    async with TestApp(app, ws_backend) as t:
        async with t.websocket("/events", headers={"X-Client": "test"}, query={"room": "7"}) as ws:
            info = await app.connections.info(connected[0])
            assert (info.id, info.path) == (connected[0], "/events")
            assert info.headers["x-client"] == "test"
            assert info.query == {"room": "7"}
            assert info.connected_at.tzinfo is not None
            await app.connections.close(connected[0])
            assert await ws.wait_closed() == 1000
        assert disconnected == connected
        for call in (
            app.connections.send(connected[0], "late"),
            app.connections.close(connected[0]),
            app.connections.info(connected[0]),
        ):
            with pytest.raises(ConnectionGoneError):
                await call
        with pytest.raises(ConnectionGoneError):
            await app.connections.send("nonsense", "x")


async def test_a_push_over_the_size_limit_is_refused() -> None:
    """A push bigger than the API's ``max_message_size`` raises MessageTooLargeError."""
    app, connected, _ = push_app()
    app.websocket_api("/events", max_message_size=1024)
    async with TestApp(app) as t, t.websocket("/events"):
        with pytest.raises(MessageTooLargeError, match="1024"):
            await app.connections.send(connected[0], "x" * 2000)


async def test_stopping_closes_with_1001_after_the_handler_in_flight() -> None:
    """Stopping lets a running handler finish and send its answer, then closes with 1001."""
    app = App("stop")
    started = anyio.Event()
    disconnects: list[str] = []

    @app.websocket("/slow", "work")
    async def work(conn: Connection) -> dict[str, str]:
        started.set()
        await anyio.sleep(0.2)
        return {"done": conn.id}

    @app.websocket("/slow", "$disconnect")
    async def bye(conn: Connection) -> None:
        disconnects.append(conn.id)

    async with TestApp(app, grace=5) as t, t.websocket("/slow") as ws:
        await ws.send_json({"action": "work"})
        await started.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(t.runtime.close_connections)
            answer = await ws.receive_json()
            assert await ws.wait_closed() == 1001
    assert answer["done"] == disconnects[0]
    assert len(disconnects) == 1


async def test_metrics_count_connections_messages_pushes_and_refusals() -> None:
    """``/metrics`` has open connections, messages in and out per route, pushes and refusals.

    A push is one message out under route ``$push``, and counted nowhere else."""
    app, connected, _ = push_app()

    @app.websocket("/events", "ping")
    async def ping() -> str:
        return "pong"

    async with TestApp(app) as t:
        async with t.websocket("/events") as ws:
            await ws.send_json({"action": "ping"})
            await ws.receive()
            await app.connections.send(connected[0], "hello")
            await ws.receive()
            text = (await t.http.get("/metrics")).text
            assert 'framework_websocket_connections_open{api="/events"} 1.0' in text
        text = (await t.http.get("/metrics")).text
    assert 'framework_websocket_connections_open{api="/events"} 0.0' in text
    assert 'framework_websocket_messages_in_total{api="/events",route="ping"} 1.0' in text
    assert 'framework_websocket_messages_out_total{api="/events",route="ping"} 1.0' in text
    assert 'framework_websocket_messages_out_total{api="/events",route="$push"} 1.0' in text
    assert "pushes" not in text


async def test_each_connection_logs_its_connect_and_disconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``websocket.connected`` and ``websocket.disconnected`` carry the connection's id."""
    app, connected, _ = push_app()
    with caplog.at_level(logging.INFO, logger="framework.websocket"):
        async with TestApp(app) as t, t.websocket("/events"):
            pass
    events = {r.getMessage(): getattr(r, "fields", {}) for r in caplog.records}
    assert events["websocket.connected"]["connection"] == connected[0]
    assert events["websocket.disconnected"]["connection"] == connected[0]
    assert events["websocket.disconnected"]["by"] == "client"


async def test_no_new_connection_while_stopping() -> None:
    """Once the runtime starts closing connections, a new handshake is refused with 503."""
    app, _, _ = push_app()
    async with TestApp(app) as t:
        async with t.websocket("/events") as ws:
            await t.runtime.close_connections()
            assert await ws.wait_closed() == 1001
        with pytest.raises(HandshakeRefusedError) as refused:
            async with t.websocket("/events"):
                pass
    assert refused.value.status == 503


async def test_ctx_app_connections_reach_the_client() -> None:
    """A queue handler without the module's ``app`` pushes through ``ctx.app.connections``."""
    app, connected, _ = push_app()

    @app.on_queue("greetings")
    async def greet(connection_id: str, ctx: Context) -> None:
        await ctx.app.connections.send(connection_id, "hello")

    async with TestApp(app) as t, t.websocket("/events") as ws:
        await app.send("greetings", connected[0])
        assert await ws.receive() == "hello"

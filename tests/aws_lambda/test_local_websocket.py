"""Local Lambda mode's WebSocket front door: real clients, WebSocket events, the management API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import BaseModel

from framework import App, Connection, ConnectionGoneError, Refuse
from framework.aws.emulator import LocalLambda
from framework.gateway.auth import APIKeyAuth

websockets_client = pytest.importorskip("websockets.asyncio.client")
websockets_exceptions = pytest.importorskip("websockets.exceptions")


class Count(BaseModel):
    n: int


class Job(BaseModel):
    connection_id: str
    text: str


def local_app(prefix: str, outcomes: list[Any]) -> App:
    app = App(f"lambda-{prefix}")
    queue = f"{prefix}-jobs"

    @app.websocket("/ws", "$connect", auth=APIKeyAuth({"k-1": "ann"}))
    async def connect(conn: Connection) -> None:
        if conn.query.get("room") == "closed":
            raise Refuse(409, "that room is closed")

    @app.websocket("/ws", "whoami")
    async def whoami(conn: Connection) -> dict[str, Any]:
        return {"id": conn.id, "principal": conn.principal and conn.principal.id}

    @app.websocket("/ws", "count")
    async def count(message: Count) -> int:
        return message.n + 1

    @app.websocket("/ws", "$disconnect")
    async def gone(conn: Connection) -> None:
        outcomes.append(("disconnect", conn.id))

    @app.route("/jobs", methods=["POST"], status_code=202)
    async def post_job(job: Job) -> dict[str, str]:
        await app.send(queue, job)
        return {"status": "queued"}

    @app.on_queue(queue, visibility_timeout=5)
    async def run_job(job: Job) -> None:
        try:
            await app.connections.send(job.connection_id, {"done": job.text.upper()})
            info = await app.connections.info(job.connection_id)
            outcomes.append(("info", info.id, info.headers.get("user-agent")))
            if job.text == "bye":
                await app.connections.close(job.connection_id)
        except ConnectionGoneError as exc:
            outcomes.append(("gone", str(exc)))

    return app


@contextlib.asynccontextmanager
async def serving(app: App, aws_url: str) -> AsyncIterator[str]:
    """Run the local Lambda front door under uvicorn on a free port; yield its address."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"127.0.0.1:{port}"
    local = LocalLambda(app, aws_url, public_url=f"http://{base}")
    config = uvicorn.Config(
        local.front_door,
        interface="asgi3",
        log_config=None,
        lifespan="off",
        access_log=False,
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    async with local:
        task = asyncio.create_task(server.serve([sock]))
        try:
            await wait_for(lambda: server.started)
            yield base
        finally:
            server.should_exit = True
            await task
            sock.close()


async def wait_for(check: Any, within: float = 10.0) -> None:
    """Wait until ``check()`` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.mark.aws
async def test_clients_connect_talk_and_get_pushes_through_lambda_events(
    aws_url: str, prefix: str
) -> None:
    """A real client connects past the authorizer, its messages are routed and answered, a
    queue handler's push arrives, and $disconnect runs when it leaves."""
    outcomes: list[Any] = []
    app = local_app(prefix, outcomes)
    async with serving(app, aws_url) as base:
        url = f"ws://{base}/ws?x-api-key=k-1"
        async with websockets_client.connect(url) as ws:
            await ws.send(json.dumps({"action": "whoami"}))
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert hello["principal"] == "ann"  # carried by the authorizer's context
            await ws.send(json.dumps({"action": "count", "n": 41}))
            assert await asyncio.wait_for(ws.recv(), 5) == "42"
            await ws.send(json.dumps({"action": "count", "n": "x"}))
            error = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert error["error"] == "validation"
            async with httpx.AsyncClient(base_url=f"http://{base}") as client:
                job = {"connection_id": hello["id"], "text": "hi"}
                assert (await client.post("/jobs", json=job)).status_code == 202
            pushed = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert pushed == {"done": "HI"}
            await wait_for(lambda: any(o[0] == "info" for o in outcomes))
        await wait_for(lambda: ("disconnect", hello["id"]) in outcomes)
    (info,) = [o for o in outcomes if o[0] == "info"]
    assert info[1] == hello["id"]
    assert "websockets" in info[2]  # the client's user agent, as GetConnection tells it


@pytest.mark.aws
async def test_refused_handshakes_get_the_status_and_gone_connections_raise(
    aws_url: str, prefix: str
) -> None:
    """No key is 401, a bad key 403, Refuse(409) 409; a push to a closed connection raises
    ConnectionGoneError (the management API's 410), and close() disconnects the client."""
    outcomes: list[Any] = []
    app = local_app(prefix, outcomes)
    invalid = websockets_exceptions.InvalidStatus
    async with serving(app, aws_url) as base:
        statuses = []
        for query in ("", "?x-api-key=bad", "?x-api-key=k-1&room=closed"):
            with pytest.raises(invalid) as refused:
                async with websockets_client.connect(f"ws://{base}/ws{query}"):
                    pass
            statuses.append(refused.value.response.status_code)
        assert statuses == [401, 403, 409]
        async with websockets_client.connect(f"ws://{base}/ws?x-api-key=k-1") as ws:
            await ws.send(json.dumps({"action": "whoami"}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))["id"]
        async with httpx.AsyncClient(base_url=f"http://{base}") as client:
            gone = await client.post("/jobs", json={"connection_id": first, "text": "late"})
            assert gone.status_code == 202
            await wait_for(lambda: any(o[0] == "gone" for o in outcomes))
            async with websockets_client.connect(f"ws://{base}/ws?x-api-key=k-1") as ws:
                await ws.send(json.dumps({"action": "whoami"}))
                second = json.loads(await asyncio.wait_for(ws.recv(), 5))["id"]
                await client.post("/jobs", json={"connection_id": second, "text": "bye"})
                assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"done": "BYE"}
                with pytest.raises(websockets_exceptions.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
    (gone_message,) = [o[1] for o in outcomes if o[0] == "gone"]
    assert first in gone_message


@pytest.mark.aws
async def test_oversized_bodies_are_refused_before_anything_runs(aws_url: str, prefix: str) -> None:
    """A request body over Lambda's 6 MB is 413 without an invocation; a management-API post
    over API Gateway's 128 KB is 413 PayloadTooLargeException and reaches no client."""
    outcomes: list[Any] = []
    app = local_app(prefix, outcomes)
    async with (
        serving(app, aws_url) as base,
        websockets_client.connect(f"ws://{base}/ws?x-api-key=k-1") as ws,
    ):
        await ws.send(json.dumps({"action": "whoami"}))
        connection_id = json.loads(await asyncio.wait_for(ws.recv(), 5))["id"]
        async with httpx.AsyncClient(base_url=f"http://{base}") as client:
            job = {"connection_id": connection_id, "text": "x" * (6 * 1024 * 1024)}
            big = await client.post("/jobs", json=job)
            assert big.status_code == 413
            assert big.json() == {"message": "Request Entity Too Large"}
            post = await client.post(f"/@connections/{connection_id}", content=b"y" * 131_073)
            assert post.status_code == 413
            assert post.headers["x-amzn-errortype"] == "PayloadTooLargeException"
            fits = await client.post(f"/@connections/{connection_id}", content=b"y" * 131_072)
            assert fits.status_code == 200
        assert len(await asyncio.wait_for(ws.recv(), 5)) == 131_072  # only the one that fit
    assert not any(o[0] == "info" for o in outcomes)  # the oversized job never ran

"""Pushes across real processes on SQLite and RabbitMQ: `framework run` and `websockets`.

A gateway process (``framework run``) holds the clients' connections; a ``--workers-only``
process handles the queue and pushes each result to the right client through the backend (one
SQLite file, or the broker). When the gateway process stops, its clients see 1001, each
``$disconnect`` runs once, and a later push from the worker raises ``ConnectionGoneError``;
when it is killed with ``kill -9``, so does the push.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from framework.backends.rabbitmq import RabbitMQBackend
from framework.backends.sqlite import SQLiteBackend
from framework.messages import CONTENT_TYPE, Outgoing
from tests.backends.rabbitmq.fleet import broker_url, until, until_async
from tests.websocket.processes import Processes

pytestmark = pytest.mark.timeout(90)

START = 30.0


class FileProcesses(Processes):
    """The processes on one SQLite file (deleted with the test's folder)."""

    # The killed gateway's row names its OS process, which has exited: gone at once, well
    # before its lease (5 s) ends.
    gone_within = 2.0

    async def ready(self) -> bool:
        """True once the gateway answers and both processes are in the file's ``processes``."""
        if not await self.gateway_answers():
            return False
        with sqlite3.connect(self.url.removeprefix("sqlite:///")) as db:
            return int(db.execute("SELECT COUNT(*) FROM processes").fetchone()[0]) == 2

    async def push(self, connection_id: str) -> None:
        """Queue a job for ``connection_id`` straight into the file."""
        async with SQLiteBackend.from_url(self.url) as backend:
            await backend.send(self.queue, job(connection_id))

    async def close(self) -> None:
        """Kill the processes."""
        self.kill_all()


def job(connection_id: str) -> Outgoing:
    """The job message the worker pushes a result for."""
    body = json.dumps({"connection_id": connection_id, "n": 1}).encode()
    return Outgoing(body=body, headers={CONTENT_TYPE: "application/json"})


class BrokerProcesses(Processes):
    """The processes on a broker, and the queues to delete afterwards."""

    gone_within = 15.0

    async def ready(self) -> bool:
        """True once the gateway answers and the worker consumes the job queue."""
        return await self.gateway_answers() and await self.consumers() >= 1

    async def push(self, connection_id: str) -> None:
        """Queue a job for ``connection_id`` straight on the broker."""
        async with RabbitMQBackend.from_url(self.url) as backend:
            await backend.send(self.queue, job(connection_id))

    async def consumers(self) -> int:
        """How many consumers the job queue has (the worker's, once it runs)."""
        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.queue, passive=True)
            return int(queue.declaration_result.consumer_count or 0)
        except aio_pika.exceptions.ChannelClosed:
            return 0
        finally:
            await connection.close()

    async def close(self) -> None:
        """Kill the processes; delete the job queue and its dead-letter queue."""
        self.kill_all()
        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel()
            for name in (self.queue, f"{self.queue}-dlq"):
                await channel.queue_delete(name)
        finally:
            await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def processes(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Processes]:
    """A gateway and a worker process on one backend; killed (queues deleted) afterwards."""
    running: Processes
    if request.param == "rabbitmq":
        running = BrokerProcesses(broker_url(request.getfixturevalue("broker")), tmp_path)
    else:
        running = FileProcesses(f"sqlite:///{tmp_path / 'ws.db'}", tmp_path)
    try:
        running.start_both()
        await until_async(running.ready, START, f"the gateway and the worker:\n{running.logs()}")
        yield running
    finally:
        await running.close()


async def test_a_worker_process_pushes_to_the_client_of_another_process(
    processes: Processes,
) -> None:
    """A job posted over HTTP is handled in the worker process and pushed to that client only."""
    base = f"ws://127.0.0.1:{processes.port}/events"
    worker_pid = processes.started["worker"].pid
    async with connect(base) as a, connect(base) as b:
        await a.send(json.dumps({"action": "whoami"}))
        a_id = json.loads(await a.recv())["id"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{processes.port}") as http:
            response = await http.post("/jobs", json={"connection_id": a_id, "n": 21})
        assert response.status_code == 202
        pushed = json.loads(await asyncio.wait_for(a.recv(), 10))
        assert pushed == {"result": 42, "pid": worker_pid}, processes.logs()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.recv(), 0.3)
    await until(lambda: len(processes.lines("disconnect")) == 2, 10, "two $disconnect")


async def test_stopping_the_gateway_closes_with_1001_and_later_pushes_are_gone(
    processes: Processes,
) -> None:
    """SIGTERM closes the client with 1001, runs $disconnect once; a push then finds it gone."""
    async with connect(f"ws://127.0.0.1:{processes.port}/events") as ws:
        await ws.send(json.dumps({"action": "whoami"}))
        connection_id = json.loads(await ws.recv())["id"]
        processes.started["gateway"].send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert processes.started["gateway"].wait(timeout=20) == 0, processes.logs()
    assert [line[1] for line in processes.lines("disconnect")] == [connection_id]

    await processes.push(connection_id)
    await until(lambda: bool(processes.lines("gone")), 10, f"a gone push:\n{processes.logs()}")
    assert processes.lines("gone")[0][1] == connection_id


async def test_a_push_to_a_killed_gateway_is_gone(processes: Processes) -> None:
    """``kill -9`` of the gateway: the worker's push is gone (the broker dropped its queue; the
    file's row names an OS process that has exited)."""
    async with connect(f"ws://127.0.0.1:{processes.port}/events") as ws:
        await ws.send(json.dumps({"action": "whoami"}))
        connection_id = json.loads(await ws.recv())["id"]
        processes.started["gateway"].send_signal(signal.SIGKILL)
        processes.started["gateway"].wait(timeout=20)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    await processes.push(connection_id)
    await until(
        lambda: bool(processes.lines("gone")),
        processes.gone_within,
        f"a gone push:\n{processes.logs()}",
    )
    assert processes.lines("gone")[0][1] == connection_id
    assert processes.lines("pushed") == []

"""Pushes across real processes on RabbitMQ: `framework run` and the `websockets` client.

A gateway process (``framework run``) holds the clients' connections; a ``--workers-only``
process handles the queue and pushes each result to the right client through the broker.
When the gateway process stops, its clients see 1001, each ``$disconnect`` runs once, and a
later push from the worker raises ``ConnectionGoneError``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from framework.backends.rabbitmq import RabbitMQBackend
from framework.messages import CONTENT_TYPE, Outgoing
from tests.backends.rabbitmq.fleet import broker_url, until, until_async

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(90)]

HERE = Path(__file__).parent
START = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Processes:
    """A gateway process and a worker process of ``push_app.py`` on a fresh queue."""

    url: str
    folder: Path
    queue: str = field(default_factory=lambda: f"ws-{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=_free_port)
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def results(self) -> Path:
        return self.folder / "results"

    def start(self, role: str, *args: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "FW_WS_QUEUE": self.queue,
            "FW_WS_RESULTS": str(self.results),
            "FW_WS_ROLE": role,
        }
        command = [sys.executable, "-m", "framework.cli", "run", "push_app:app"]
        command += ["--backend", self.url, "--grace", "2", "--log-level", "warning", *args]
        with (self.folder / f"{role}.log").open("wb") as out:
            process = subprocess.Popen(command, cwd=HERE, env=env, stdout=out, stderr=out)
        self.started[role] = process
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {role}\n{(self.folder / f'{role}.log').read_text()[-3000:]}"
            for role in self.started
        )

    def lines(self, kind: str) -> list[list[str]]:
        if not self.results.exists():
            return []
        return [
            p for p in (ln.split() for ln in self.results.read_text().splitlines()) if p[0] == kind
        ]

    async def push(self, connection_id: str) -> None:
        """Queue a job for ``connection_id`` straight on the broker (no gateway needed)."""
        async with RabbitMQBackend.from_url(self.url) as backend:
            body = json.dumps({"connection_id": connection_id, "n": 1}).encode()
            await backend.send(
                self.queue, Outgoing(body=body, headers={CONTENT_TYPE: "application/json"})
            )

    async def consumers(self) -> int:
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
        for process in self.started.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=20)
        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel()
            for name in (self.queue, f"{self.queue}-dlq"):
                await channel.queue_delete(name)
        finally:
            await connection.close()


@pytest.fixture
async def processes(broker: str, tmp_path: Path) -> AsyncIterator[Processes]:
    """A gateway and a worker process; killed, and their queues deleted, afterwards."""
    running = Processes(broker_url(broker), tmp_path)
    try:
        gateway = running.start("gateway", "--http-port", str(running.port), "--no-smtp")
        worker = running.start("worker", "--workers-only")

        async def ready() -> bool:
            for process in (gateway, worker):
                if process.poll() is not None:
                    raise AssertionError(f"a process exited early:\n{running.logs()}")
            try:
                async with httpx.AsyncClient() as http:
                    await http.get(f"http://127.0.0.1:{running.port}/metrics")
            except httpx.TransportError:
                return False
            return await running.consumers() >= 1

        await until_async(ready, START, "the gateway and the worker")
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
    """``kill -9`` of the gateway: the broker drops its queue, and the worker's push is gone."""
    async with connect(f"ws://127.0.0.1:{processes.port}/events") as ws:
        await ws.send(json.dumps({"action": "whoami"}))
        connection_id = json.loads(await ws.recv())["id"]
        processes.started["gateway"].send_signal(signal.SIGKILL)
        processes.started["gateway"].wait(timeout=20)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    await processes.push(connection_id)
    await until(lambda: bool(processes.lines("gone")), 15, f"a gone push:\n{processes.logs()}")
    assert processes.lines("gone")[0][1] == connection_id
    assert processes.lines("pushed") == []

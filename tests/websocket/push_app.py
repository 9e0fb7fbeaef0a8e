"""The app the multi-process WebSocket tests run in real ``framework run`` processes.

``FW_WS_ROLE=gateway`` serves the WebSocket API and the HTTP route, and only declares the
queue; ``FW_WS_ROLE=worker`` (``--workers-only``) handles the queue and pushes the result to
the client, wherever its connection is held. ``FW_WS_QUEUE`` names the queue (fresh per test);
``FW_WS_RESULTS`` is a file each process appends ``<event> <connection id> <pid>`` lines to.
"""

from __future__ import annotations

import os

from pydantic import BaseModel

from framework import App, Connection, ConnectionGoneError

QUEUE = os.environ.get("FW_WS_QUEUE", "ws-unset")
RESULTS = os.environ.get("FW_WS_RESULTS", os.devnull)
ROLE = os.environ.get("FW_WS_ROLE", "gateway")

app = App("ws-push")


class Job(BaseModel):
    """Work for the client holding ``connection_id``."""

    connection_id: str
    n: int


def record(kind: str, connection_id: str) -> None:
    """Append one line to the results file (one write: lines never interleave)."""
    line = f"{kind} {connection_id} {os.getpid()}\n".encode()
    fd = os.open(RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.websocket("/events", "whoami")
async def whoami(conn: Connection) -> dict[str, str]:
    """Tell the client its connection id."""
    return {"id": conn.id}


@app.websocket("/events", "$disconnect")
async def disconnect(conn: Connection) -> None:
    """Record each disconnect (exactly one per connection)."""
    record("disconnect", conn.id)


@app.route("/jobs", methods=["POST"], status_code=202)
async def post_job(job: Job) -> dict[str, str]:
    """Queue the job; a worker process pushes its result."""
    await app.send(QUEUE, job)
    return {"queued": job.connection_id}


if ROLE == "worker":

    @app.on_queue(QUEUE)
    async def work(job: Job) -> None:
        """Push the result to the client; record a connection that is gone."""
        try:
            await app.connections.send(job.connection_id, {"result": job.n * 2, "pid": os.getpid()})
        except ConnectionGoneError:
            record("gone", job.connection_id)
        else:
            record("pushed", job.connection_id)

else:
    app.queue(QUEUE)

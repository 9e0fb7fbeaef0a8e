"""Notifications: clients connect over a WebSocket, post work over HTTP, and get the result pushed.

Run it (on the default backend, a SQLite file under .framework/; page at
http://127.0.0.1:8000/):

    framework run examples.notifications:app

Add a process that handles the queue too, pushing to the other one's clients through the file:

    framework run examples.notifications:app --workers-only

Or on RabbitMQ, the same two processes:

    framework run examples.notifications:app --backend amqp://guest:guest@localhost:5672/
    framework run examples.notifications:app --backend amqp://... --workers-only

Open the page in two tabs: work started in one is pushed to that tab only.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse

from framework import App, Connection, ConnectionGoneError, Refuse

app = App("notifications")
PAGE = (Path(__file__).parent / "page.html").read_text()


# --8<-- [start:socket]
@app.websocket("/ws", "$connect")
async def connect(conn: Connection) -> None:
    """Refuse clients that name themselves ``nobody``; anyone else may connect."""
    if conn.query.get("name") == "nobody":
        raise Refuse(403, "nobody may connect")


@app.websocket("/ws", "whoami")
async def whoami(conn: Connection) -> dict[str, str]:
    """Tell the client its connection id, which it sends along with its work."""
    return {"type": "hello", "connection_id": conn.id}


@app.websocket("/ws", "$default")
async def default(message: str) -> dict[str, str]:
    """Anything else: say what the API understands."""
    return {"type": "help", "detail": 'send {"action": "whoami"}, then POST /work'}


# --8<-- [end:socket]


# --8<-- [start:work]
class Work(BaseModel):
    """Text to process, and the connection to push the result to."""

    connection_id: str
    text: str = Field(min_length=1, max_length=1000)


@app.route("/work", methods=["POST"], status_code=202)
async def post_work(work: Work) -> dict[str, str]:
    """Queue the work; the answer comes later, over the client's WebSocket."""
    await app.send("work", work)
    return {"status": "queued"}


@app.on_queue("work")
async def do_work(work: Work) -> None:
    """Do the work (slowly), then push the result to the client that asked for it."""
    await anyio.sleep(0.1)
    result = {"type": "result", "text": work.text, "shouted": work.text.upper()}
    # A client that left meanwhile has nobody to tell, and no reason to retry.
    with contextlib.suppress(ConnectionGoneError):
        await app.connections.send(work.connection_id, result)


# --8<-- [end:work]


@app.route("/")
async def page() -> HTMLResponse:
    """The page: connects, shows its id, posts work, lists what is pushed to it."""
    return HTMLResponse(PAGE)

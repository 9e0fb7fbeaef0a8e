"""The app ``test_served.py`` runs with ``framework run``: handshakes refused for each reason.

``/ws`` needs an API key (``X-API-Key: k-1``) and admits pages of its own origin and of the
app's CORS origin ``https://shop.example``; its ``$connect`` refuses ``?refuse=1`` with 451.
``/open`` admits pages of every origin and has no authorizer: ``framework run`` warns at start.
``/flood`` pushes 64 KiB of random bytes to its caller until its send queue of 8 overflows.
"""

from __future__ import annotations

import secrets

from framework import App, Connection, ConnectionGoneError, Refuse
from framework.gateway import CORS, APIKeyAuth

app = App("ws-served", cors=CORS(allow_origins=["https://shop.example"]))


@app.websocket("/ws", "$connect", auth=APIKeyAuth({"k-1": "ann"}))
async def connect(conn: Connection) -> None:
    """Refuse ``?refuse=1`` with 451."""
    if conn.query.get("refuse"):
        raise Refuse(451, "refused by $connect")


@app.websocket("/ws", "whoami")
async def whoami(conn: Connection) -> dict[str, str]:
    """Tell the client who it is."""
    return {"principal": conn.principal.id if conn.principal else ""}


app.websocket_api("/open", allowed_origins=["*"])


@app.websocket("/open", "$default")
async def echo(message: str) -> str:
    """Send the message back."""
    return message


app.websocket_api("/flood", send_queue=8)


@app.websocket("/flood", "flood")
async def flood(conn: Connection) -> None:
    """Push to the caller until it is gone (the client does not read: its queue overflows)."""
    block = secrets.token_bytes(65_536)
    for _ in range(100_000):
        try:
            await app.connections.send(conn.id, block)
        except ConnectionGoneError:
            return

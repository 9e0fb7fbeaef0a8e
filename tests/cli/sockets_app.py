"""An app with guarded HTTP routes and a WebSocket API, for `framework routes`."""

from __future__ import annotations

from framework import App, Connection
from framework.gateway import APIKeyAuth, JWTAuth, JWTKey, Principal

app = App("sockets")


async def ticket(token: str) -> Principal | None:
    """Accept the one ticket the tests use."""
    return Principal("visitor", {}, "ticket") if token == "t-1" else None


@app.route("/reports", methods=["GET"], auth=APIKeyAuth({"k-1": "ops"}))
async def reports() -> list[str]:
    """List the reports (API key)."""
    return []


@app.route("/health", methods=["GET"])
async def health() -> str:
    """Say the app is up (no auth)."""
    return "ok"


@app.websocket("/chat", "$connect", auth=JWTAuth(JWTKey("s" * 32, "HS256")))
async def join(conn: Connection) -> None:
    """Let a client with a valid token in."""


@app.websocket("/chat", "say")
async def say(text: dict[str, str], conn: Connection) -> dict[str, str]:
    """Echo a message."""
    return text


@app.websocket("/alerts", "$connect", auth=ticket)
async def watch(conn: Connection) -> None:
    """Let a client with a ticket in."""


@app.websocket("/alerts")
async def fallback(body: str, conn: Connection) -> None:
    """Ignore what watchers send."""

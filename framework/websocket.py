"""WebSocket connections as values: ``Connection``, its id, and the route names of an API.

A connection id names the process holding the connection (``<process>.<token>``), so any
process can tell where to deliver a push without a shared table: the runtime's
``Connections`` (``framework/runtime/connections.py``) reads the owner from the id.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from pydantic_core import to_json

from framework.exceptions import ConnectionGoneError
from framework.logs import event
from framework.principal import Principal

__all__ = [
    "CONNECT",
    "DEFAULT",
    "DISCONNECT",
    "SEND_NOWAIT",
    "SPECIAL_ROUTES",
    "CanRelayConnections",
    "Connection",
    "ConnectionManager",
    "Relay",
    "Reply",
    "Request",
    "Serve",
    "answer",
    "encode_push",
    "new_connection_id",
    "owner_of",
    "reply_within",
]

CONNECT = "$connect"
DISCONNECT = "$disconnect"
DEFAULT = "$default"
SPECIAL_ROUTES = (CONNECT, DISCONNECT, DEFAULT)
SEND_NOWAIT = "framework.websocket.send_nowait"
"""The ASGI scope extension of a server that can send a message without a task: it holds
``{"send": send_nowait}``, ``send_nowait(text, data) -> bool`` writing the message at once, or
returning False (sending nothing) when the caller must use the ASGI ``send`` instead
(``framework run``'s, ``framework/cli/wsprotocol.py``)."""

_EMPTY: Mapping[str, str] = MappingProxyType({})
_BINARY = (bytes, bytearray, memoryview)

Request = Mapping[str, Any]
"""A request about a connection, from another process: ``{"op": "send", "id": ..., ...}``."""
Reply = dict[str, Any]
"""Its answer: ``{}``, ``{"connection": {...}}`` or ``{"error": "gone", "detail": ...}``."""
Serve = Callable[[Request], Awaitable[Reply]]
"""What answers the requests sent to this process."""


async def reply_within(future: Awaitable[Reply], connection_id: object, seconds: float) -> Reply:
    """Wait for the owner's answer to a relayed request, at most ``seconds``.

    Raises:
        ConnectionGoneError: If no answer came in time (the owner was killed).
    """
    try:
        return await asyncio.wait_for(future, seconds)
    except TimeoutError:
        raise ConnectionGoneError(
            f"connection {connection_id!r}: the process holding it did not answer "
            f"within {seconds:g}s"
        ) from None


async def answer(serve: Serve, request: object) -> Reply:
    """Serve one request relayed from another process; a failure is an error reply, never
    raised, so the asker always hears back."""
    try:
        return await serve(request) if isinstance(request, dict) else {"error": "bad"}
    except Exception as exc:
        event(
            logging.getLogger("framework.websocket"),
            logging.ERROR,
            "websocket.relay_failed",
            error=type(exc).__name__,
        )
        return {"error": type(exc).__name__}


def encode_push(body: object) -> tuple[str | None, bytes | None]:
    """Return the frame for ``body``: a str as text, bytes as binary, anything else as JSON."""
    if isinstance(body, str):
        return body, None
    if isinstance(body, _BINARY):
        return None, bytes(body)
    return to_json(body).decode(), None


def new_connection_id(process: str) -> str:
    """Return a fresh, unguessable connection id owned by ``process``."""
    return f"{process}.{secrets.token_urlsafe(12)}"


def owner_of(connection_id: str) -> str:
    """Return the process id a connection id names ('' for an id of no known form)."""
    owner, dot, token = connection_id.partition(".")
    return owner if dot and token else ""


@dataclass(frozen=True, slots=True)
class Connection:
    """One client's WebSocket connection, as its handlers see it.

    Attributes:
        id: The connection id, for ``app.connections.send(id, body)`` from anywhere.
        path: The WebSocket API's path.
        principal: What the API's authorizer said at ``$connect``, or None without ``auth=``.
        headers: The handshake's headers, names in lowercase (repeated ones joined by ``, ``).
        query: The handshake's query parameters (the last of a repeated one); a credential
            sent in the query string is not among them.
        connected_at: When the handshake was accepted (aware UTC).
    """

    id: str
    path: str
    principal: Principal | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    query: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    connected_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        """Return the connection as JSON-ready data (for another process's ``info``)."""
        principal = self.principal
        return {
            "id": self.id,
            "path": self.path,
            "principal": (
                None
                if principal is None
                else {
                    "id": principal.id,
                    "claims": dict(principal.claims),
                    "scheme": principal.scheme,
                }
            ),
            "headers": dict(self.headers),
            "query": dict(self.query),
            "connected_at": self.connected_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Connection:
        """Rebuild a connection from ``as_dict``'s data."""
        raw = data.get("principal")
        principal = (
            None
            if raw is None
            else Principal(
                str(raw["id"]), MappingProxyType(dict(raw["claims"])), str(raw["scheme"])
            )
        )
        return cls(
            id=str(data["id"]),
            path=str(data["path"]),
            principal=principal,
            headers=MappingProxyType(dict(data["headers"])),
            query=MappingProxyType(dict(data["query"])),
            connected_at=datetime.fromisoformat(str(data["connected_at"])),
        )


class Relay(Protocol):
    """**Protocol**: a backend's delivery path to the process owning a connection."""

    async def call(self, owner: str, request: Request) -> Reply:
        """Send ``request`` to process ``owner`` and return its reply.

        Raises:
            ConnectionGoneError: If that process is gone (or does not answer in time).
        """

    async def aclose(self) -> None:
        """Stop answering and disconnect."""


@runtime_checkable
class CanRelayConnections(Protocol):
    """**Protocol**: a backend that can deliver connection requests between processes."""

    async def connection_relay(self, process: str, serve: Serve) -> Relay:
        """Start answering requests for ``process`` with ``serve``; return the sending side."""


class ConnectionManager(Protocol):
    """**Protocol**: what ``app.connections`` is (``Connections``, or API Gateway's API)."""

    async def send(self, connection_id: str, body: object) -> None:
        """Send ``body`` to the connection."""

    async def close(self, connection_id: str, code: int = 1000) -> None:
        """Close the connection."""

    async def info(self, connection_id: str) -> Connection:
        """Describe the connection."""

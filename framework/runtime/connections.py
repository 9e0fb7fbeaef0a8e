"""``app.connections``: push to, close and describe WebSocket connections from any process.

Every runtime has a ``Connections``: the registry of the connections this process holds (the
gateway registers each one as a ``Session`` when its handshake is accepted) and, for ids held
elsewhere, a delivery path to the process that holds them.

A connection id names its owner (``<process>.<token>``, see ``framework.websocket``), so no
shared table is needed: an id owned here goes to the local session; an id owned by another
process goes through the backend's ``Relay``, when the backend has one
(``CanRelayConnections``), as a request that process answers. A closed connection, an owner
that has stopped, or a backend with no delivery path, is ``ConnectionGoneError`` (API
Gateway's 410).

The seam, for a backend: implement ``connection_relay(process, serve)`` returning a
``Relay``; ``serve`` answers the requests other processes send here (RabbitMQ: one
exclusive queue per process, ``backends/rabbitmq/relay.py``; AWS: one SQS queue per
process, ``backends/aws/relay.py``). For a deployment where the
connections live elsewhere entirely (Lambda behind API Gateway), pass another
``ConnectionManager`` to ``Runtime(connections=...)``.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any, Protocol

import anyio

from framework.exceptions import ConnectionGoneError, MessageTooLargeError
from framework.websocket import (
    CanRelayConnections,
    Connection,
    Relay,
    Reply,
    Request,
    encode_push,
    new_connection_id,
    owner_of,
)

__all__ = ["Connections", "Session", "encode_push"]


class Session(Protocol):
    """**Protocol**: a connection this process holds (the gateway's side of it)."""

    @property
    def connection(self) -> Connection:
        """The connection's description."""

    @property
    def max_message_size(self) -> int:
        """The largest message its API sends or receives, in bytes."""

    def push(self, text: str | None, data: bytes | None) -> None:
        """Queue one message for the client (``text`` or ``data``).

        Raises:
            ConnectionGoneError: If it is closed, or its send queue overflowed (it closes).
        """

    def close(self, code: int, reason: str) -> None:
        """Start closing the connection with ``code``; the handler in flight finishes."""


class Connections:
    """The connections of one process, and the way to the others'.

    Args:
        process: This process's id, the prefix of the ids of the connections it holds
            (default: a new random one).
    """

    def __init__(self, process: str | None = None) -> None:
        self.process = process or uuid.uuid4().hex[:16]
        self.sessions: dict[str, Session] = {}
        self._per_path: dict[str, int] = {}  # open connections by API path (the 503 check)
        self.relay: Relay | None = None
        self.relay_name = ""
        self._empty: anyio.Event | None = None
        # Set by close_all: the process is stopping, and new handshakes are refused (503).
        self.closing = False

    # --- life ------------------------------------------------------------------------------

    async def start(self, backend: object) -> None:
        """Open the backend's delivery path, when it has one (else only local ids work)."""
        if isinstance(backend, CanRelayConnections):
            self.relay = await backend.connection_relay(self.process, self.serve)
            self.relay_name = type(backend).__name__

    async def stop(self) -> None:
        """Close the delivery path."""
        relay, self.relay = self.relay, None
        if relay is not None:
            await relay.aclose()

    def new_id(self) -> str:
        """Return a new connection id owned by this process."""
        return new_connection_id(self.process)

    def register(self, session: Session) -> None:
        """Hold ``session`` here: its id now reaches it."""
        connection = session.connection
        if connection.id not in self.sessions:
            self._per_path[connection.path] = self._per_path.get(connection.path, 0) + 1
        self.sessions[connection.id] = session

    def unregister(self, connection_id: str) -> None:
        """Forget a closed connection: its id is gone from now on."""
        session = self.sessions.pop(connection_id, None)
        if session is not None:
            self._per_path[session.connection.path] -= 1
        if not self.sessions and self._empty is not None:
            self._empty.set()

    def count(self, path: str) -> int:
        """How many connections of the API at ``path`` this process holds."""
        return self._per_path.get(path, 0)

    def close_all(self, code: int = 1001, reason: str = "server stopping") -> None:
        """Start closing every connection held here (their handlers in flight finish).

        New handshakes are refused from now on.
        """
        self.closing = True
        for session in list(self.sessions.values()):
            session.close(code, reason)

    async def wait_closed(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for every held connection to be gone."""
        if not self.sessions:
            return
        self._empty = anyio.Event()
        with anyio.move_on_after(grace):
            await self._empty.wait()

    # --- the management API ----------------------------------------------------------------

    async def send(self, connection_id: str, body: object) -> None:
        """Send ``body`` to the client of ``connection_id``, wherever its process is.

        A str goes as a text frame, bytes as a binary frame, anything else (a model, a dict)
        as JSON text.

        Raises:
            ConnectionGoneError: If the connection is closed or its process is gone.
            MessageTooLargeError: If the message exceeds its API's ``max_message_size``.
        """
        text, data = encode_push(body)
        session = self.sessions.get(connection_id)
        if session is not None:
            self._deliver(session, text, data)
            return
        request: dict[str, Any] = {"op": "send", "id": connection_id}
        if data is not None:
            request["data"] = base64.b64encode(data).decode()
        else:
            request["text"] = text
        self._check(await self._remote(connection_id, request))

    async def close(self, connection_id: str, code: int = 1000) -> None:
        """Close the connection (its ``$disconnect`` handler runs where it is held).

        Raises:
            ConnectionGoneError: If it is already closed or its process is gone.
        """
        session = self.sessions.get(connection_id)
        if session is not None:
            session.close(code, "closed by the server")
            return
        self._check(
            await self._remote(connection_id, {"op": "close", "id": connection_id, "code": code})
        )

    async def info(self, connection_id: str) -> Connection:
        """Return the connection's description (id, principal, headers, query, connected_at).

        Raises:
            ConnectionGoneError: If it is closed or its process is gone.
        """
        session = self.sessions.get(connection_id)
        if session is not None:
            return session.connection
        reply = self._check(await self._remote(connection_id, {"op": "info", "id": connection_id}))
        return Connection.from_dict(reply["connection"])

    def _deliver(self, session: Session, text: str | None, data: bytes | None) -> None:
        size = len(data) if data is not None else len((text or "").encode())
        if size > session.max_message_size:
            raise MessageTooLargeError(
                f"a push of {size} bytes exceeds the WebSocket API's max_message_size of "
                f"{session.max_message_size} bytes; send less, or raise it in app.websocket_api"
            )
        session.push(text, data)

    async def _remote(self, connection_id: str, request: Request) -> Reply:
        owner = owner_of(connection_id)
        if not owner or owner == self.process:
            raise ConnectionGoneError(f"connection {connection_id!r} is closed (or never was open)")
        if self.relay is None:
            raise ConnectionGoneError(
                f"connection {connection_id!r} is held by another process, and this backend "
                "has no delivery path between processes (memory:// reaches only the "
                "connections of its own process; the app must declare a WebSocket API)"
            )
        return await self.relay.call(owner, request)

    @staticmethod
    def _check(reply: Reply) -> Reply:
        error = reply.get("error")
        if error == "gone":
            raise ConnectionGoneError(str(reply.get("detail", "the connection is closed")))
        if error == "too_large":
            raise MessageTooLargeError(str(reply.get("detail", "the push is too large")))
        if error is not None:
            raise ConnectionGoneError(f"the connection's process answered: {error}")
        return reply

    async def serve(self, request: Request) -> Reply:
        """Answer another process's request about a connection held here."""
        connection_id = str(request.get("id", ""))
        session = self.sessions.get(connection_id)
        if session is None:
            return {"error": "gone", "detail": f"connection {connection_id!r} is closed"}
        op = request.get("op")
        try:
            if op == "send":
                raw = request.get("data")
                data = base64.b64decode(raw) if isinstance(raw, str) else None
                self._deliver(session, None if data is not None else str(request["text"]), data)
            elif op == "close":
                session.close(int(request.get("code", 1000)), "closed by the server")
            elif op == "info":
                return {"connection": session.connection.as_dict()}
            else:
                return {"error": f"unknown operation {op!r}"}
        except ConnectionGoneError as exc:
            return {"error": "gone", "detail": str(exc)}
        except MessageTooLargeError as exc:
            return {"error": "too_large", "detail": str(exc)}
        return {}

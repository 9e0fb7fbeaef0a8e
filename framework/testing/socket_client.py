"""``t.websocket(path)``: a WebSocket client speaking ASGI to the app's gateway, in the test's loop.

It drives the same gateway ``framework run`` serves (the handshake, the authorizer, the routes,
the limits), without a socket: like ``httpx.ASGITransport`` for HTTP. Its inbox is bounded
(``max_queue`` messages), so a test that stops reading makes the server's writes wait, as a
slow client over TCP does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.types import ASGIApp, Message

from framework.exceptions import FrameworkError

__all__ = ["HandshakeRefusedError", "WebSocketClient", "WebSocketClosedError"]


class HandshakeRefusedError(FrameworkError):
    """The server refused the WebSocket handshake with an HTTP status.

    Attributes:
        status: The HTTP status (401, 403, 404, 503, or a ``Refuse``'s).
        detail: The ``detail`` of the JSON body, when there was one.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"handshake refused with {status}: {detail}")
        self.status = status
        self.detail = detail


class WebSocketClosedError(FrameworkError):
    """The server closed the connection.

    Attributes:
        code: The close code (1000, 1001, 1008, 1009, ...).
        reason: The close reason.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed by the server with {code} {reason!r}")
        self.code = code
        self.reason = reason


class WebSocketClient:
    """One WebSocket connection to an ASGI app, as an async context manager.

    Args:
        app: The ASGI application (the app's gateway).
        path: The WebSocket API's path.
        headers: Handshake headers.
        query: Query parameters.
        max_queue: Messages the client holds unread before the server's sends wait.
        timeout: Seconds ``receive`` and the handshake wait by default.

    Raises:
        HandshakeRefusedError: On entering, if the server refuses the handshake.
    """

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        max_queue: int = 64,
        timeout: float = 5.0,
    ) -> None:
        self.app = app
        self.timeout = timeout
        raw = [(b"host", b"testserver")]
        raw += [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(dict(query or {})).encode(),
            "headers": raw,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}},
            "state": {},
        }
        self._to_app: MemoryObjectSendStream[Message]
        self._app_inbox: MemoryObjectReceiveStream[Message]
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](1000)
        self._from_app: MemoryObjectSendStream[Message]
        self._inbox: MemoryObjectReceiveStream[Message]
        self._from_app, self._inbox = anyio.create_memory_object_stream[Message](max_queue)
        self._group: TaskGroup | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._connected = False
        self._client_closed = False

    async def _receive(self) -> Message:
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        try:
            return await self._app_inbox.receive()
        except anyio.EndOfStream:
            return {"type": "websocket.disconnect", "code": 1000}

    async def _send(self, message: Message) -> None:
        if self._client_closed:
            raise OSError("the client closed the connection")
        await self._from_app.send(message)

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self._receive, self._send)
        finally:
            self._from_app.close()

    async def __aenter__(self) -> Self:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._run)
        try:
            with anyio.fail_after(self.timeout):
                first = await self._inbox.receive()
            if first["type"] == "websocket.http.response.start":
                body = b""
                async for message in self._inbox:
                    body += message.get("body", b"")
                    if not message.get("more_body"):
                        break
                detail = json.loads(body).get("detail", "") if body else ""
                raise HandshakeRefusedError(first["status"], str(detail))
            if first["type"] == "websocket.close":
                raise HandshakeRefusedError(403, "closed during the handshake")
            if first["type"] != "websocket.accept":
                raise RuntimeError(f"unexpected first message {first!r}")
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        self._client_closed = True
        self._to_app.close()
        # Drain what the server still sends, so it never waits on a full inbox.
        with anyio.move_on_after(self.timeout):
            async for _ in self._inbox:
                pass
        await group.__aexit__(None, None, None)
        self._app_inbox.close()
        self._inbox.close()

    # --- the test's side ------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Send a text frame."""
        await self._to_app.send({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame."""
        await self._to_app.send({"type": "websocket.receive", "bytes": data})

    async def send_json(self, value: Any) -> None:
        """Send ``value`` as JSON in a text frame."""
        await self.send_text(json.dumps(value))

    async def receive(self, timeout: float | None = None) -> str | bytes:  # noqa: ASYNC109
        """Return the next message the server sent (text or bytes).

        Raises:
            WebSocketClosedError: If the server closed the connection.
            TimeoutError: If nothing came within ``timeout`` seconds (default: the client's).
        """
        if self.close_code is not None:
            raise WebSocketClosedError(self.close_code, self.close_reason)
        with anyio.fail_after(self.timeout if timeout is None else timeout):
            try:
                message = await self._inbox.receive()
            except anyio.EndOfStream:
                self.close_code = self.close_code or 1006
                raise WebSocketClosedError(self.close_code, "the server went away") from None
        if message["type"] == "websocket.close":
            self.close_code = int(message.get("code", 1000))
            self.close_reason = str(message.get("reason") or "")
            raise WebSocketClosedError(self.close_code, self.close_reason)
        if message.get("text") is not None:
            return str(message["text"])
        return bytes(message.get("bytes") or b"")

    async def receive_json(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Return the next message, parsed as JSON.

        Raises:
            WebSocketClosedError: If the server closed the connection.
            TimeoutError: If nothing came within ``timeout`` seconds.
        """
        return json.loads(await self.receive(timeout))

    async def wait_closed(self, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """Read until the server closes; return the close code (messages read are dropped).

        Raises:
            TimeoutError: If the server did not close within ``timeout`` seconds.
        """
        while True:
            try:
                await self.receive(timeout)
            except WebSocketClosedError as exc:
                return exc.code

    async def close(self) -> None:
        """Close from the client's side (the server sees a disconnect)."""
        await self._shutdown()

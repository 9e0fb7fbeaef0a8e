"""``framework run``'s WebSocket protocol: uvicorn's sans-I/O one, with two per-message costs cut.

uvicorn's ``WebSocketsSansIOProtocol`` (the one its ``auto`` picks, on the ``websockets``
library's frame parser) serves every connection the gateway upgrades. ``WebSocketProtocol`` is
it with two changes, both measured by ``bench/websocket.py``:

- **Reading pauses only when messages pile up.** uvicorn pauses the transport after each
  message and resumes it once the app has taken it: two ``epoll_ctl`` calls and their
  selector bookkeeping per message, about a tenth of the server's time on an echo. Here the
  transport is paused once ``READ_AHEAD`` messages wait for the app, and resumed when it has
  taken them all, so a client that sends faster than its handlers answer still stops being
  read, and at most ``READ_AHEAD`` messages (each at most ``ws_max_size`` bytes) wait.
- **A message can be sent without a task.** The ASGI ``send`` is a coroutine: a push from a
  queue handler had to wake the connection's writer task to call it. The scope's extension
  ``framework.websocket.send_nowait`` holds ``{"send": send_nowait}``, a plain function that
  writes one message to the transport at once and returns True, or returns False (sending
  nothing) when it cannot: the transport is above its high-water mark (the client reads too
  slowly), or the connection is closing or closed. The caller then uses the ASGI ``send``,
  which waits for the transport or raises, exactly as before.

Everything else (the handshake, the denial response, close, ping, keepalive) is uvicorn's.
"""

from __future__ import annotations

from typing import Any

from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from framework.websocket import SEND_NOWAIT

__all__ = ["READ_AHEAD", "WebSocketProtocol"]

READ_AHEAD = 16
"""Messages read from a client and not yet taken by the app, at which reading pauses."""


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with the changes of the module docstring."""

    def handle_connect(self, event: Any) -> None:
        """Start the app as uvicorn does, its scope offering ``send_nowait``."""
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # the app's task, just created, has not started yet
            scope["extensions"][SEND_NOWAIT] = {"send": self.send_nowait}

    def send_receive_event_to_app(self) -> None:
        """Queue one message for the app; pause reading once ``READ_AHEAD`` are waiting."""
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return  # past websocket.close: read on until the client's close, as uvicorn does
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self.logger.exception("Invalid UTF-8 sequence received from client.")
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        if not self.read_paused and self.queue.qsize() >= READ_AHEAD:
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> ASGIReceiveEvent:
        """The next event; reading resumes once the app has taken every waiting message."""
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def send_nowait(self, text: str | None, data: bytes | None) -> bool:
        """Send one message now (``text``, else ``data``); False if it must wait or cannot go.

        False sends nothing: the transport is above its high-water mark, or the connection is
        not open (closing, closed, refused); the ASGI ``send`` then waits or raises.
        """
        if (
            self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
            or not self.writable.is_set()
        ):
            return False
        try:
            if text is not None:
                self.conn.send_text(text.encode())
            else:
                self.conn.send_binary(data or b"")
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

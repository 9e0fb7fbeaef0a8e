"""uvicorn's HTTP/1.1 protocol with a bound on the time a client takes to send its request.

uvicorn closes a connection idle between requests after ``timeout_keep_alive`` seconds, but
nothing bounds the time to send a request: a client that connects and sends nothing, or
sends half a header line and stops (slowloris), or announces a body and trickles it, holds
its connection (a file descriptor and a protocol object) for as long as it likes. Here every
request's head and body must arrive within ``read_timeout`` seconds of the connection
opening or of the request's first byte; otherwise the client gets ``408 Request Timeout``
(when nothing was answered yet) and the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from framework.logs import event

__all__ = ["DEFAULT_READ_TIMEOUT", "TimedH11Protocol", "protocol_class"]

DEFAULT_READ_TIMEOUT = 10.0
"""Seconds a client gets to send a whole request (head and body)."""

log = logging.getLogger("framework.gateway")

# The client is still sending its request in these states (IDLE: the head is incomplete).
_READING = (h11.IDLE, h11.SEND_BODY)


class TimedH11Protocol(H11Protocol):
    """``H11Protocol`` that closes a connection whose request does not arrive in time."""

    read_timeout: float = DEFAULT_READ_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock on the first request as the connection opens."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Feed h11, then stop the clock once the client has sent its whole request."""
        if self._read_deadline is None and self.conn.their_state in _READING:
            self._arm()  # the first byte of a request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state not in _READING or not self._reading():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the clock with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        """Hand the connection to uvicorn's keep-alive timer between requests.

        An answer sent before the request's body was read (a 404, a 413) leaves the clock
        running: the connection is not idle until the client has finished sending.
        """
        if not self._reading():
            self._disarm()
        super().on_response_complete()

    def _reading(self) -> bool:
        """True while a request is being received: bytes of its head, or its body, pending."""
        if self.conn.their_state is h11.SEND_BODY:
            return True
        # IDLE: a head in progress if h11 holds unparsed bytes of it.
        return bool(self.conn.trailing_data[0])

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        peer = self.client[0] if self.client else ""
        event(log, logging.INFO, "http.read_timeout", client=peer, seconds=self.read_timeout)
        if self.cycle is None and self.conn.our_state is h11.IDLE:
            try:
                response = h11.Response(
                    status_code=408,
                    headers=[(b"connection", b"close"), (b"content-length", b"0")],
                    reason=b"Request Timeout",
                )
                self.transport.write(self.conn.send(response) or b"")
                self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
            except h11.LocalProtocolError:  # h11 will not answer in this state: just close
                pass
        self.transport.close()


def protocol_class(read_timeout: float) -> type[TimedH11Protocol]:
    """Return ``TimedH11Protocol`` bound to ``read_timeout`` seconds, for ``uvicorn.Config``."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"read_timeout": read_timeout})

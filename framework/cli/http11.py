"""uvicorn's HTTP/1.1 protocol with a bound on the time a client takes to send its request.

uvicorn closes a connection idle between requests after ``timeout_keep_alive`` seconds, but
nothing bounds the time to send a request: a client that connects and sends nothing, or
sends half a header line and stops (slowloris), or announces a body and trickles it, holds
its connection (a file descriptor and a protocol object) for as long as it likes. Here every
request's head and body must arrive within ``read_timeout`` seconds of the connection
opening or of the request's first byte; otherwise the client gets ``408 Request Timeout``
(when nothing was answered yet) and the connection is closed.

Both clocks, the read timeout and the keep-alive timeout, run on one timer per connection
that is never re-armed per request: a request only notes when its clock started, and the
timer, which fires at least every ``min(read_timeout, timeout_keep_alive)`` seconds, checks
the deadline of the connection's current state when it fires (see ``_tick``).

A response whose length is known (a ``content-length`` header) is written with one
``transport.write`` of its head and body together, one ``send`` system call and one TCP
segment where uvicorn makes two; a streamed response's head is written at once, as uvicorn
does.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn._types import ASGISendEvent, HTTPResponseStartEvent
from uvicorn.protocols.http.flow_control import CLOSE_HEADER
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol, RequestResponseCycle

from framework.logs import event

__all__ = ["DEFAULT_READ_TIMEOUT", "ConnectionClock", "TimedH11Protocol", "protocol_class"]

DEFAULT_READ_TIMEOUT = 10.0
"""Seconds a client gets to send a whole request (head and body)."""

log = logging.getLogger("framework.gateway")

# The client is still sending its request in these states (IDLE: the head is incomplete).
_READING = (h11.IDLE, h11.SEND_BODY)

# What the connection's clock is timing: a request being received (the read timeout), the
# idle time between requests (the keep-alive timeout), or nothing (the app is answering).
_RECEIVING, _IDLE, _ANSWERING = 1, 2, 3


class ConnectionClock:
    """The read and keep-alive timeouts of one connection, on one timer (module docstring).

    A protocol sets ``_state`` and ``_since`` as its connection goes from receiving to
    answering to idle, starts the clock as the connection opens and stops it as it closes,
    and says what a timeout does (``_timed_out``, ``_idle_timed_out``).
    """

    read_timeout: float = DEFAULT_READ_TIMEOUT
    timeout_keep_alive: int  # uvicorn's type; a float works as well
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _timer: asyncio.TimerHandle | None = None
    _state = _RECEIVING
    _since = 0.0  # loop time at which the current state began

    def _start_clock(self) -> None:
        """Start timing the first request, as the connection opens."""
        # The timer fires at least this often, so no deadline set later can be missed.
        self._period = max(min(self.read_timeout, self.timeout_keep_alive), 0.001)
        self._state, self._since = _RECEIVING, self.loop.time()
        self._timer = self.loop.call_at(self._since + self._period, self._tick)

    def _stop_clock(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        """Close the connection if its current state's deadline has passed, else wait again.

        Every deadline is set ``read_timeout`` or ``timeout_keep_alive`` seconds after the
        moment it is set, so it is never earlier than the next tick, which is at most
        ``_period`` away: the tick fires on time without being moved per request.
        """
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        deadline = float("inf")
        if self._state == _RECEIVING:
            deadline = self._since + self.read_timeout
            if now >= deadline:
                self._timed_out()
                return
        elif self._state == _IDLE:
            deadline = self._since + self.timeout_keep_alive
            if now >= deadline:
                self._idle_timed_out()
                return
        self._timer = self.loop.call_at(min(deadline, now + self._period), self._tick)

    def _timed_out(self) -> None:
        """The request did not arrive whole in time: answer 408 if possible, and close."""
        raise NotImplementedError

    def _idle_timed_out(self) -> None:
        """The kept-alive connection sent nothing more in time: close it."""
        self.transport.close()


class TimedH11Protocol(ConnectionClock, H11Protocol):
    """``H11Protocol`` that closes a connection whose request does not arrive in time."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock on the first request as the connection opens."""
        super().connection_made(transport)
        self._start_clock()

    def data_received(self, data: bytes) -> None:
        """Feed h11, then stop the clock once the client has sent its whole request."""
        if self._state != _RECEIVING and self.conn.their_state in _READING:
            # The first byte of a request on a kept-alive connection.
            self._state, self._since = _RECEIVING, self.loop.time()
        super().data_received(data)
        if self._state == _RECEIVING and not self._reading():
            self._state = _ANSWERING

    def handle_events(self) -> None:
        """uvicorn's, with each new request's cycle writing a known-length response at once."""
        super().handle_events()
        cycle = self.cycle
        if cycle is not None and cycle.__class__ is RequestResponseCycle:
            # The cycle's task has not run yet: from its first step on, it sends as _OneWrite.
            cycle.__class__ = _OneWriteCycle

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the clock with the connection."""
        self._stop_clock()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """Hand the connection to the WebSocket protocol, and stop timing it here.

        The WebSocket protocol keeps its own timeouts; a clock left running would keep this
        protocol (and its h11 state) alive, and tick, for as long as the WebSocket is open.
        """
        self._stop_clock()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive timeout kept by ``_tick`` instead of a timer.

        An answer sent before the request's body was read (a 404, a 413) leaves the read
        clock running: the connection is not idle until the client has finished sending.
        """
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            self.handle_events()  # a pipelined request, if the client sent one
        if self._reading():
            if self._state != _RECEIVING:
                self._state, self._since = _RECEIVING, self.loop.time()
        elif self.cycle is not None and not self.cycle.response_complete:
            self._state = _ANSWERING  # a pipelined request, read whole, is being answered
        else:
            self._state, self._since = _IDLE, self.loop.time()

    def _reading(self) -> bool:
        """True while a request is being received: bytes of its head, or its body, pending."""
        their_state = self.conn.their_state
        if their_state is h11.SEND_BODY:
            return True
        # IDLE: a head in progress if h11 holds unparsed bytes of it.
        return their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _idle_timed_out(self) -> None:
        self.timeout_keep_alive_handler()

    def _timed_out(self) -> None:
        peer = self.client[0] if self.client else ""
        event(log, logging.INFO, "http.read_timeout", client=peer, seconds=self.read_timeout)
        cycle = self.cycle  # None, or a kept-alive connection's last request, answered
        if (cycle is None or cycle.response_complete) and self.conn.our_state is h11.IDLE:
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


class _OneWriteCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, writing a known-length response's head with its body.

    The ``http.response.start`` of a response with a ``content-length`` header is held until
    the first ``http.response.body``, and both go out in one ``transport.write``. Anything
    else (a streamed response, a message out of order) takes uvicorn's own path, the held
    head first, so its errors and its order stay uvicorn's.
    """

    # A held start message and its headers, listed (the message's may be a one-pass iterable).
    _held: tuple[HTTPResponseStartEvent, list[tuple[bytes, bytes]]] | None = None

    async def send(self, message: ASGISendEvent) -> None:
        """Send ``message``; see the class docstring."""
        held = self._held
        if held is None:
            if (
                message["type"] == "http.response.start"
                and not self.response_started
                and not self.disconnected
                and not self.access_log
            ):
                headers = list(message.get("headers", ()))
                for key, _ in headers:  # ASGI header names are lowercase
                    if key == b"content-length":
                        self._held = message, headers
                        return
                message = {**message, "headers": headers}
            await super().send(message)
            return
        self._held = None
        if message["type"] != "http.response.body" or self.disconnected:
            await super().send({**held[0], "headers": held[1]})
            await super().send(message)
            return
        if self.flow.write_paused:
            await self.flow.drain()
            if self.disconnected:
                return
        # uvicorn's two branches for a start and a body message (h11_impl.py), one write.
        self.response_started = True
        self.waiting_for_100_continue = False
        status = held[0]["status"]
        headers = self.default_headers + held[1]
        if CLOSE_HEADER in self.scope["headers"] and CLOSE_HEADER not in headers:
            headers.append(CLOSE_HEADER)
        conn = self.conn
        reason = STATUS_PHRASES[status]
        out = [conn.send(h11.Response(status_code=status, headers=headers, reason=reason))]
        body = b"" if self.scope["method"] == "HEAD" else message.get("body", b"")
        out.append(conn.send(h11.Data(data=body)))
        if not message.get("more_body", False):
            self.response_complete = True
            self.message_event.set()
            out.append(conn.send(h11.EndOfMessage()))
        self.transport.write(b"".join(out))
        if self.response_complete:
            if conn.our_state is h11.MUST_CLOSE or not self.keep_alive:
                conn.send(h11.ConnectionClosed())
                self.transport.close()
            self.on_response()

    async def send_500_response(self) -> None:
        """A head held but never written is dropped: the client gets the 500 instead."""
        self._held = None
        await super().send_500_response()


def protocol_class(read_timeout: float) -> type[TimedH11Protocol]:
    """Return ``TimedH11Protocol`` bound to ``read_timeout`` seconds, for ``uvicorn.Config``."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"read_timeout": read_timeout})

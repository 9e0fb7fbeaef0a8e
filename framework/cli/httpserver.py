"""``framework run``'s HTTP/1.1 protocol: plain requests parsed here, anything else by h11.

uvicorn's h11 protocol spent about 40% of a gateway request's CPU in h11's pure-Python state
machine, validators and buffers, and in uvicorn's glue around them. ``HTTPProtocol`` parses the
requests nearly every client sends itself, with a few ``bytes`` operations and one regular
expression per header line: an HTTP/1.1 request whose target is a path, whose head is well
formed and carries a ``Host``, and whose body, if any, has a ``Content-Length``. The first
request that is anything else (chunked or HTTP/1.0, ``Expect``, an ``Upgrade`` to WebSocket, a
head this parser refuses or one larger than h11 allows) is handed, with the rest of the
connection, to ``TimedH11Protocol`` (``http11.py``), at a moment when no answer is pending: h11
then answers it exactly as before, a 400 for a malformed head included. A connection changes
protocol at most once, and only between requests.

The rest follows uvicorn's httptools protocol (``uvicorn/protocols/http/httptools_impl.py``):
one task per request, the body handed to ``receive`` as it arrives, pipelined requests answered
in order, responses with ``Content-Length`` or chunked, ``HEAD``, graceful shutdown, flow
control. A known-length response leaves in one ``transport.write`` of head and body, and the
read and keep-alive timeouts run on one timer per connection, as in ``http11.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from typing import Any
from urllib.parse import unquote

from uvicorn._types import ASGI3Application, ASGIReceiveEvent, ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl, service_unavailable
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

from framework.cli.http11 import (
    _ANSWERING,
    _IDLE,
    _RECEIVING,
    ConnectionClock,
    TimedH11Protocol,
)
from framework.cli.http11 import protocol_class as h11_protocol_class
from framework.logs import event

__all__ = ["HTTPProtocol", "protocol_class"]

log = logging.getLogger("framework.gateway")

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# A header line: a token, a colon, the value between optional whitespace. Values are visible
# ASCII, spaces, tabs and obs-text (RFC 9110 section 5.5); anything else goes to h11.
_HEADER = re.compile(rb"(" + _TOKEN + rb"):([\t\x20-\x7e\x80-\xff]*)")
_METHOD = re.compile(_TOKEN)
_TARGET = re.compile(rb"/[\x21-\x7e]*")
# Request headers this parser leaves to h11, or reads.
_TO_H11 = frozenset((b"transfer-encoding", b"upgrade", b"expect"))
# Response header checks, as uvicorn's httptools protocol makes them.
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS_LINES = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, phrase) for status, phrase in STATUS_PHRASES.items()
}
_DEFAULT_MAX_HEAD = 16 * 1024  # h11's default largest incomplete event


class HTTPProtocol(ConnectionClock, asyncio.Protocol):
    """An HTTP/1.1 server connection for uvicorn: see the module docstring."""

    fallback: type[TimedH11Protocol] = TimedH11Protocol

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path = config.root_path
        self.raw_root = config.root_path.encode("ascii")
        self.asgi_version = config.asgi_version
        self.limit_concurrency = config.limit_concurrency
        self.max_head = config.h11_max_incomplete_event_size or _DEFAULT_MAX_HEAD
        self.reset_contextvars = config.reset_contextvars
        self.timeout_keep_alive = config.timeout_keep_alive
        self.app_state = app_state
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.buffer = b""  # received bytes not parsed yet
        self.cycle: _Cycle | None = None
        self.body_left = 0  # bytes of the current request's body still to come

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Register the connection and start the clock on its first request."""
        self.connections.add(self)  # type: ignore[arg-type]  # uvicorn's set of its own protocols
        self.transport = transport
        self.flow = FlowControl(transport)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        self._start_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the request in progress that its client is gone."""
        self.connections.discard(self)
        self._stop_clock()
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()
        if self.flow is not None:
            self.flow.resume_writing()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        """Half-closed by the client: answer what it sent, as uvicorn does."""

    def data_received(self, data: bytes) -> None:
        """Feed the body of the request in progress, or parse the next request's head."""
        if self.body_left:
            data = self._feed_body(data)
            if not data:
                return
        if self._state == _IDLE:
            self._state, self._since = _RECEIVING, self.loop.time()  # a new request's first byte
        self.buffer = self.buffer + data if self.buffer else data
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self._next_request()
        elif len(self.buffer) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()  # pipelined requests wait for the answer in progress

    def pause_writing(self) -> None:
        """The transport's buffer is full: responses wait in ``send``."""
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        """The transport's buffer drained."""
        self.flow.resume_writing()

    # uvicorn's server

    def shutdown(self) -> None:
        """Close now when idle, else after the answer in progress."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()
        else:
            cycle.keep_alive = False

    # Parsing

    def _next_request(self) -> None:
        """Start the request at the head of the buffer, if it is whole; hand odd ones to h11."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > self.max_head or b"\n\n" in buffer or b"\n\r\n" in buffer:
                # Too big for h11, which refuses it as it always did, or a head ended with
                # bare line feeds, which h11 reads.
                self._to_h11()
            return
        head = buffer[:end].split(b"\r\n")
        request_line = head[0].split(b" ")
        if (
            len(request_line) != 3
            or request_line[2] != b"HTTP/1.1"
            or _METHOD.fullmatch(request_line[0]) is None
            or _TARGET.fullmatch(request_line[1]) is None
        ):
            self._to_h11()
            return
        headers = []
        length = b""
        host = False
        keep_alive = True
        for line in head[1:]:
            match = _HEADER.fullmatch(line)
            if match is None:
                self._to_h11()
                return
            name, value = match.groups()
            name = name.lower()
            value = value.strip(b" \t")
            if name == b"content-length":
                if length or not value.isdigit():
                    self._to_h11()
                    return
                length = value
            elif name == b"host":
                if host:
                    self._to_h11()
                    return
                host = True
            elif name == b"connection":
                keep_alive = b"close" not in [t.strip() for t in value.lower().split(b",")]
            elif name in _TO_H11:
                self._to_h11()
                return
            headers.append((name, value))
        if not host:
            self._to_h11()
            return
        self.buffer = buffer[end + 4 :]
        method = request_line[0].decode("ascii")
        raw_path, _, query = request_line[1].partition(b"?")
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        scope = {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method,
            "root_path": self.root_path,
            "path": self.root_path + path if self.root_path else path,
            "raw_path": self.raw_root + raw_path,
            "query_string": query,
            "headers": headers,
            "state": self.app_state.copy(),
        }
        app: ASGI3Application = self.app
        if self.limit_concurrency is not None and (
            len(self.connections) >= self.limit_concurrency
            or len(self.tasks) >= self.limit_concurrency
        ):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        self.cycle = cycle = _Cycle(self, scope, keep_alive)
        self.body_left = int(length) if length else 0
        if self.body_left:
            rest = self.buffer
            self.buffer = b""
            rest = self._feed_body(rest)
            self.buffer = rest
        else:
            cycle.more_body = False
            cycle.message_event.set()
            self._state = _ANSWERING
        if self.reset_contextvars:
            task = self.loop.create_task(cycle.run_asgi(app), context=contextvars.Context())
        else:
            task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _feed_body(self, data: bytes) -> bytes:
        """Give the request in progress its body's bytes from ``data``; return what follows."""
        cycle = self.cycle
        assert cycle is not None
        take = self.body_left
        chunk, rest = (data, b"") if len(data) <= take else (data[:take], data[take:])
        self.body_left = take - len(chunk)
        if not cycle.response_complete:  # an answer given early drops the rest of the body
            cycle.body += chunk
            if len(cycle.body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
        if not self.body_left:
            cycle.more_body = False
            if self._state == _RECEIVING:
                self._state = _ANSWERING
        cycle.message_event.set()
        if not self.body_left and cycle.response_complete:
            self._answered()  # the early answer's connection is idle only now
        return rest

    def _to_h11(self) -> None:
        """Hand the connection, with the bytes it has sent, to h11 for good (no answer pending)."""
        self._stop_clock()
        self.connections.discard(self)
        self.flow.resume_reading()
        protocol = self.fallback(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        buffer, self.buffer = self.buffer, b""
        protocol.data_received(buffer)

    # The answer

    def _answered(self) -> None:
        """The answer is out (and the request's body read): start the next request, or idle."""
        if self.transport.is_closing() or self.body_left:
            return
        self.flow.resume_reading()
        if self.buffer:
            self._state, self._since = _RECEIVING, self.loop.time()
            self._next_request()
        else:
            self._state, self._since = _IDLE, self.loop.time()

    def _timed_out(self) -> None:
        peer = self.client[0] if self.client else ""
        event(log, logging.INFO, "http.read_timeout", client=peer, seconds=self.read_timeout)
        cycle = self.cycle  # None, or a kept-alive connection's last request, answered
        if cycle is None or cycle.response_complete:
            head = [_STATUS_LINES[408]]
            head += [b"%s: %s\r\n" % pair for pair in self.server_state.default_headers]
            head.append(b"connection: close\r\ncontent-length: 0\r\n\r\n")
            self.transport.write(b"".join(head))
        self.transport.close()


class _Cycle:
    """One request and its answer: the ASGI ``receive`` and ``send`` of uvicorn's protocols."""

    __slots__ = (
        "body",
        "chunked",
        "disconnected",
        "held",
        "keep_alive",
        "left",
        "message_event",
        "more_body",
        "protocol",
        "response_complete",
        "response_started",
        "scope",
        "transport",
    )

    def __init__(self, protocol: HTTPProtocol, scope: dict[str, Any], keep_alive: bool) -> None:
        self.protocol = protocol
        self.transport = protocol.transport
        self.scope = scope
        self.keep_alive = keep_alive
        self.message_event = asyncio.Event()
        self.disconnected = False
        self.body = b""
        self.more_body = True
        self.response_started = False
        self.response_complete = False
        self.chunked = False
        self.left = 0  # bytes of a known-length body still to send
        self.held = b""  # a known-length response's head, written with its first body bytes

    async def run_asgi(self, app: ASGI3Application) -> None:
        """Run the app for this request; answer 500 or close when it fails, as uvicorn does."""
        logger = self.protocol.logger
        try:
            result = await app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value, arg-type]
        except BaseException as exc:
            logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started or self.held:
                await self._send_500()
            else:
                self.transport.close()
        else:
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                logger.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                logger.error("ASGI callable returned without completing response.")
                self.transport.close()

    async def _send_500(self) -> None:
        self.response_started = False
        self.held = b""
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"21"),
                    (b"connection", b"close"),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    async def receive(self) -> ASGIReceiveEvent:
        """The request's body as it arrives, then ``http.disconnect`` once answered or gone."""
        if not self.disconnected and not self.response_complete:
            self.protocol.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body, self.body = self.body, b""
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: ASGISendEvent) -> None:
        """Write the answer: a known-length head waits for its body, to leave in one write."""
        flow = self.protocol.flow
        if flow.write_paused and not self.disconnected:
            await flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{kind}'."
                )
            self._start(message)  # type: ignore[arg-type]
            return
        if self.response_complete:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}' sent, after response already completed."
            )
        if kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        body: bytes = message.get("body", b"")  # type: ignore[assignment]
        more_body = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            out = b""
            self.left = 0
        elif self.chunked:
            out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more_body:
                out += b"0\r\n\r\n"
        else:
            if len(body) > self.left:
                raise RuntimeError("Response content longer than Content-Length")
            self.left -= len(body)
            out = body
        if self.held:
            out = self.held + out
            self.held = b""
        if out:
            self.transport.write(out)
        if not more_body:
            if self.left:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            protocol = self.protocol
            protocol.server_state.total_requests += 1
            if not self.keep_alive:
                self.transport.close()
            elif protocol.cycle is self:
                protocol._answered()

    def _start(self, message: dict[str, Any]) -> None:
        self.response_started = True
        status = message["status"]
        head = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status]
        length: int | None = None
        close = False
        head += [b"%s: %s\r\n" % pair for pair in self.protocol.server_state.default_headers]
        for name, value in message.get("headers", ()):
            if _BAD_NAME.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if _BAD_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = name.lower()
            if name == b"content-length" and length is None and not self.chunked:
                length = int(value)
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.chunked = True
                length = None
            elif name == b"connection" and b"close" in [
                t.strip() for t in value.lower().split(b",")
            ]:
                self.keep_alive = False
                close = True
            head.append(b"%s: %s\r\n" % (name, value))
        if not self.keep_alive and not close:
            head.append(b"connection: close\r\n")
        if (
            length is None
            and not self.chunked
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked = True
            head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"\r\n")
        if length is not None:
            self.left = length
            self.held = b"".join(head)
        else:
            self.transport.write(b"".join(head))


def protocol_class(read_timeout: float) -> type[HTTPProtocol]:
    """Return ``HTTPProtocol`` bound to ``read_timeout`` seconds, for ``uvicorn.Config``.

    The h11 protocol it hands odd requests to is bound to the same read timeout.
    """
    fallback = h11_protocol_class(read_timeout)
    return type(
        "HTTPProtocol", (HTTPProtocol,), {"read_timeout": read_timeout, "fallback": fallback}
    )

"""A TCP proxy on loopback in front of the broker: connection losses one test owns.

``rabbitmqctl close_connection`` acts on the shared broker; cutting the proxy instead drops
only the connections of the backend under test, at once, and ``refuse`` keeps the "broker"
down for as long as a test needs. Everything else is the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

from framework.backends.base import Backend
from framework.exceptions import BackendUnavailableError
from framework.messages import Outgoing

__all__ = ["Proxy", "SilentServer", "proxy_to", "silent_server"]


class Proxy:
    """Forwards every connection on a free loopback port to ``(host, port)``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.accepting = True
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> None:
        """Listen (on ``port``, or a free one the first time)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port or self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.accepting = True

    def url(self, broker: str) -> str:
        """Return ``broker`` with its host and port replaced by the proxy's."""
        parts = urlsplit(broker)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._drop(pair)

    def _drop(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        if pair in self._pairs:
            self._pairs.discard(pair)
            for writer in pair:
                writer.transport.abort()

    def cut(self) -> int:
        """Reset every proxied connection now (both sides); return how many were cut."""
        pairs = list(self._pairs)
        for pair in pairs:
            self._drop(pair)
        return len(pairs)

    async def refuse(self) -> None:
        """Stop listening: new connections are refused until ``start`` again."""
        self.accepting = False
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def close(self) -> None:
        """Cut everything and stop listening."""
        self.cut()
        await self.refuse()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def proxy_to(broker: str) -> AsyncIterator[Proxy]:
    """A running proxy in front of ``broker``'s host and port, closed on exit."""
    parts = urlsplit(broker)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


class SilentServer:
    """Accepts TCP connections and never says a byte: a stalled broker, or a silent port."""

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Close the accepted connections and stop listening."""
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[SilentServer]:
    """A running ``SilentServer``, closed on exit."""
    server = SilentServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def send_once_reconnected(backend: Backend, queue: str, body: bytes = b"after") -> None:
    """Send ``body`` to ``queue`` as soon as ``backend`` has reconnected (within 5 s)."""
    for _ in range(100):
        try:
            await backend.send(queue, Outgoing(body=body))
            return
        except BackendUnavailableError:
            await asyncio.sleep(0.05)
    raise AssertionError("the backend did not reconnect")

"""Connection requests between processes on RabbitMQ: one exclusive queue per process.

Each runtime on ``amqp://`` that serves (or pushes to) WebSocket APIs declares
``framework.ws.<process>``: exclusive and auto-deleted, so the broker deletes it when the
process's connection closes, ``kill -9`` included. A connection id names its owner's
process, so a push is one publish to the default exchange with the owner's queue as routing
key, ``mandatory`` and confirmed: when that queue no longer exists the broker returns the
message, and the sender raises ``ConnectionGoneError`` at once. The owner answers each
request on the sender's own queue (``reply_to``, ``correlation_id``); a sender that gets no
answer within ``timeout`` seconds raises ``ConnectionGoneError`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import DeliveryError, PublishError

from framework.exceptions import ConnectionGoneError
from framework.websocket import Reply, Request, Serve, answer, reply_within

__all__ = ["ConnectionRelay", "relay_queue_name"]

log = logging.getLogger("framework.backends.rabbitmq")

DEFAULT_TIMEOUT = 5.0


def relay_queue_name(process: str) -> str:
    """The queue of process ``process``'s connection requests."""
    return f"framework.ws.{process}"


class ConnectionRelay:
    """The delivery path of ``app.connections`` between processes on one broker.

    Args:
        connection: The backend's robust connection.
        process: This process's id.
        serve: Answers the requests sent here.
        timeout: Seconds a request waits for its answer.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        process: str,
        serve: Serve,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.connection = connection
        self.process = process
        self.queue_name = relay_queue_name(process)
        self.serve = serve
        self.timeout = timeout
        self._publisher: AbstractRobustChannel | None = None
        self._consumer: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Declare this process's queue and start answering."""
        self._publisher = await self.connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._consumer = await self.connection.channel()
        assert self._consumer is not None
        self._queue = await self._consumer.declare_queue(
            self.queue_name, exclusive=True, auto_delete=True, durable=False
        )
        await self._queue.consume(self._received, no_ack=True)

    async def aclose(self) -> None:
        """Stop answering; the broker deletes the queue with the channel."""
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionGoneError("this process is stopping"))
        self._waiting.clear()
        for channel in (self._consumer, self._publisher):
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()
        self._consumer = self._publisher = None

    async def call(self, owner: str, request: Request) -> Reply:
        """Send ``request`` to process ``owner`` and return its answer.

        Raises:
            ConnectionGoneError: If ``owner``'s queue is gone (the process stopped or died)
                or it did not answer within ``timeout`` seconds.
        """
        if self._publisher is None:
            raise ConnectionGoneError("the connection relay is not open")
        correlation = f"{self.process}-{next(self._ids)}"
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        connection_id = request.get("id")
        try:
            try:
                await self._publisher.default_exchange.publish(
                    aio_pika.Message(
                        json.dumps(dict(request)).encode(),
                        content_type="application/json",
                        correlation_id=correlation,
                        reply_to=self.queue_name,
                        expiration=self.timeout,
                    ),
                    routing_key=relay_queue_name(owner),
                    mandatory=True,
                )
            except (DeliveryError, PublishError):
                raise ConnectionGoneError(
                    f"connection {connection_id!r} is gone: the process holding it has stopped"
                ) from None
            return await reply_within(future, connection_id, self.timeout)
        finally:
            self._waiting.pop(correlation, None)

    async def _received(self, message: AbstractIncomingMessage) -> None:
        try:
            payload: Any = json.loads(message.body)
        except ValueError:
            return
        correlation = message.correlation_id or ""
        if message.reply_to is None:
            future = self._waiting.get(correlation)
            if future is not None and not future.done():
                future.set_result(payload if isinstance(payload, dict) else {})
            return
        # A request: answer it in its own task, so a slow answer holds up no other.
        task = asyncio.create_task(self._answer(payload, message.reply_to, correlation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: Any, reply_to: str, correlation: str) -> None:
        reply = await answer(self.serve, request)
        publisher = self._publisher
        if publisher is None:
            return
        with contextlib.suppress(DeliveryError, PublishError):  # the asker has gone meanwhile
            await publisher.default_exchange.publish(
                aio_pika.Message(
                    json.dumps(reply).encode(),
                    content_type="application/json",
                    correlation_id=correlation,
                ),
                routing_key=reply_to,
                mandatory=True,
            )

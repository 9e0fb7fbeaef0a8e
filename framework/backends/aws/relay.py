"""Connection requests between worker processes on AWS: one SQS queue per process.

Each runtime on ``aws://`` that serves (or pushes to) WebSocket APIs creates the standard
queue ``framework-ws-<process>`` (messages kept 60 s) and long-polls it; it deletes the queue
when it stops. A connection id names its owner's process, so a push is one ``SendMessage`` to
the owner's queue, and the owner answers on the sender's queue. When the owner stopped, its
queue is gone: ``ConnectionGoneError`` at once. A process killed with ``kill -9`` cannot delete
its queue: a push to it waits ``timeout`` seconds for an answer, then raises
``ConnectionGoneError``, and the queue is left behind for the operator (it holds nothing
older than a minute). Deployed on Lambda, API Gateway's management API replaces all of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

from botocore.exceptions import ClientError

from framework.exceptions import ConnectionGoneError
from framework.logs import event
from framework.websocket import Reply, Request, Serve, answer, reply_within

__all__ = ["SQSConnectionRelay", "relay_queue_name"]

log = logging.getLogger("framework.backends.aws")

DEFAULT_TIMEOUT = 5.0
POLL_WAIT = 20
_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}


def relay_queue_name(process: str) -> str:
    """The SQS queue of process ``process``'s connection requests."""
    return f"framework-ws-{process}"


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


class SQSConnectionRelay:
    """The delivery path of ``app.connections`` between processes on SQS.

    Args:
        client: The backend's aiobotocore SQS client.
        process: This process's id.
        serve: Answers the requests sent here.
        timeout: Seconds a request waits for its answer.
    """

    def __init__(
        self, client: Any, process: str, serve: Serve, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.client = client
        self.process = process
        self.serve = serve
        self.timeout = timeout
        self.url = ""
        self._urls: dict[str, str] = {}
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self._poller: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Create this process's queue and start answering."""
        created = await self.client.create_queue(
            QueueName=relay_queue_name(self.process),
            Attributes={"MessageRetentionPeriod": "60"},
        )
        self.url = str(created["QueueUrl"])
        self._poller = asyncio.create_task(self._poll())

    async def aclose(self) -> None:
        """Stop answering and delete this process's queue."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionGoneError("this process is stopping"))
        self._waiting.clear()
        if self.url:
            with contextlib.suppress(ClientError):
                await self.client.delete_queue(QueueUrl=self.url)

    async def _owner_url(self, owner: str, connection_id: object) -> str:
        url = self._urls.get(owner)
        if url is not None:
            return url
        try:
            found = await self.client.get_queue_url(QueueName=relay_queue_name(owner))
        except ClientError as exc:
            if _missing(exc):
                raise ConnectionGoneError(
                    f"connection {connection_id!r} is gone: the process holding it has stopped"
                ) from None
            raise
        url = self._urls[owner] = str(found["QueueUrl"])
        return url

    async def call(self, owner: str, request: Request) -> Reply:
        """Send ``request`` to process ``owner`` and return its answer.

        Raises:
            ConnectionGoneError: If ``owner``'s queue is gone (the process stopped) or it
                did not answer within ``timeout`` seconds (killed).
        """
        connection_id = request.get("id")
        url = await self._owner_url(owner, connection_id)
        correlation = f"{self.process}-{next(self._ids)}"
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        body = {"request": dict(request), "reply_to": self.url, "correlation": correlation}
        try:
            try:
                await self.client.send_message(QueueUrl=url, MessageBody=json.dumps(body))
            except ClientError as exc:
                if _missing(exc):
                    self._urls.pop(owner, None)
                    raise ConnectionGoneError(
                        f"connection {connection_id!r} is gone: the process holding it has stopped"
                    ) from None
                raise
            return await reply_within(future, connection_id, self.timeout)
        finally:
            self._waiting.pop(correlation, None)

    async def _poll(self) -> None:
        while True:
            try:
                got = await self.client.receive_message(
                    QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=POLL_WAIT
                )
            except ClientError as exc:
                event(log, logging.WARNING, "websocket.relay_failed", error=str(exc))
                await asyncio.sleep(1)
                continue
            messages = got.get("Messages", [])
            if not messages:
                continue
            await self.client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                ],
            )
            for message in messages:
                self._received(message.get("Body", ""))

    def _received(self, raw: str) -> None:
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        correlation = str(payload.get("correlation", ""))
        if "reply" in payload:
            future = self._waiting.get(correlation)
            if future is not None and not future.done():
                reply = payload["reply"]
                future.set_result(reply if isinstance(reply, dict) else {})
            return
        task = asyncio.create_task(
            self._answer(payload.get("request"), str(payload.get("reply_to", "")), correlation)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: Any, reply_to: str, correlation: str) -> None:
        reply = await answer(self.serve, request)
        if not reply_to:
            return
        with contextlib.suppress(ClientError):  # the asker has gone meanwhile
            await self.client.send_message(
                QueueUrl=reply_to,
                MessageBody=json.dumps({"reply": reply, "correlation": correlation}),
            )

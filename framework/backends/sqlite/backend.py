"""``sqlite:///PATH``: the backend primitives on one SQLite file; see docs/backends/sqlite.md."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Self, TypeVar

from framework.clock import Clock, SystemClock
from framework.logs import event
from framework.messages import DeadLetterReason, Delivery, Outgoing, OutgoingMail, QueueStats
from framework.registry import QueueSpec, SubscriptionSpec, TopicSpec
from framework.websocket import Serve

from .calls import Calls
from .relay import RelayTables, SQLiteConnectionRelay
from .settings import SQLiteSettings
from .store import Store
from .wakeup import Hub, Watcher

__all__ = ["SQLiteBackend"]

log = logging.getLogger("framework.backends.sqlite")

_T = TypeVar("_T")
# How often each process deletes a queue's messages past their retention.
EXPIRE_EVERY = 60.0


class SQLiteBackend:
    """Queues, topics and dead letters in one SQLite file, shared by the processes that open it.

    Build it with ``from_url("sqlite:///path/to/app.db?synchronous=full")`` (options: see
    ``SQLiteSettings``) and use it as an async context manager: entering opens (and on first use
    creates) the file, leaving makes the messages this process still holds visible again.

    sqlite3 blocks, so every call runs on one thread of the backend's own, with one
    connection; the event loop only awaits it. Calls made while the thread is busy share one
    transaction when it comes free (``calls.py``).
    """

    def __init__(self, settings: SQLiteSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.store = Store(settings)
        self.hub = Hub()
        self.outbox: list[OutgoingMail] = []
        self.created = False
        self._calls: Calls | None = None
        self._watcher: Watcher | None = None
        self._held: dict[str, str] = {}  # receipt -> queue, leases this process holds
        self._expired_at: dict[str, float] = {}

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Build a backend for ``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
        return cls(SQLiteSettings.from_url(url))

    @property
    def path(self) -> str:
        """The database file, as the URL names it."""
        return str(self.settings.path)

    def _now(self) -> float:
        return self.clock.wall().timestamp()

    def _submit(self, fn: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
        if self._calls is None:
            raise RuntimeError("SQLiteBackend is not open: use 'async with backend:'")
        return self._calls.submit(fn, *args)

    async def _call(self, fn: Callable[..., _T], *args: object) -> _T:
        return await self._submit(fn, *args)

    # --- opening ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        calls = Calls(self.store.run_batch)
        try:
            self.created = await calls.alone(self.store.open)
        except BaseException:
            await calls.close(self.store.close)
            raise
        self._calls = calls
        self.store.lock.on_timeout = calls.fail_waiting
        loop = asyncio.get_running_loop()

        def changed(queues: list[str]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the watcher looked
                loop.call_soon_threadsafe(self.hub.notify_many, queues)

        self._watcher = Watcher(
            self.settings.path, self.store.written, changed, poll_max=self.settings.poll_max
        )
        self.hub.on_waiting = self._watcher.activate
        self._watcher.start()
        event(
            log,
            logging.INFO,
            "backend.opened",
            backend="sqlite",
            path=str(self.settings.path.resolve()),
            created=self.created,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        calls = self._calls
        if calls is None:
            return
        watcher, self._watcher = self._watcher, None
        try:
            if self._held:
                held, self._held = list(self._held), {}
                released = await self._call(self.store.release_all, held, self._now())
                if released:
                    event(log, logging.INFO, "backend.released", backend="sqlite", count=released)
        finally:
            self._calls = None
            if watcher is not None:
                await asyncio.to_thread(watcher.stop)
            await calls.close(self.store.close)
            event(
                log,
                logging.INFO,
                "backend.closed",
                backend="sqlite",
                calls=calls.calls,
                batches=calls.batches,
                lock_waits=self.store.lock.waits,
            )

    # --- queues ----------------------------------------------------------------------------

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue in the file, or update its attributes (its messages stay)."""
        await self._call(self.store.declare_queue, spec)

    async def send(self, queue: str, message: Outgoing) -> str:
        """Store ``message``; return once it is committed to the file.

        A FIFO duplicate inside the five-minute window (kept in the file, for every process)
        is accepted and dropped, and the first message's id is returned.

        Raises:
            UnknownQueueError: If the queue does not exist in the file.
            BackendUnavailableError: If the file cannot be written (read-only, disk full).
        """
        message_id = await self._call(self.store.send, queue, message, self._now())
        self.hub.notify(queue)
        return message_id

    async def send_batch(self, queue: str, messages: Sequence[Outgoing]) -> list[str]:
        """Store ``messages`` in order in one transaction; return once it is committed.

        One commit for the batch instead of one per message; FIFO duplicates are dropped as
        by ``send``. Nothing of the batch is stored
        if the transaction fails.

        Raises:
            UnknownQueueError: If the queue does not exist in the file.
            BackendUnavailableError: If the file cannot be written (read-only, disk full).
        """
        ids = await self._call(self.store.send_batch, queue, messages, self._now())
        self.hub.notify(queue)
        return ids

    async def receive(self, queue: str, *, limit: int, wait: float) -> Sequence[Delivery]:
        """Lease up to ``limit`` receivable messages, waiting up to ``wait`` seconds for one.

        Raises:
            UnknownQueueError: If the queue does not exist in the file.
        """
        end = time.monotonic() + wait
        while True:
            generation = self.hub.generation(queue)
            now = self._now()
            if now - self._expired_at.get(queue, 0.0) >= EXPIRE_EVERY:
                self._expired_at[queue] = now
                await self._call(self.store.expire, queue, now)
            deliveries, next_at = await self._claim(queue, limit, now)
            if deliveries:
                return deliveries
            remaining = end - time.monotonic()
            if remaining <= 0:
                return []
            if next_at is not None:
                remaining = min(remaining, max(next_at - self._now(), 0.0) + 0.001)
            await self.hub.wait(queue, generation, seconds=remaining)

    async def _claim(
        self, queue: str, limit: int, now: float
    ) -> tuple[list[Delivery], float | None]:
        token = uuid.uuid4().hex[:16]
        future = self._submit(self.store.claim, queue, limit, now, token)
        try:
            deliveries, next_at = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The claim may still commit on the thread: give its leases back instead of leaving
            # them to time out, so a stopping worker does not hide messages for a whole timeout.
            future.add_done_callback(self._give_back)
            raise
        for delivery in deliveries:
            self._held[delivery.receipt] = queue
        return deliveries, next_at

    def _give_back(self, future: asyncio.Future[tuple[list[Delivery], float | None]]) -> None:
        if future.cancelled() or future.exception() is not None or self._calls is None:
            return
        receipts = [d.receipt for d in future.result()[0]]
        if receipts:
            with contextlib.suppress(RuntimeError):  # closing: the leases time out instead
                self._calls.submit(self.store.release_all, receipts, self._now())

    async def ack(self, delivery: Delivery) -> None:
        """Delete the delivered message (a no-op for a stale receipt)."""
        self._held.pop(delivery.receipt, None)
        acked = await self._call(self.store.ack, delivery.receipt, self._now())
        if acked and delivery.group_id is not None:
            self.hub.notify(delivery.queue)  # the group's next message is receivable now

    async def release(self, delivery: Delivery, *, delay: float) -> None:
        """Make the message visible again after ``delay`` seconds (its deadline in the file)."""
        self._held.pop(delivery.receipt, None)
        await self._call(self.store.change_visibility, delivery.receipt, self._now(), delay)
        if delay <= 0:
            self.hub.notify(delivery.queue)

    async def extend(self, delivery: Delivery, *, seconds: float) -> None:
        """Keep the message invisible for ``seconds`` from now."""
        # As at receive, the lease outlasts the handler's new deadline by ``lease_grace``.
        lease = seconds + self.settings.lease_grace if seconds > 0 else seconds
        await self._call(self.store.change_visibility, delivery.receipt, self._now(), lease)
        if seconds <= 0:
            self._held.pop(delivery.receipt, None)
            self.hub.notify(delivery.queue)

    async def dead_letter(self, delivery: Delivery, *, reason: DeadLetterReason) -> None:
        """Move the message to its dead-letter queue in one transaction, with ``reason``.

        Raises:
            UnknownQueueError: If the queue has no dead-letter queue.
        """
        self._held.pop(delivery.receipt, None)
        dlq = await self._call(self.store.dead_letter, delivery, reason, self._now())
        if dlq is not None:
            self.hub.notify(dlq)
            if delivery.group_id is not None:
                self.hub.notify(delivery.queue)  # the group's next message is receivable now

    async def stats(self, queue: str) -> QueueStats:
        """Return depth, in flight, delayed and the dead-letter queue's size.

        Raises:
            UnknownQueueError: If the queue does not exist in the file.
        """
        return await self._call(self.store.stats, queue, self._now())

    async def has_receivable(self, queue: str) -> bool:
        """True if a receive on ``queue`` now would return a message (for ``TestApp.drain``)."""
        return await self._call(self.store.has_receivable, queue, self._now())

    async def purge(self, queue: str) -> int:
        """Delete every message of the queue, in flight or not; return how many."""
        return await self._call(self.store.purge, queue)

    async def queues(self) -> Sequence[str]:
        """Return the names of every queue in the file, sorted."""
        return await self._call(self.store.queues)

    async def missing(
        self,
        queues: Sequence[QueueSpec],
        topics: Sequence[TopicSpec],
        subscriptions: Sequence[SubscriptionSpec],
    ) -> list[str]:
        """Return the queues, topics and subscriptions of the lists that the file lacks."""
        return await self._call(self.store.missing, queues, topics, subscriptions)

    # --- topics ----------------------------------------------------------------------------

    async def declare_topic(self, spec: TopicSpec) -> None:
        """Create the topic in the file (idempotent)."""
        await self._call(self.store.declare_topic, spec)

    async def subscribe(self, subscription: SubscriptionSpec) -> None:
        """Attach the subscription's queue to its topic, with its filter policy, in the file.

        Raises:
            UnknownTopicError: If the topic does not exist.
        """
        await self._call(self.store.subscribe, subscription)

    async def publish(self, topic: str, message: Outgoing) -> str:
        """Copy ``message`` to every matching subscription queue, in one transaction.

        Raises:
            UnknownTopicError: If the topic does not exist in the file.
        """
        message_id, targets = await self._call(self.store.publish, topic, message, self._now())
        self.hub.notify_many(targets)
        return message_id

    # --- WebSocket connections ------------------------------------------------------------

    async def connection_relay(self, process: str, serve: Serve) -> SQLiteConnectionRelay:
        """Start answering connection requests for ``process`` through the file (``relay.py``)."""
        relay = SQLiteConnectionRelay(
            self._call, RelayTables(self.store), self.hub, self._now, process, serve
        )
        await relay.open()
        return relay

    # --- mail ------------------------------------------------------------------------------

    async def send_mail(self, mail: OutgoingMail) -> str:
        """Keep the mail in the file's ``outbox`` table (and ``outbox``): nothing is sent out.

        Like ``memory://``, ``sqlite://`` has no mail transport of its own: configure an SMTP
        relay (``App(mail_relay=...)`` or ``FRAMEWORK_MAIL_RELAY``) to deliver mail.
        """
        kept = await self._call(self.store.store_mail, mail, self._now())
        self.outbox.append(mail)
        event(
            log,
            logging.INFO,
            "mail.captured",
            message_id=mail.message_id,
            recipients=len(mail.recipients),
            outbox=kept,
            path=self.path,
        )
        return mail.message_id

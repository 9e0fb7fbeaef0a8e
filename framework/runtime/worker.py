"""The receive loop of one consumer: long-poll, keep ``concurrency`` handlers in flight.

A standard queue runs ``concurrency`` long-lived handler tasks fed from a local inbox, rather
than one task per message: a received batch is leased (its deadlines armed) and put in the
inbox, and one handler task is woken. A handler task works through the inbox without yielding
between messages, and wakes one more handler only if messages are left when it starts one, so a
batch of fast handlers costs one wake-up, while slow handlers still spread over every task. FIFO
queues keep one task per message group, which holds the group's order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque

import anyio
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint

from framework.backends.base import Backend
from framework.exceptions import BackendUnavailableError
from framework.logs import event
from framework.messages import Delivery
from framework.runtime.dispatch import Dispatcher, HandlerLease

__all__ = ["Worker"]

log = logging.getLogger("framework.runtime")

POLL_WAIT = 20.0


class Worker:
    """Receives from one queue and keeps up to ``concurrency`` deliveries in its handlers.

    ``active`` counts the deliveries handed over and not yet settled (started or waiting in
    the inbox); ``idle`` is set whenever it is zero.
    """

    def __init__(self, backend: Backend, dispatcher: Dispatcher, *, poll_wait: float = POLL_WAIT):
        self.backend = backend
        self.dispatch = dispatcher
        self.queue = dispatcher.queue
        self.poll_wait = poll_wait
        self.active = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self._stopping = anyio.CancelScope()
        self._slot_freed: asyncio.Future[None] | None = None
        self._inbox: deque[HandlerLease] = deque()
        self._sleeping: deque[asyncio.Future[None]] = deque()  # idle handler tasks' wake-ups
        self._waking = False  # a handler task was woken and has not looked at the inbox yet
        self._offering = False  # an offer of the inbox's rest to another handler is scheduled

    def stop_receiving(self) -> None:
        """Stop taking new messages; handlers in flight go on."""
        self._stopping.cancel()

    async def run(self, handlers: TaskGroup) -> None:
        """Receive until stopped, handing deliveries to handler tasks in ``handlers``."""
        concurrency = self.queue.concurrency
        fifo = self.queue.fifo
        if not fifo:
            for _ in range(concurrency):
                handlers.start_soon(self._serve)
        loop = asyncio.get_running_loop()
        with self._stopping:
            while True:
                while self.active >= concurrency:
                    self._slot_freed = loop.create_future()
                    await self._slot_freed
                limit = min(self.queue.batch_size, concurrency - self.active)
                try:
                    deliveries = await self.backend.receive(
                        self.queue.name, limit=limit, wait=self.poll_wait
                    )
                except Exception as exc:  # a broker hiccup: say so, back off, go on
                    event(
                        log,
                        logging.ERROR,
                        "worker.receive_failed",
                        queue=self.queue.name,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    await anyio.sleep(1.0)
                    continue
                if not deliveries:
                    continue
                received_at = self.backend.clock.now()
                self.idle.clear()
                self.active += len(deliveries)
                if not fifo:
                    # Arm every deadline now, before the next receive can arm the backend's
                    # wake-up for the same leases' expiry: at that instant the handler is then
                    # cancelled, and its verdict (retry or dead letter) recorded, before the
                    # expired lease could hand the message to another receive.
                    self._inbox.extend(self.dispatch.lease_all(deliveries, received_at))
                    self._wake_one()
                    continue
                groups: defaultdict[str | None, list[Delivery]] = defaultdict(list)
                for d in deliveries:
                    groups[d.group_id].append(d)
                for batch in groups.values():
                    handlers.start_soon(self._run_group, batch, received_at)
                # The group tasks arm their deadlines when they start (see above for why).
                await checkpoint()

    def _wake_one(self) -> None:
        """Wake one idle handler task, unless one is already on its way."""
        if self._waking:
            return
        while self._sleeping:
            waiter = self._sleeping.popleft()
            if not waiter.done():  # a cancelled handler task leaves a cancelled waiter
                waiter.set_result(None)
                self._waking = True
                return

    def _offer_rest(self) -> None:
        """Hand what is left in the inbox to another handler task, if it is still there then.

        Runs as a loop callback, so only after the current handler task yields: a handler that
        works through the whole batch without suspending costs no second wake-up.
        """
        self._offering = False
        if self._inbox:
            self._wake_one()

    async def _serve(self) -> None:
        """One handler task: take deliveries from the inbox until cancelled at stop."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        inbox = self._inbox
        handle = self.dispatch.handle
        try:
            while True:
                if not inbox:
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._sleeping.append(waiter)
                    await waiter
                    self._waking = False
                    continue
                lease = inbox.popleft()
                if inbox and not self._offering:
                    # If this handler suspends, another one takes the next message meanwhile.
                    self._offering = True
                    loop.call_soon(self._offer_rest)
                try:
                    await handle(lease, task)
                except (
                    Exception
                ) as exc:  # the backend failed while settling: the lease expiry redelivers
                    self._settle_failed(exc)
                finally:
                    # ``_done(1)``, inlined: this runs once per message.
                    self.active -= 1
                    if self._slot_freed is not None or not self.active:
                        self._freed()
        except asyncio.CancelledError:
            await self._release_unstarted()
            raise

    async def _release_unstarted(self) -> None:
        """At a stop past its grace period, give back deliveries no handler has started."""
        with anyio.CancelScope(shield=True):
            while self._inbox:
                lease = self._inbox.popleft()
                self.dispatch.abandon(lease)
                try:
                    await self.backend.release(lease.delivery, delay=0)
                except Exception as exc:
                    self._settle_failed(exc)
                finally:
                    self._done(1)

    async def _run_group(self, batch: list[Delivery], received_at: float) -> None:
        """Handle one FIFO group's messages strictly in order; stop at the first failure."""
        remaining = len(batch)
        try:
            for index, delivery in enumerate(batch):
                ok = await self.dispatch(delivery, received_at)
                remaining -= 1
                self._done(1)
                if not ok:
                    # Later messages of the group must not overtake the failed one.
                    for later in batch[index + 1 :]:
                        await self.backend.release(later, delay=0)
                    break
        except Exception as exc:
            self._settle_failed(exc)
        finally:
            self._done(remaining)

    def _settle_failed(self, exc: Exception) -> None:
        """Log a settle (ack, release, dead letter) the backend failed; the lease expiry
        redelivers the message.

        An unreachable backend is one line naming the error, as ``worker.receive_failed``
        is: its message says it all, and during an outage every message in flight fails
        so (the client library's traceback would repeat for each). Anything else is a bug
        and keeps its traceback.
        """
        if isinstance(exc, BackendUnavailableError):
            event(
                log,
                logging.ERROR,
                "worker.settle_failed",
                queue=self.queue.name,
                error=f"{type(exc).__name__}: {exc}",
            )
        else:
            log.exception("worker.settle_failed", extra={"fields": {"queue": self.queue.name}})

    def _done(self, count: int) -> None:
        if count:
            self.active -= count
            self._freed()

    def _freed(self) -> None:
        """Handlers were freed: wake the receive loop if it waits for one, mark ``idle``."""
        slot_freed = self._slot_freed
        if slot_freed is not None:
            self._slot_freed = None
            if not slot_freed.done():
                slot_freed.set_result(None)
        if self.active == 0:
            self.idle.set()

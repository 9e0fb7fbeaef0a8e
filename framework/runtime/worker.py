"""The receive loop of one consumer: long-poll, keep ``concurrency`` handlers in flight."""

from __future__ import annotations

import logging
from collections import defaultdict

import anyio
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint

from framework.backends.base import Backend, Delivery
from framework.logs import event
from framework.runtime.dispatch import Dispatcher

__all__ = ["Worker"]

log = logging.getLogger("framework.runtime")

POLL_WAIT = 20.0


class Worker:
    """Receives from one queue and dispatches each delivery in its own task."""

    def __init__(self, backend: Backend, dispatcher: Dispatcher, *, poll_wait: float = POLL_WAIT):
        self.backend = backend
        self.dispatch = dispatcher
        self.queue = dispatcher.queue
        self.poll_wait = poll_wait
        self.active = 0
        self._slot_freed = anyio.Event()
        self.idle = anyio.Event()
        self.idle.set()
        self._stopping = anyio.CancelScope()

    def stop_receiving(self) -> None:
        """Stop taking new messages; handlers in flight go on."""
        self._stopping.cancel()

    async def run(self, handlers: TaskGroup) -> None:
        """Receive until stopped, starting handler tasks in ``handlers``."""
        concurrency = self.queue.concurrency
        with self._stopping:
            while True:
                while self.active >= concurrency:
                    self._slot_freed = anyio.Event()
                    await self._slot_freed.wait()
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
                if self.idle.is_set():
                    self.idle = anyio.Event()
                if self.queue.fifo:
                    groups: defaultdict[str | None, list[Delivery]] = defaultdict(list)
                    for d in deliveries:
                        groups[d.group_id].append(d)
                    for batch in groups.values():
                        self.active += len(batch)
                        handlers.start_soon(self._run_group, batch, received_at)
                else:
                    for d in deliveries:
                        self.active += 1
                        handlers.start_soon(self._run_one, d, received_at)
                # Let the new handlers arm their deadlines before the next receive arms its
                # wake-up for the same leases' expiry: at one instant the handler is then cancelled
                # and its verdict (retry or dead letter, with the timeout as the error) recorded
                # before the expired lease could hand the message to another receive.
                await checkpoint()

    async def _run_one(self, delivery: Delivery, received_at: float) -> None:
        try:
            await self.dispatch(delivery, received_at)
        except Exception:  # the backend failed while settling: the lease expiry will redeliver
            log.exception("worker.settle_failed", extra={"fields": {"queue": self.queue.name}})
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
        except Exception:
            log.exception("worker.settle_failed", extra={"fields": {"queue": self.queue.name}})
        finally:
            self._done(remaining)

    def _done(self, count: int) -> None:
        if count:
            self.active -= count
            self._slot_freed.set()
            if self.active == 0:
                self.idle.set()

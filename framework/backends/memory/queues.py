"""One in-memory queue with SQS semantics: leases, delays, receive counts, FIFO groups, dedup.

Every operation is O(log n): visible messages sit in a heap ordered by send sequence, and every
future event (a delay ending, a lease expiring) sits in a timer heap that is invalidated lazily
with a per-message epoch. Nothing polls: waiting receivers are woken by a send or a release, or
by one clock timer set at the earliest deadline that matters to them.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from framework.backends.base import AttributeValue, Delivery, Outgoing, QueueStats
from framework.clock import Clock
from framework.registry import QueueSpec
from framework.semantics.fifo import DeduplicationWindow

__all__ = ["MemoryQueue"]

_VISIBLE, _DELAYED, _LEASED = "visible", "delayed", "leased"


@dataclass(slots=True, eq=False)
class _Record:
    seq: int
    message_id: str
    body: bytes
    attributes: Mapping[str, AttributeValue]
    headers: Mapping[str, str]
    sent_at: datetime
    group_id: str | None
    deduplication_id: str | None
    expires_at: float = float("inf")
    state: str = _VISIBLE
    epoch: int = 0
    receive_count: int = 0
    first_received_at: datetime | None = None
    receipt: str | None = None


@dataclass(slots=True)
class _Group:
    """A FIFO message group: its messages in order, and whether one is out."""

    messages: deque[_Record] = field(default_factory=deque)
    locked: bool = False


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class MemoryQueue:
    """The state of one queue. Not thread-safe: it lives on one event loop."""

    def __init__(self, spec: QueueSpec, clock: Clock) -> None:
        self.spec = spec
        self.clock = clock
        self._seq = itertools.count()
        self._records: dict[str, _Record] = {}
        self._by_receipt: dict[str, _Record] = {}
        # Standard queue: visible records by seq. FIFO: groups whose head is visible, by head seq.
        self._ready: list[tuple[int, _Record]] = []
        self._ready_groups: list[tuple[int, str]] = []
        self._groups: dict[str, _Group] = {}
        self._timers: list[tuple[float, int, int, _Record]] = []
        self._waiters: list[asyncio.Future[None]] = []
        # The earliest clock time a waiting receiver has a timer for: a new deadline before it
        # must wake the waiters so they re-arm, or a short retry delay would wait for a long one.
        self._waiting_until = float("inf")
        self._dedup = DeduplicationWindow() if spec.fifo else None
        self.counts = {_VISIBLE: 0, _DELAYED: 0, _LEASED: 0}

    # --- state transitions ---------------------------------------------------------------

    def _set_state(self, record: _Record, state: str) -> None:
        self.counts[record.state] -= 1
        record.state = state
        self.counts[state] += 1
        record.epoch += 1

    def _make_visible(self, record: _Record) -> None:
        self._set_state(record, _VISIBLE)
        if record.receipt is not None:
            self._by_receipt.pop(record.receipt, None)
            record.receipt = None
        if record.group_id is None:
            heapq.heappush(self._ready, (record.seq, record))
        else:
            group = self._groups[record.group_id]
            group.locked = False
            if group.messages and group.messages[0] is record:
                heapq.heappush(self._ready_groups, (record.seq, record.group_id))
        self._wake()

    def _schedule(self, record: _Record, state: str, when: float) -> None:
        self._set_state(record, state)
        heapq.heappush(self._timers, (when, record.seq, record.epoch, record))
        if when < self._waiting_until:
            self._wake()

    def _tick(self) -> None:
        """Apply every timer that is due: delays end, leases expire."""
        now = self.clock.now()
        while self._timers and self._timers[0][0] <= now:
            _, _, epoch, record = heapq.heappop(self._timers)
            if record.epoch == epoch and record.message_id in self._records:
                self._make_visible(record)

    def _next_timer(self) -> float | None:
        while self._timers:
            _, _, epoch, record = self._timers[0]
            if record.epoch == epoch and record.message_id in self._records:
                return self._timers[0][0]
            heapq.heappop(self._timers)
        return None

    def _wake(self) -> None:
        self._waiting_until = float("inf")
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- primitives ----------------------------------------------------------------------

    def send(self, message: Outgoing) -> str:
        """Store ``message`` and return its id; a FIFO duplicate returns the first one's id."""
        message_id = message.message_id or str(uuid.uuid4())
        if self._dedup is not None:
            first = self._dedup.duplicate_of(
                message.deduplication_id,
                message.body,
                message_id=message_id,
                content_based=self.spec.content_based_deduplication,
                now=self.clock.now(),
            )
            if first is not None:
                return first
        record = _Record(
            seq=next(self._seq),
            message_id=message_id,
            body=message.body,
            attributes=message.attributes,
            headers=message.headers,
            sent_at=message.sent_at or self.clock.wall(),
            group_id=message.group_id if self.spec.fifo else None,
            deduplication_id=message.deduplication_id,
            expires_at=self.clock.now() + self.spec.retention,
            state=_DELAYED,
        )
        self.counts[_DELAYED] += 1
        self._records[record.message_id] = record
        if record.group_id is not None:
            self._groups.setdefault(record.group_id, _Group()).messages.append(record)
        delay = max(message.delay, self.spec.delay)
        if delay > 0:
            self._schedule(record, _DELAYED, self.clock.now() + delay)
        else:
            self._make_visible(record)
        return record.message_id

    def _expired(self, record: _Record) -> bool:
        """Drop a message past the queue's retention period, as SQS does, when it surfaces."""
        if record.expires_at > self.clock.now():
            return False
        self._remove(record)
        return True

    def _take(self, limit: int) -> list[_Record]:
        taken: list[_Record] = []
        while self._ready and len(taken) < limit:
            _, record = heapq.heappop(self._ready)
            if (
                record.state == _VISIBLE
                and record.message_id in self._records
                and not self._expired(record)
            ):
                taken.append(record)
        while self._ready_groups and len(taken) < limit:
            _, group_id = heapq.heappop(self._ready_groups)
            group = self._groups.get(group_id)
            if group is None or group.locked or not group.messages:
                continue
            head = group.messages[0]
            if head.state == _VISIBLE and self._expired(head):
                continue
            if head.state == _VISIBLE:
                # One message per group per receive: the group stays locked until it is settled.
                group.locked = True
                taken.append(head)
        return taken

    def _lease(self, record: _Record) -> Delivery:
        now = self.clock.wall()
        record.receive_count += 1
        if record.first_received_at is None:
            record.first_received_at = now
        record.receipt = uuid.uuid4().hex
        self._by_receipt[record.receipt] = record
        self._schedule(record, _LEASED, self.clock.now() + self.spec.visibility_timeout)
        return Delivery(
            queue=self.spec.name,
            message_id=record.message_id,
            body=record.body,
            attributes=record.attributes,
            headers=record.headers,
            receive_count=record.receive_count,
            sent_at=record.sent_at,
            first_received_at=record.first_received_at,
            receipt=record.receipt,
            group_id=record.group_id,
            deduplication_id=record.deduplication_id,
        )

    async def receive(self, limit: int, wait: float) -> list[Delivery]:
        """Lease up to ``limit`` messages, waiting up to ``wait`` seconds for the first."""
        loop = asyncio.get_running_loop()
        end = self.clock.now() + wait
        while True:
            self._tick()
            taken = self._take(limit)
            if taken:
                return [self._lease(r) for r in taken]
            now = self.clock.now()
            if now >= end:
                return []
            wake_at = end
            next_timer = self._next_timer()
            if next_timer is not None:
                wake_at = min(wake_at, next_timer)
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            self._waiting_until = min(self._waiting_until, wake_at)
            timer = self.clock.call_at(wake_at, functools.partial(_resolve, waiter))
            try:
                await waiter
            finally:
                timer.cancel()

    def _current(self, receipt: str) -> _Record | None:
        record = self._by_receipt.get(receipt)
        if record is None or record.state != _LEASED or record.receipt != receipt:
            return None
        return record

    def delete(self, receipt: str) -> _Record | None:
        """Delete the message leased under ``receipt``; a stale receipt deletes nothing."""
        record = self._current(receipt)
        if record is not None:
            self._remove(record)
        return record

    def _remove(self, record: _Record) -> None:
        self.counts[record.state] -= 1
        del self._records[record.message_id]
        if record.receipt is not None:
            self._by_receipt.pop(record.receipt, None)
        record.epoch += 1
        if record.group_id is not None:
            group = self._groups[record.group_id]
            group.messages.remove(record)  # the head, in practice: O(1)
            group.locked = False
            if not group.messages:
                del self._groups[record.group_id]
            elif group.messages[0].state == _VISIBLE:
                heapq.heappush(self._ready_groups, (group.messages[0].seq, record.group_id))
                self._wake()

    def change_visibility(self, receipt: str, seconds: float) -> bool:
        """Make a leased message visible ``seconds`` from now; False for a stale receipt."""
        record = self._current(receipt)
        if record is None:
            return False
        if seconds <= 0:
            self._make_visible(record)
        else:
            self._schedule(record, _LEASED, self.clock.now() + seconds)
        return True

    def purge(self) -> int:
        """Delete every message, in flight or not, as SQS's PurgeQueue does; return the count."""
        count = len(self._records)
        for record in list(self._records.values()):
            record.epoch += 1
        self._records.clear()
        self._by_receipt.clear()
        self._ready.clear()
        self._ready_groups.clear()
        self._groups.clear()
        self._timers.clear()
        self.counts = {_VISIBLE: 0, _DELAYED: 0, _LEASED: 0}
        return count

    def stats(self) -> QueueStats:
        """Return current counts (after applying due timers)."""
        self._tick()
        return QueueStats(
            name=self.spec.name,
            depth=self.counts[_VISIBLE],
            in_flight=self.counts[_LEASED],
            delayed=self.counts[_DELAYED],
            dead_letter_queue=self.spec.dead_letter,
        )

    def has_receivable(self) -> bool:
        """True if a receive now would return a message.

        Unlike ``depth``, a FIFO message waiting behind its group's head does not count.
        """
        self._tick()
        if not self.spec.fifo:
            return self.counts[_VISIBLE] > 0
        for _, group_id in self._ready_groups:
            group = self._groups.get(group_id)
            if group and not group.locked and group.messages[0].state == _VISIBLE:
                return True
        return False

    def __len__(self) -> int:
        return len(self._records)

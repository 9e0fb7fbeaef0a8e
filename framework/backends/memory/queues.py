"""One in-memory queue with SQS semantics: leases, delays, receive counts, FIFO groups, dedup.

Every operation is O(log n) at worst, and the common ones are O(1):

- Fresh messages wait in a deque in send order; messages visible again (released, expired,
  delayed) wait in a heap by send sequence; a receive takes the lower sequence of the two heads.
- A lease with the queue's own visibility timeout sits in an insertion-ordered dict keyed by
  receipt. Its deadlines only grow, so the earliest is the first entry, and an ack deletes it
  in O(1), leaving nothing behind to clean up later.
- Every other future event (a delay ending, a lease moved by ``change_visibility``) sits in a
  timer heap, invalidated lazily with a per-message epoch and compacted when stale entries
  outnumber live ones.

Nothing polls: waiting receivers are woken by a send or a release, or by one clock timer set at
the earliest deadline that matters to them.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import math
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from framework.clock import Clock
from framework.messages import AttributeValue, Delivery, Outgoing, QueueStats
from framework.registry import QueueSpec
from framework.semantics.fifo import DeduplicationWindow

__all__ = ["MemoryQueue", "new_message_id"]

_VISIBLE, _DELAYED, _LEASED = "visible", "delayed", "leased"

# Message ids keep the UUID4 shape, but only the first one per process costs os.urandom: the
# rest count up from a random prefix (74 random bits), which is unique enough in one process.
_ID_FORMAT = str(uuid.uuid4())[:24] + "%012x"  # %-formatting: half an f-string's cost here
_ids = itertools.count()


def new_message_id() -> str:
    """Return a new message id: unique in this process, in UUID4 form."""
    return _ID_FORMAT % next(_ids)


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
    lease_until: float = 0.0  # for a lease in ``MemoryQueue._leases``


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
        # Receipts only have to be opaque and unique per queue: a counter will do.
        self._receipts = itertools.count(1)
        # Leases with the queue's own timeout, in deadline order (see the module docstring).
        self._leases: dict[str, _Record] = {}
        self._last_lease_until = -math.inf
        # Leases whose deadline is on the timer heap (moved by change_visibility).
        self._moved: dict[str, _Record] = {}
        # Standard queue: fresh records in send order, and records visible again by seq.
        self._fresh: deque[_Record] = deque()
        self._ready: list[tuple[int, _Record]] = []
        # FIFO: groups whose head is visible, by head seq.
        self._ready_groups: list[tuple[int, str]] = []
        self._groups: dict[str, _Group] = {}
        self._timers: list[tuple[float, int, int, _Record]] = []
        self._waiters: list[asyncio.Future[None]] = []
        # The earliest clock time a waiting receiver has a timer for: a new deadline before it
        # must wake the waiters so they re-arm, or a short retry delay would wait for a long one.
        self._waiting_until = float("inf")
        self._dedup = DeduplicationWindow() if spec.fifo else None
        # The wall clock, read at most once a millisecond of the monotonic clock (see ``_wall``).
        self._wall_at = -math.inf
        self._wall_then = datetime.min
        self.counts = {_VISIBLE: 0, _DELAYED: 0, _LEASED: 0}

    # --- state transitions ---------------------------------------------------------------

    def _set_state(self, record: _Record, state: str) -> None:
        self.counts[record.state] -= 1
        record.state = state
        self.counts[state] += 1
        record.epoch += 1

    def _drop_receipt(self, record: _Record) -> None:
        receipt = record.receipt
        if receipt is not None:
            if self._leases.pop(receipt, None) is None:
                self._moved.pop(receipt, None)
            record.receipt = None

    def _make_visible(self, record: _Record) -> None:
        self._set_state(record, _VISIBLE)
        self._drop_receipt(record)
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
        timers = self._timers
        heapq.heappush(timers, (when, record.seq, record.epoch, record))
        # Entries of messages acked or released early stay behind: drop them once they are
        # the majority, so the heap (and one receive popping them all) stays proportional to
        # the live ones.
        if len(timers) > 64 and len(timers) > 2 * (self.counts[_DELAYED] + len(self._moved)):
            self._timers = [
                t for t in timers if t[3].epoch == t[2] and t[3].message_id in self._records
            ]
            heapq.heapify(self._timers)
        if when < self._waiting_until:
            self._wake()

    def _tick(self, now: float) -> None:
        """Apply every timer that is due: delays end, leases expire."""
        leases = self._leases
        while leases:
            record = next(iter(leases.values()))
            if record.lease_until > now:
                break
            self._make_visible(record)
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, epoch, record = heapq.heappop(timers)
            if record.epoch == epoch and record.message_id in self._records:
                self._make_visible(record)

    def _next_timer(self) -> float:
        """Return the clock time of the next lease expiry or delay end (inf if none)."""
        when = math.inf
        if self._leases:
            when = next(iter(self._leases.values())).lease_until
        timers = self._timers
        while timers:
            _, _, epoch, record = timers[0]
            if record.epoch == epoch and record.message_id in self._records:
                return min(when, timers[0][0])
            heapq.heappop(timers)
        return when

    def _wake(self) -> None:
        self._waiting_until = math.inf
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _wall(self, now: float) -> datetime:
        """Return the wall-clock time at monotonic ``now``, to within a millisecond.

        SQS timestamps (SentTimestamp, ApproximateFirstReceiveTimestamp) are in milliseconds,
        and reading the wall clock once per message was a noticeable share of a send.
        """
        if not 0 <= now - self._wall_at < 0.001:
            self._wall_at = now
            self._wall_then = self.clock.wall()
        return self._wall_then

    # --- primitives ----------------------------------------------------------------------

    def send(self, message: Outgoing) -> str:
        """Store ``message`` and return its id; a FIFO duplicate returns the first one's id."""
        return self._store(message, self.clock.now(), True)

    def send_batch(self, messages: Sequence[Outgoing]) -> list[str]:
        """Store ``messages`` in order, as ``send`` does each; return their ids.

        The clocks are read once and waiting receivers are woken once, for the whole batch
        (its messages share one ``sent_at``, as messages sent within a millisecond do). On a
        standard queue without a delay of its own, a message without a delay goes straight to
        the back of the line here, with what ``_store`` does for it inlined.
        """
        now = self.clock.now()
        spec = self.spec
        store = self._store
        if spec.fifo or spec.delay > 0:
            ids = [store(message, now, False) for message in messages]
        else:
            ids = []
            wall = self._wall(now)
            expires_at = now + spec.retention
            records, fresh, seq, ids_ = self._records, self._fresh, self._seq, _ids
            stored = 0
            for message in messages:
                if message.delay > 0:
                    ids.append(store(message, now, False))
                    continue
                message_id = message.message_id or _ID_FORMAT % next(ids_)
                record = _Record(
                    next(seq),
                    message_id,
                    message.body,
                    message.attributes,
                    message.headers,
                    message.sent_at or wall,
                    None,
                    message.deduplication_id,
                    expires_at,
                )
                records[message_id] = record
                fresh.append(record)
                ids.append(message_id)
                stored += 1
            self.counts[_VISIBLE] += stored
        self._wake()
        return ids

    def _store(self, message: Outgoing, now: float, wake: bool) -> str:
        spec = self.spec
        message_id = message.message_id or new_message_id()
        if self._dedup is not None:
            first = self._dedup.duplicate_of(
                message.deduplication_id,
                message.body,
                message_id=message_id,
                content_based=spec.content_based_deduplication,
                now=now,
            )
            if first is not None:
                return first
        group_id = message.group_id if spec.fifo else None
        delay = max(message.delay, spec.delay)
        fresh = group_id is None and delay <= 0
        record = _Record(
            next(self._seq),
            message_id,
            message.body,
            message.attributes,
            message.headers,
            message.sent_at or self._wall(now),
            group_id,
            message.deduplication_id,
            now + spec.retention,
            _VISIBLE if fresh else _DELAYED,
        )
        self._records[message_id] = record
        if fresh:
            # The common case, straight to the back of the line: no heap, no state change.
            self.counts[_VISIBLE] += 1
            self._fresh.append(record)
            if wake and self._waiters:
                self._wake()
            return message_id
        self.counts[_DELAYED] += 1
        if group_id is not None:
            self._groups.setdefault(group_id, _Group()).messages.append(record)
        if delay > 0:
            self._schedule(record, _DELAYED, now + delay)
        else:
            self._make_visible(record)
        return message_id

    def _expired(self, record: _Record, now: float) -> bool:
        """Drop a message past the queue's retention period, as SQS does, when it surfaces."""
        if record.expires_at > now:
            return False
        self._remove(record)
        return True

    def _take(self, limit: int, now: float) -> list[_Record]:
        taken: list[_Record] = []
        fresh, ready, records = self._fresh, self._ready, self._records
        while (fresh or ready) and len(taken) < limit:
            # Both are in send order: take the older head, so order survives redelivery.
            if fresh and (not ready or fresh[0].seq < ready[0][0]):
                record = fresh.popleft()
            else:
                record = heapq.heappop(ready)[1]
            if (
                record.state == _VISIBLE
                and record.message_id in records
                and (record.expires_at > now or not self._expired(record, now))
            ):
                taken.append(record)
        while self._ready_groups and len(taken) < limit:
            _, group_id = heapq.heappop(self._ready_groups)
            group = self._groups.get(group_id)
            if group is None or group.locked or not group.messages:
                continue
            head = group.messages[0]
            if head.state == _VISIBLE and self._expired(head, now):
                continue
            if head.state == _VISIBLE:
                # One message per group per receive: the group stays locked until it is settled.
                group.locked = True
                taken.append(head)
        return taken

    def _lease(self, taken: list[_Record], now: float) -> list[Delivery]:
        """Lease ``taken`` from ``now`` for the queue's visibility timeout."""
        name = self.spec.name
        until = now + self.spec.visibility_timeout
        # Deadlines in ``_leases`` must only grow; after a redeclare with a shorter timeout,
        # the new leases go on the timer heap instead until they do again.
        ordered = until >= self._last_lease_until
        if ordered:
            self._last_lease_until = until
        if ordered and self._waiters and until < self._waiting_until:
            self._wake()  # a waiting receiver must re-arm its timer for the earlier expiry
        wall: datetime | None = None
        counts = self.counts
        deliveries: list[Delivery] = []
        for record in taken:
            record.receive_count += 1
            if record.first_received_at is None:
                if wall is None:
                    wall = self._wall(now)
                record.first_received_at = wall
            receipt = record.receipt = str(next(self._receipts))
            if ordered:
                counts[record.state] -= 1
                record.state = _LEASED
                counts[_LEASED] += 1
                record.epoch += 1
                record.lease_until = until
                self._leases[receipt] = record
            else:
                self._moved[receipt] = record
                self._schedule(record, _LEASED, until)
            deliveries.append(
                Delivery(  # positional, in field order: this runs once per message
                    name,
                    record.message_id,
                    record.body,
                    record.attributes,
                    record.headers,
                    record.receive_count,
                    record.sent_at,
                    record.first_received_at,
                    receipt,
                    record.group_id,
                    record.deduplication_id,
                )
            )
        return deliveries

    async def receive(self, limit: int, wait: float) -> list[Delivery]:
        """Lease up to ``limit`` messages, waiting up to ``wait`` seconds for the first."""
        loop = asyncio.get_running_loop()
        end = math.nan  # computed only if this receive has to wait
        while True:
            now = self.clock.now()
            self._tick(now)
            taken = self._take(limit, now)
            if taken:
                return self._lease(taken, now)
            if end != end:  # nan: the first pass
                end = now + wait
            if now >= end:
                return []
            wake_at = min(end, self._next_timer())
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            self._waiting_until = min(self._waiting_until, wake_at)
            timer = self.clock.call_at(wake_at, functools.partial(_resolve, waiter))
            try:
                await waiter
            finally:
                timer.cancel()
                # Woken by its own timer (or cancelled), the waiter is still listed: drop it, so
                # its past deadline does not hide later ones from the next wait (see ``_wake``).
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    if not self._waiters:
                        self._waiting_until = math.inf

    def _current(self, receipt: str) -> _Record | None:
        record = self._leases.get(receipt) or self._moved.get(receipt)
        if record is None or record.state != _LEASED or record.receipt != receipt:
            return None
        return record

    def delete(self, receipt: str) -> _Record | None:
        """Delete the message leased under ``receipt``; a stale receipt deletes nothing."""
        record = self._leases.get(receipt)
        if record is None or record.group_id is not None:
            record = self._current(receipt)
            if record is not None:
                self._remove(record)
            return record
        # A lease with the queue's own timeout, of a standard queue (the common ack): what
        # ``_current`` and ``_remove`` do for it, inlined. Entries of ``_leases`` are current.
        del self._leases[receipt]
        self.counts[_LEASED] -= 1
        del self._records[record.message_id]
        record.receipt = None
        record.epoch += 1
        return record

    def _remove(self, record: _Record) -> None:
        self.counts[record.state] -= 1
        del self._records[record.message_id]
        self._drop_receipt(record)
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
            if self._leases.pop(receipt, None) is not None:
                self._moved[receipt] = record
            self._schedule(record, _LEASED, self.clock.now() + seconds)
        return True

    def purge(self) -> int:
        """Delete every message, in flight or not, as SQS's PurgeQueue does; return the count."""
        count = len(self._records)
        for record in list(self._records.values()):
            record.epoch += 1
        self._records.clear()
        self._leases.clear()
        self._moved.clear()
        self._fresh.clear()
        self._ready.clear()
        self._ready_groups.clear()
        self._groups.clear()
        self._timers.clear()
        self.counts = {_VISIBLE: 0, _DELAYED: 0, _LEASED: 0}
        return count

    def stats(self) -> QueueStats:
        """Return current counts (after applying due timers)."""
        self._tick(self.clock.now())
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
        self._tick(self.clock.now())
        if not self.spec.fifo:
            return self.counts[_VISIBLE] > 0
        for _, group_id in self._ready_groups:
            group = self._groups.get(group_id)
            if group and not group.locked and group.messages[0].state == _VISIBLE:
                return True
        return False

    def __len__(self) -> int:
        return len(self._records)

"""The SQL of ``sqlite://``: one connection, used from one thread, and every primitive as SQL.

Everything that must outlive a process is a row: a message's lease and delay are one deadline
column (``visible_at``), its receive count a column, a FIFO group's lock the lease on the
group's head (a group's later messages are not receivable while its oldest one exists), and
the deduplication window a table. So order, counts and deduplication hold across every process
that opens the file, and a process killed with ``kill -9`` leaves only leases that expire.

Every write is one ``BEGIN IMMEDIATE`` transaction: it takes the file's write lock at the start,
so two processes never deadlock upgrading a read lock, and ``busy_timeout`` makes the loser wait
instead of failing. Reads run outside a transaction; in WAL mode they never block a writer.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

from framework.exceptions import UnknownQueueError, UnknownTopicError
from framework.messages import DeadLetterReason, Delivery, Outgoing, OutgoingMail, QueueStats
from framework.registry import QueueSpec, SubscriptionSpec, TopicSpec
from framework.semantics.fanout import matching
from framework.semantics.fifo import DEDUPLICATION_WINDOW, content_deduplication_id

from .schema import connect, errors, transaction
from .settings import SQLiteSettings
from .writelock import WriterLock

__all__ = ["Outcome", "Store"]

Outcome = tuple[bool, Any]
"""A call's ``(True, result)`` or ``(False, exception)``."""

# A message is receivable when its deadline has passed and it has not outlived the queue's
# retention; on a FIFO queue also only if it is the oldest message of its group, so the
# lease on a group's head is the group's lock, in the table, for every process. The heads come
# from one pass over the (queue, group_id, seq, expires_at) index, not a lookup per message.
_STANDARD = """
SELECT m.seq FROM messages m
WHERE m.queue = :queue AND m.visible_at <= :now AND m.expires_at > :now
ORDER BY m.visible_at, m.seq LIMIT :limit
"""
_FIFO = """
SELECT m.seq FROM (
    SELECT MIN(seq) AS seq FROM messages
    WHERE queue = :queue AND group_id IS NOT NULL AND expires_at > :now
    GROUP BY group_id
) AS heads JOIN messages m ON m.seq = heads.seq
WHERE m.visible_at <= :now
ORDER BY m.visible_at, m.seq LIMIT :limit
"""
_CLAIM = """
UPDATE messages
SET receive_count = receive_count + 1,
    first_received_at = COALESCE(first_received_at, :now),
    visible_at = :until,
    receipt = seq || '.' || :token
WHERE seq IN ({candidates})
RETURNING seq, message_id, body, attributes, headers, receive_count, sent_at,
    first_received_at, receipt, group_id, deduplication_id
"""
_CLAIM_STANDARD = _CLAIM.format(candidates=_STANDARD)
_CLAIM_FIFO = _CLAIM.format(candidates=_FIFO)
_HAS_STANDARD = f"SELECT EXISTS ({_STANDARD})"
_HAS_FIFO = f"SELECT EXISTS ({_FIFO})"
_QUEUE_COLUMNS = (
    "fifo, visibility_timeout, delay, retention, content_based_deduplication, dead_letter, "
    "max_receive_count, max_message_size"
)


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seq_of(receipt: str) -> int:
    head, _, _ = receipt.partition(".")
    return int(head) if head.isdigit() else -1


class Store:
    """The file and the SQL of every primitive. Not thread-safe: one thread calls it."""

    def __init__(self, settings: SQLiteSettings) -> None:
        self.settings = settings
        self.path = settings.path
        self._db: sqlite3.Connection | None = None
        self.lock = WriterLock(settings.path, settings.busy_timeout)
        # While a batch runs: the queues' rows read, the queues changed, no savepoints per call.
        self._queues: dict[str, tuple[Any, ...]] | None = None
        self._dirty: set[str] | None = None
        self._plain = False
        # The change counter this process last wrote per queue: its watcher skips its own.
        self.written: dict[str, int] = {}

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("SQLiteBackend is not open: use 'async with backend:'")
        return self._db

    def open(self) -> bool:
        """Open (creating if needed) the file and its tables; return True if it was created.

        Raises:
            ConfigError: If the file is not a SQLite database, or one of something else.
            BackendUnavailableError: If it cannot be opened or written (read-only, disk full).
        """
        self._db, created = connect(self.settings)
        self.lock.open()
        return created

    def close(self) -> None:
        """Close the connection (idempotent)."""
        db, self._db = self._db, None
        self.lock.close()
        if db is not None:
            db.close()

    def errors(self) -> AbstractContextManager[None]:
        """Turn SQLite's errors into the framework's, naming the file."""
        return errors(self.path)

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error.

        Outside a transaction it first takes the writers' lock (``writelock.py``), and lets it
        go after the commit; inside one (a batch's call) it is a savepoint of that one.
        """
        db = self.db
        if db.in_transaction and self._plain:  # a batch's first run: no savepoint per call
            return contextlib.nullcontext(db)
        if db.in_transaction or not self.lock.enabled:
            return transaction(db)
        return self._locked(db)

    @contextmanager
    def _locked(self, db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        self.lock.acquire()
        try:
            with transaction(db):
                yield db
        finally:
            self.lock.release()

    def changed(self, db: sqlite3.Connection, queue: str) -> None:
        """Bump ``queue``'s row in ``changes``: other processes' watchers wake its receivers.

        In a batch the bump waits for the batch's end: once per queue per transaction.
        """
        if self._dirty is not None:
            self._dirty.add(queue)
            return
        self._bump(db, queue)

    def _bump(self, db: sqlite3.Connection, queue: str) -> None:
        version = db.execute(
            "INSERT INTO changes (queue, version) VALUES (?, 1) "
            "ON CONFLICT (queue) DO UPDATE SET version = version + 1 RETURNING version",
            (queue,),
        ).fetchone()[0]
        self.written[queue] = version

    def run_batch(
        self, calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]
    ) -> list[Outcome]:
        """Run ``calls`` in one write transaction; return their outcomes.

        A call that raises rolls back its own writes only. They first run one after another
        in one savepoint; if one raises, that savepoint is rolled back and every call runs
        again in a savepoint of its own (calls are SQL on the file and their arguments, so a
        second run gives each the outcome it would have had alone). A batch without failures
        thus costs two statements for its isolation instead of two per call. Within the
        batch, queues' rows are read once and each changed queue's counter bumped once.
        If the transaction fails (begin, commit, or SQLite rolling it back), every call not
        failed on its own gets its error.
        """
        if len(calls) == 1:
            fn, args = calls[0]
            try:
                return [(True, fn(*args))]
            except Exception as exc:
                return [(False, exc)]
        outcomes: list[Outcome] = []
        self._queues, self._dirty = {}, set()
        try:
            with self.errors(), self.write() as db:
                db.execute("SAVEPOINT batch")
                self._plain = True
                try:
                    for fn, args in calls:
                        outcomes.append((True, fn(*args)))
                except Exception:
                    if not db.in_transaction:  # rolled back: the earlier calls too
                        raise
                    db.execute("ROLLBACK TO batch")
                    self._queues.clear()
                    self._dirty.clear()
                    outcomes = []
                finally:
                    self._plain = False
                db.execute("RELEASE batch")
                if len(outcomes) < len(calls):
                    for fn, args in calls:
                        try:
                            outcomes.append((True, fn(*args)))
                        except Exception as exc:
                            if not db.in_transaction:
                                raise
                            outcomes.append((False, exc))
                for queue in sorted(self._dirty):
                    self._bump(db, queue)
        except Exception as exc:
            failed: list[Outcome] = [(False, exc) if ok else (ok, v) for ok, v in outcomes]
            return failed + [(False, exc)] * (len(calls) - len(outcomes))
        finally:
            self._queues = self._dirty = None
        return outcomes

    # --- queues ----------------------------------------------------------------------------

    def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue or update its attributes; its messages stay."""
        if self._queues is not None:
            self._queues.pop(spec.name, None)
        with self.errors(), self.write() as db:
            db.execute(
                f"INSERT OR REPLACE INTO queues (name, {_QUEUE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.name,
                    int(spec.fifo),
                    spec.visibility_timeout,
                    spec.delay,
                    spec.retention,
                    int(spec.content_based_deduplication),
                    spec.dead_letter,
                    spec.max_receive_count,
                    spec.max_message_size,
                ),
            )

    def _queue(self, db: sqlite3.Connection, name: str) -> tuple[Any, ...]:
        if self._queues is not None and name in self._queues:
            return self._queues[name]
        row = db.execute(f"SELECT {_QUEUE_COLUMNS} FROM queues WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [r[0] for r in db.execute("SELECT name FROM queues ORDER BY name LIMIT 21")]
            shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "") or "none"
            raise UnknownQueueError(
                f"queue {name!r} does not exist in {str(self.path)!r} (queues: {shown})"
            )
        if self._queues is not None:
            self._queues[name] = tuple(row)
        return tuple(row)

    def _duplicate_of(
        self,
        db: sqlite3.Connection,
        scope: str,
        message: Outgoing,
        message_id: str,
        *,
        content_based: bool,
        now: float,
    ) -> str | None:
        dedup_id = message.deduplication_id
        if dedup_id is None and content_based:
            dedup_id = content_deduplication_id(message.body)
        if dedup_id is None:
            return None
        db.execute(
            "DELETE FROM deduplication WHERE scope = ? AND at <= ?",
            (scope, now - DEDUPLICATION_WINDOW),
        )
        row = db.execute(
            "SELECT message_id FROM deduplication WHERE scope = ? AND deduplication_id = ?",
            (scope, dedup_id),
        ).fetchone()
        if row is not None:
            return str(row[0])
        db.execute(
            "INSERT INTO deduplication (scope, deduplication_id, message_id, at) "
            "VALUES (?, ?, ?, ?)",
            (scope, dedup_id, message_id, now),
        )
        return None

    def _insert(
        self, db: sqlite3.Connection, queue: str, message: Outgoing, message_id: str, now: float
    ) -> str:
        stored = self._insert_rows(db, queue, self._queue(db, queue), [(message, message_id)], now)
        self.changed(db, queue)
        return stored[0]

    def _insert_rows(
        self,
        db: sqlite3.Connection,
        queue: str,
        row: tuple[Any, ...],
        messages: Sequence[tuple[Outgoing, str]],
        now: float,
    ) -> list[str]:
        """Insert ``(message, id)`` pairs into ``queue`` (its ``row`` from ``queues``)."""
        fifo, delay, retention, content_based = bool(row[0]), row[2], row[3], bool(row[4])
        ids: list[str] = []
        values: list[tuple[Any, ...]] = []
        # A batch's messages share their attributes and headers mappings (one per content
        # type): each distinct one is written as JSON once. By id: all are alive meanwhile.
        texts: dict[int, str] = {}

        def as_json(mapping: Mapping[str, Any]) -> str:
            text = texts.get(id(mapping))
            if text is None:
                text = texts[id(mapping)] = json.dumps(dict(mapping), separators=(",", ":"))
            return text

        for message, message_id in messages:
            if fifo:
                first = self._duplicate_of(
                    db, f"queue:{queue}", message, message_id, content_based=content_based, now=now
                )
                if first is not None:
                    ids.append(first)
                    continue
            ids.append(message_id)
            sent_at = message.sent_at.timestamp() if message.sent_at is not None else now
            values.append(
                (
                    queue,
                    message_id,
                    message.body,
                    as_json(message.attributes),
                    as_json(message.headers),
                    # SQS refuses a FIFO message without a group; here it joins the group "".
                    (message.group_id or "") if fifo else None,
                    message.deduplication_id,
                    sent_at,
                    now + max(message.delay, delay),
                    now + retention,
                )
            )
        db.executemany(
            "INSERT INTO messages (queue, message_id, body, attributes, headers, group_id, "
            "deduplication_id, sent_at, visible_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
        return ids

    def send(self, queue: str, message: Outgoing, now: float) -> str:
        """Store ``message`` in one committed transaction; return its id (or a duplicate's)."""
        message_id = message.message_id or str(uuid.uuid4())
        with self.errors(), self.write() as db:
            return self._insert(db, queue, message, message_id, now)

    def send_batch(self, queue: str, messages: Sequence[Outgoing], now: float) -> list[str]:
        """Store ``messages`` in order in one committed transaction; return their ids."""
        pairs = [(m, m.message_id or str(uuid.uuid4())) for m in messages]
        with self.errors(), self.write() as db:
            ids = self._insert_rows(db, queue, self._queue(db, queue), pairs, now)
            self.changed(db, queue)
            return ids

    def claim(
        self, queue: str, limit: int, now: float, token: str
    ) -> tuple[list[Delivery], float | None]:
        """Lease up to ``limit`` receivable messages; with none, also the next deadline.

        Returns:
            The deliveries, in send order, and when none was receivable the earliest time at
            which one may be (a delay or a lease ending), or None if nothing is pending.
        """
        with self.errors():
            with self.write() as db:
                row = self._queue(db, queue)
                params = {
                    "queue": queue,
                    "now": now,
                    "until": now + row[1] + self.settings.lease_grace,
                    "token": token,
                    "limit": limit,
                }
                claim = _CLAIM_FIFO if row[0] else _CLAIM_STANDARD
                rows = db.execute(claim, params).fetchall()
            if not rows:
                nxt = self.db.execute(
                    "SELECT MIN(visible_at) FROM messages WHERE queue = ? AND visible_at > ?",
                    (queue, now),
                ).fetchone()[0]
                return [], nxt
        rows.sort(key=lambda r: r[0])
        return [
            Delivery(
                queue=queue,
                message_id=r[1],
                body=r[2],
                attributes=json.loads(r[3]),
                headers=json.loads(r[4]),
                receive_count=r[5],
                sent_at=_time(r[6]),
                first_received_at=_time(r[7]),
                receipt=r[8],
                group_id=r[9],
                deduplication_id=r[10],
            )
            for r in rows
        ], None

    def ack(self, receipt: str, now: float) -> bool:
        """Delete the message leased under ``receipt``; False for a stale one.

        As on SQS, a lease that expired still settles its message until another receive
        leases it again (which changes the receipt): a handler that finished just past its
        deadline is not delivered twice.
        """
        with self.errors(), self.write() as db:
            row = db.execute(
                "DELETE FROM messages WHERE seq = ? AND receipt = ? RETURNING queue, group_id",
                (_seq_of(receipt), receipt),
            ).fetchone()
            if row is not None and row[1] is not None:
                self.changed(db, row[0])  # the group's next message is receivable now
            return row is not None

    def change_visibility(self, receipt: str, now: float, seconds: float) -> bool:
        """Move a live lease's deadline to ``seconds`` from now (0: visible at once)."""
        with self.errors(), self.write() as db:
            if seconds <= 0:
                row = db.execute(
                    "UPDATE messages SET visible_at = ?, receipt = NULL "
                    "WHERE seq = ? AND receipt = ? RETURNING queue",
                    (now, _seq_of(receipt), receipt),
                ).fetchone()
                if row is not None:
                    self.changed(db, row[0])
                return row is not None
            else:
                cursor = db.execute(
                    "UPDATE messages SET visible_at = ? WHERE seq = ? AND receipt = ?",
                    (now + seconds, _seq_of(receipt), receipt),
                )
            return cursor.rowcount > 0

    def release_all(self, receipts: Sequence[str], now: float) -> int:
        """Make every message still leased under ``receipts`` visible now; return how many."""
        released = 0
        with self.errors(), self.write() as db:
            for receipt in receipts:
                row = db.execute(
                    "UPDATE messages SET visible_at = ?, receipt = NULL "
                    "WHERE seq = ? AND receipt = ? RETURNING queue",
                    (now, _seq_of(receipt), receipt),
                ).fetchone()
                if row is not None:
                    released += 1
                    self.changed(db, row[0])
        return released

    def dead_letter(self, delivery: Delivery, reason: DeadLetterReason, now: float) -> str | None:
        """Move a leased message to its dead-letter queue in one transaction, with ``reason``.

        Returns:
            The dead-letter queue's name, or None if the message was leased again meanwhile.

        Raises:
            UnknownQueueError: If the queue has no dead-letter queue, or it does not exist.
        """
        receipt = delivery.receipt
        with self.errors(), self.write() as db:
            dlq = self._queue(db, delivery.queue)[5]
            if dlq is None:
                raise UnknownQueueError(f"queue {delivery.queue!r} has no dead-letter queue")
            retention = self._queue(db, dlq)[3]
            row = db.execute(
                "SELECT headers FROM messages WHERE seq = ? AND receipt = ?",
                (_seq_of(receipt), receipt),
            ).fetchone()
            if row is None:
                return None  # leased again meanwhile: that receive decides
            headers = reason.stamped(json.loads(row[0]))
            db.execute(
                "INSERT INTO messages (queue, message_id, body, attributes, headers, group_id, "
                "deduplication_id, sent_at, visible_at, expires_at) "
                "SELECT ?, message_id, body, attributes, ?, group_id, deduplication_id, sent_at, "
                "?, ? FROM messages WHERE seq = ?",
                (
                    dlq,
                    json.dumps(headers, separators=(",", ":")),
                    now,
                    now + retention,
                    _seq_of(receipt),
                ),
            )
            db.execute("DELETE FROM messages WHERE seq = ?", (_seq_of(receipt),))
            self.changed(db, dlq)
            if delivery.group_id is not None:
                self.changed(db, delivery.queue)
            return str(dlq)

    def stats(self, queue: str, now: float) -> QueueStats:
        """Return the queue's depth, in-flight and delayed counts and its dead letters."""
        with self.errors():
            db = self.db
            dlq = self._queue(db, queue)[5]
            depth, in_flight, delayed = db.execute(
                "SELECT COALESCE(SUM(visible_at <= :now), 0), "
                "COALESCE(SUM(visible_at > :now AND receipt IS NOT NULL), 0), "
                "COALESCE(SUM(visible_at > :now AND receipt IS NULL), 0) "
                "FROM messages WHERE queue = :queue AND expires_at > :now",
                {"queue": queue, "now": now},
            ).fetchone()
            dead = 0
            if dlq is not None:
                dead = db.execute(
                    "SELECT COUNT(*) FROM messages WHERE queue = ? AND expires_at > ?", (dlq, now)
                ).fetchone()[0]
        return QueueStats(
            name=queue,
            depth=depth,
            in_flight=in_flight,
            delayed=delayed,
            dead_letters=dead,
            dead_letter_queue=dlq,
        )

    def has_receivable(self, queue: str, now: float) -> bool:
        """True if a receive on ``queue`` now would return a message."""
        with self.errors():
            fifo = self._queue(self.db, queue)[0]
            query = _HAS_FIFO if fifo else _HAS_STANDARD
            row = self.db.execute(query, {"queue": queue, "now": now, "limit": 1})
            return bool(row.fetchone()[0])

    def purge(self, queue: str) -> int:
        """Delete every message of the queue, leased or not; return how many."""
        with self.errors(), self.write() as db:
            self._queue(db, queue)
            return db.execute("DELETE FROM messages WHERE queue = ?", (queue,)).rowcount

    def expire(self, queue: str, now: float) -> int:
        """Delete the queue's messages past their retention; return how many."""
        with self.errors(), self.write() as db:
            return db.execute(
                "DELETE FROM messages WHERE queue = ? AND expires_at <= ?", (queue, now)
            ).rowcount

    def queues(self) -> list[str]:
        """Return every queue's name, sorted."""
        with self.errors():
            return [r[0] for r in self.db.execute("SELECT name FROM queues ORDER BY name")]

    def missing(
        self,
        queues: Sequence[QueueSpec],
        topics: Sequence[TopicSpec],
        subscriptions: Sequence[SubscriptionSpec],
    ) -> list[str]:
        """Return one line per resource of the lists that the file does not hold."""
        with self.errors():
            db = self.db
            have_queues = {r[0] for r in db.execute("SELECT name FROM queues")}
            have_topics = {r[0] for r in db.execute("SELECT name FROM topics")}
            have_subs = set(db.execute("SELECT topic, name FROM subscriptions").fetchall())
        out = [f"queue {q.name!r}" for q in queues if q.name not in have_queues]
        out += [f"topic {t.name!r}" for t in topics if t.name not in have_topics]
        out += [
            f"subscription {s.name!r} of topic {s.topic!r}"
            for s in subscriptions
            if (s.topic, s.name) not in have_subs
        ]
        return out

    # --- topics ----------------------------------------------------------------------------

    def declare_topic(self, spec: TopicSpec) -> None:
        """Create the topic or update its attributes."""
        with self.errors(), self.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO topics (name, fifo, content_based_deduplication) "
                "VALUES (?, ?, ?)",
                (spec.name, int(spec.fifo), int(spec.content_based_deduplication)),
            )

    def subscribe(self, subscription: SubscriptionSpec) -> None:
        """Attach the subscription's queue to its topic, replacing one of the same name.

        Raises:
            UnknownTopicError: If the topic does not exist.
        """
        if subscription.queue is None:
            raise NotImplementedError("endpoint subscriptions are delivered by the runtime")
        with self.errors(), self.write() as db:
            if db.execute("SELECT 1 FROM topics WHERE name = ?", (subscription.topic,)).fetchone():
                policy = subscription.filter_policy
                db.execute(
                    "INSERT OR REPLACE INTO subscriptions "
                    "(topic, name, queue, filter_policy, filter_policy_scope) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        subscription.topic,
                        subscription.name,
                        subscription.queue.name,
                        None if policy is None else json.dumps(policy),
                        subscription.filter_policy_scope,
                    ),
                )
                return
        raise UnknownTopicError(
            f"topic {subscription.topic!r} does not exist in {str(self.path)!r}"
        )

    def publish(self, topic: str, message: Outgoing, now: float) -> tuple[str, list[str]]:
        """Copy ``message`` to every matching subscription queue in one transaction.

        Returns:
            The message id (a duplicate's, if deduplicated) and the queues that got a copy.

        Raises:
            UnknownTopicError: If the topic does not exist.
        """
        message_id = message.message_id or str(uuid.uuid4())
        with self.errors(), self.write() as db:
            row = db.execute(
                "SELECT fifo, content_based_deduplication FROM topics WHERE name = ?", (topic,)
            ).fetchone()
            if row is None:
                known = [r[0] for r in db.execute("SELECT name FROM topics ORDER BY name")]
                raise UnknownTopicError(
                    f"topic {topic!r} does not exist in {str(self.path)!r} "
                    f"(topics: {', '.join(known) or 'none'})"
                )
            if row[0]:
                first = self._duplicate_of(
                    db, f"topic:{topic}", message, message_id, content_based=bool(row[1]), now=now
                )
                if first is not None:
                    return first, []
            subs = [
                SubscriptionSpec(
                    topic=topic,
                    name=name,
                    queue=QueueSpec(name=queue),
                    filter_policy=None if policy is None else json.loads(policy),
                    filter_policy_scope=scope,
                )
                for name, queue, policy, scope in db.execute(
                    "SELECT name, queue, filter_policy, filter_policy_scope FROM subscriptions "
                    "WHERE topic = ? ORDER BY rowid",
                    (topic,),
                )
            ]
            targets: list[str] = []
            for sub in matching(
                subs,
                attributes=message.attributes,
                body=message.body,
                content_type=message.content_type,
            ):
                assert sub.queue is not None
                self._insert(db, sub.queue.name, message, message_id, now)
                targets.append(sub.queue.name)
            return message_id, targets

    # --- mail ------------------------------------------------------------------------------

    def store_mail(self, mail: OutgoingMail, now: float) -> int:
        """Keep an outgoing mail in the ``outbox`` table; return how many it holds."""
        with self.errors(), self.write() as db:
            db.execute(
                "INSERT INTO outbox (message_id, sender, recipients, message, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (mail.message_id, mail.sender, json.dumps(mail.recipients), mail.message, now),
            )
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def outbox(self) -> list[OutgoingMail]:
        """Return the mail kept in the ``outbox`` table, oldest first."""
        with self.errors():
            return [
                OutgoingMail(
                    sender=sender,
                    recipients=tuple(json.loads(recipients)),
                    message=message,
                    message_id=message_id,
                )
                for message_id, sender, recipients, message in self.db.execute(
                    "SELECT message_id, sender, recipients, message FROM outbox ORDER BY seq"
                )
            ]

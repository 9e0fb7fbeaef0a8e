"""Connection requests between processes on one SQLite file: rows, woken like a receive.

Each runtime on ``sqlite://`` with a WebSocket API has a row in ``processes``: its id, the
identity of its OS process, and ``seen_at``, renewed every ``HEARTBEAT`` seconds; it deletes
the row when it stops. A connection id names its owner's process, so a push to a connection
held elsewhere is one row of ``relay`` addressed to the owner. Its insert bumps the owner's
counter ``$ws:<owner>`` in ``changes`` (no queue can have that name), so the owner's watcher
wakes it exactly as another process's send wakes a receiver (``wakeup.py``). The owner claims
its rows, writes each answer into its row and bumps the sender's counter; the sender takes its
answers and deletes the rows.

The owner is gone, and the sender raises ``ConnectionGoneError``:

- at once, when the owner's row is missing (it stopped), its lease ended (no heartbeat for
  ``LEASE`` seconds), or it ran on this machine in this PID namespace and its OS process has
  exited (Linux: ``kill(pid, 0)`` and the start time in ``/proc/PID/stat``; ``kill -9`` is
  seen without waiting for the lease). A stopping owner answers 'gone' to what it had not
  answered;
- while waiting, as soon as one of those becomes true (checked every ``CHECK_EVERY`` seconds);
- after ``timeout`` seconds without an answer.

Rows of processes silent for ``FORGET`` seconds, and requests that old, are deleted by the
next heartbeat of any process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from framework.exceptions import BackendUnavailableError, ConnectionGoneError
from framework.logs import event
from framework.websocket import Reply, Request, Serve, answer, reply_within

from .store import Store
from .wakeup import Hub

__all__ = [
    "CHECK_EVERY",
    "DEFAULT_TIMEOUT",
    "FORGET",
    "HEARTBEAT",
    "LEASE",
    "RelayTables",
    "SQLiteConnectionRelay",
    "has_exited",
    "inbox",
    "process_identity",
]

log = logging.getLogger("framework.backends.sqlite")

Run = Callable[..., Awaitable[Any]]

DEFAULT_TIMEOUT = 5.0
HEARTBEAT = 1.0
LEASE = 5.0
CHECK_EVERY = 0.5
FORGET = 60.0
RETRY_AFTER = 0.1


def inbox(process: str) -> str:
    """The ``changes`` key that wakes process ``process`` (a request or an answer for it)."""
    return f"$ws:{process}"


# --- the OS process behind a row --------------------------------------------------------------


def _machine() -> str:
    """This machine's boot and this process's PID namespace ('' where /proc does not say)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the name (state first), [] if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rpartition(")")[2].split()  # the name, in parentheses, may hold spaces


_MACHINE = _machine()
_START = 19  # the start time (clock ticks after boot), field 22 of /proc/PID/stat


def process_identity(pid: int | None = None) -> str:
    """Return ``boot/pid-namespace/pid/start-time`` for process ``pid`` (this one by default).

    Returns '' where ``/proc`` cannot tell: then only the lease says when a process died.
    """
    pid = os.getpid() if pid is None else pid
    fields = _stat(pid)
    return f"{_MACHINE}/{pid}/{fields[_START]}" if _MACHINE and len(fields) > _START else ""


def has_exited(identity: str) -> bool:
    """True if ``identity`` names a process of this machine and PID namespace that has exited.

    False when it cannot tell (another machine or namespace, no ``/proc``): the lease decides.
    A zombie (killed, not yet reaped) has exited; a PID reused since has another start time.
    """
    parts = identity.split("/")
    if not _MACHINE or len(parts) != 4 or "/".join(parts[:2]) != _MACHINE:
        return False
    pid = int(parts[2])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    fields = _stat(pid)
    if len(fields) <= _START:
        return False
    return fields[_START] != parts[3] or fields[0] in ("Z", "X")


# --- the SQL, on the backend's thread ---------------------------------------------------------


def _upsert(db: sqlite3.Connection, process: str, identity: str, now: float) -> None:
    # A row deleted meanwhile (silent past FORGET: a long stall) comes back with the beat.
    db.execute(
        "INSERT INTO processes (process, identity, started_at, seen_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (process) DO UPDATE SET seen_at = excluded.seen_at",
        (process, identity, now, now),
    )


class RelayTables:
    """The relay's rows in the file: called on the backend's one thread, like ``Store``."""

    def __init__(self, store: Store, *, lease: float = LEASE) -> None:
        self.store = store
        self.lease = lease

    def register(self, process: str, identity: str, now: float) -> None:
        """Add (or renew) process ``process``'s row."""
        with self.store.errors(), self.store.write() as db:
            _upsert(db, process, identity, now)

    def heartbeat(self, process: str, identity: str, now: float) -> int:
        """Renew this process's lease; forget long-silent processes and old requests.

        Returns:
            How many processes were forgotten.
        """
        with self.store.errors(), self.store.write() as db:
            _upsert(db, process, identity, now)
            silent = [
                row[0]
                for row in db.execute(
                    "DELETE FROM processes WHERE seen_at < ? RETURNING process", (now - FORGET,)
                )
            ]
            for gone in silent:
                db.execute("DELETE FROM changes WHERE queue = ?", (inbox(gone),))
            db.execute("DELETE FROM relay WHERE at < ?", (now - FORGET,))
            return len(silent)

    def unregister(self, process: str, now: float) -> None:
        """Delete this process's row; answer 'gone' to every request it had not answered."""
        detail = json.dumps({"error": "gone", "detail": "the process holding it has stopped"})
        with self.store.errors(), self.store.write() as db:
            db.execute("DELETE FROM processes WHERE process = ?", (process,))
            senders = {
                row[0]
                for row in db.execute(
                    "UPDATE relay SET claimed = 1, reply = ? WHERE owner = ? AND reply IS NULL "
                    "RETURNING sender",
                    (detail, process),
                )
            }
            for sender in senders:
                self.store.changed(db, inbox(sender))
            db.execute("DELETE FROM relay WHERE sender = ?", (process,))
            db.execute("DELETE FROM changes WHERE queue = ?", (inbox(process),))

    def _gone(self, owner: str, now: float) -> str:
        row = self.store.db.execute(
            "SELECT identity, seen_at FROM processes WHERE process = ?", (owner,)
        ).fetchone()
        if row is None:
            return "has stopped"
        if has_exited(str(row[0])):
            return "has died"
        if float(row[1]) < now - self.lease:
            return f"has not been seen for {now - float(row[1]):.1f}s (dead, or stalled)"
        return ""

    def gone(self, owner: str, now: float) -> str:
        """Why ``owner`` cannot answer ('has stopped', 'has died', ...), or '' if it can."""
        with self.store.errors():
            return self._gone(owner, now)

    def ask(self, owner: str, sender: str, ticket: int, request: str, now: float) -> str:
        """Address ``request`` to ``owner`` and wake it; return why it cannot answer, or ''."""
        with self.store.errors(), self.store.write() as db:
            why = self._gone(owner, now)
            if why:
                return why
            db.execute(
                "INSERT INTO relay (owner, sender, ticket, request, at) VALUES (?, ?, ?, ?, ?)",
                (owner, sender, ticket, request, now),
            )
            self.store.changed(db, inbox(owner))
            return ""

    def take(self, process: str) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
        """Claim the requests addressed to ``process`` and take the answers to its own.

        Returns:
            The requests (``seq``, sender, request) and the answers (ticket, reply).
        """
        with self.store.errors():
            db = self.store.db
            pending = db.execute(
                "SELECT EXISTS (SELECT 1 FROM relay WHERE owner = ? AND claimed = 0) "
                "OR EXISTS (SELECT 1 FROM relay WHERE sender = ? AND reply IS NOT NULL)",
                (process, process),
            ).fetchone()[0]
            if not pending:  # the usual wake-up: read only, no write lock
                return [], []
            with self.store.write():
                requests = db.execute(
                    "UPDATE relay SET claimed = 1 WHERE owner = ? AND claimed = 0 "
                    "RETURNING seq, sender, request",
                    (process,),
                ).fetchall()
                answers = db.execute(
                    "DELETE FROM relay WHERE sender = ? AND reply IS NOT NULL "
                    "RETURNING ticket, reply",
                    (process,),
                ).fetchall()
        return [tuple(r) for r in requests], [tuple(r) for r in answers]

    def reply(self, answers: list[tuple[int, str, str]]) -> None:
        """Write each answer (``seq``, sender, reply) into its row and wake its sender."""
        with self.store.errors(), self.store.write() as db:
            db.executemany(
                "UPDATE relay SET reply = ? WHERE seq = ?", [(r, seq) for seq, _, r in answers]
            )
            for sender in {sender for _, sender, _ in answers}:
                self.store.changed(db, inbox(sender))

    def forget(self, sender: str, ticket: int) -> None:
        """Delete a request its sender no longer waits for."""
        with self.store.errors(), self.store.write() as db:
            db.execute("DELETE FROM relay WHERE sender = ? AND ticket = ?", (sender, ticket))


# --- the relay --------------------------------------------------------------------------------


class SQLiteConnectionRelay:
    """The delivery path of ``app.connections`` between processes on one SQLite file.

    Args:
        run: Runs a ``RelayTables`` method on the backend's thread and returns its result.
        tables: The relay's rows.
        hub: The backend's wake-ups (its watcher wakes ``inbox(process)``).
        now: The wall time, in seconds (the backend's clock).
        process: This process's id.
        serve: Answers the requests sent here.
        timeout: Seconds a request waits for its answer.
    """

    def __init__(
        self,
        run: Run,
        tables: RelayTables,
        hub: Hub,
        now: Callable[[], float],
        process: str,
        serve: Serve,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.run = run
        self.tables = tables
        self.hub = hub
        self.now = now
        self.process = process
        self.serve = serve
        self.timeout = timeout
        self.identity = process_identity()
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._tickets = itertools.count(1)
        self._loop: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        """Register this process in the file and start answering."""
        await self.run(self.tables.register, self.process, self.identity, self.now())
        self._loop = asyncio.create_task(self._serve())

    async def aclose(self) -> None:
        """Stop answering and delete this process's row (what it had not answered is gone)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionGoneError("this process is stopping"))
        self._waiting.clear()
        for task in self._tasks:  # answers still running: their senders hear 'gone' below
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(BackendUnavailableError):
            await self.run(self.tables.unregister, self.process, self.now())

    async def call(self, owner: str, request: Request) -> Reply:
        """Send ``request`` to process ``owner`` through the file and return its answer.

        Raises:
            ConnectionGoneError: If ``owner`` has stopped or died, or did not answer within
                ``timeout`` seconds.
        """
        if self._loop is None:
            raise ConnectionGoneError("the connection relay is not open")
        connection_id = request.get("id")
        ticket = next(self._tickets)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[ticket] = future
        answered = False
        try:
            why = await self.run(
                self.tables.ask, owner, self.process, ticket, json.dumps(dict(request)), self.now()
            )
            if why:
                raise ConnectionGoneError(
                    f"connection {connection_id!r} is gone: the process holding it {why}"
                )
            watch = asyncio.create_task(self._watch(owner, future, connection_id))
            try:
                reply = await reply_within(future, connection_id, self.timeout)
            finally:
                watch.cancel()
            answered = True
            return reply
        finally:
            self._waiting.pop(ticket, None)
            if not answered:
                self._spawn(self.run(self.tables.forget, self.process, ticket))

    async def _watch(
        self, owner: str, future: asyncio.Future[Reply], connection_id: object
    ) -> None:
        """Fail ``future`` as soon as ``owner`` is known to be gone."""
        while not future.done():
            await asyncio.sleep(CHECK_EVERY)
            why = await self.run(self.tables.gone, owner, self.now())
            if why and not future.done():
                future.set_exception(
                    ConnectionGoneError(
                        f"connection {connection_id!r} is gone: the process holding it {why}"
                    )
                )

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self) -> None:
        key = inbox(self.process)
        beat = asyncio.get_running_loop().time() + HEARTBEAT
        while True:
            generation = self.hub.generation(key)
            try:
                requests, answers = await self.run(self.tables.take, self.process)
                if asyncio.get_running_loop().time() >= beat:
                    beat += HEARTBEAT
                    await self.run(self.tables.heartbeat, self.process, self.identity, self.now())
            except Exception as exc:  # locked past busy_timeout, disk full: look again soon
                event(log, logging.WARNING, "websocket.relay_failed", error=str(exc))
                await asyncio.sleep(RETRY_AFTER)
                continue
            for ticket, raw in answers:
                future = self._waiting.get(int(ticket))
                if future is not None and not future.done():
                    reply = json.loads(raw)
                    future.set_result(reply if isinstance(reply, dict) else {})
            if requests:
                # Answered in a task of their own, so a slow answer holds up no wake-up.
                self._spawn(self._answer(requests))
            wait = beat - asyncio.get_running_loop().time()
            await self.hub.wait(key, generation, seconds=max(wait, 0.0))

    async def _answer(self, requests: list[tuple[int, str, str]]) -> None:
        async def one(seq: int, sender: str, raw: str) -> tuple[int, str, str]:
            try:
                request: object = json.loads(raw)
            except ValueError:
                request = None
            return seq, sender, json.dumps(await answer(self.serve, request))

        answers = await asyncio.gather(*(one(*r) for r in requests))
        with contextlib.suppress(BackendUnavailableError):  # the sender times out instead
            await self.run(self.tables.reply, list(answers))

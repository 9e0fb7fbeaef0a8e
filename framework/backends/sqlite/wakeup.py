"""Waking receivers: at once for this process's own writes, by a cheap adaptive poll for others'.

A receive that finds nothing waits for the earliest of: its ``wait`` ending, the next deadline
in its queue (a delay or a lease ending, read from the table), or a change to its queue. A
change made by this process notifies the waiting receivers directly (``Hub.notify``). A change
made by another process is seen by the ``Watcher``: a thread with a connection of its own that
reads ``PRAGMA data_version`` (which changes when another connection commits; reading it costs
no I/O) and, when it changed, the tiny ``changes`` table of per-queue counters that every write
bumps. It polls every millisecond right after a change and backs off to ``poll_max`` (default
``POLL_MAX``, 50 ms) when the file is quiet, and it sleeps on an event while no receiver waits,
so an idle worker costs nothing but a few polls a second.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["POLL_MAX", "POLL_MIN", "Hub", "Watcher"]

POLL_MIN = 0.001
POLL_MAX = 0.05


class Hub:
    """Per-queue change counters and the receivers waiting for a change; lives on one loop."""

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.waiting = 0
        self.on_waiting: Callable[[bool], None] | None = None

    def generation(self, queue: str) -> int:
        """Return ``queue``'s change counter: read it before looking, pass it to ``wait``."""
        return self._generations.get(queue, 0)

    def notify(self, queue: str) -> None:
        """Wake every receiver waiting on ``queue``."""
        self._generations[queue] = self._generations.get(queue, 0) + 1
        for waiter in self._waiters.pop(queue, ()):
            if not waiter.done():
                waiter.set_result(None)

    def notify_many(self, queues: list[str]) -> None:
        """Wake the receivers of each queue in ``queues``."""
        for queue in queues:
            self.notify(queue)

    async def wait(self, queue: str, since: int, *, seconds: float) -> None:
        """Return after ``seconds``, or once ``queue`` changed after ``since``."""
        if self.generation(queue) != since or seconds <= 0:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(queue, []).append(waiter)
        self.waiting += 1
        if self.waiting == 1 and self.on_waiting is not None:
            self.on_waiting(True)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except TimeoutError:
            pass
        finally:
            self.waiting -= 1
            if self.waiting == 0 and self.on_waiting is not None:
                self.on_waiting(False)
            waiters = self._waiters.get(queue)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[queue]


class Watcher:
    """A thread that sees other processes' commits to the file and reports the queues changed.

    Args:
        path: The database file.
        own: The change counters this process wrote last (``Store.written``), skipped.
        changed: Called from the thread with the queues another process changed.
        poll_max: The longest interval between two looks, in seconds, once the file is quiet.
    """

    def __init__(
        self,
        path: Path,
        own: dict[str, int],
        changed: Callable[[list[str]], None],
        *,
        poll_max: float = POLL_MAX,
    ) -> None:
        self._path = path
        self._poll_max = poll_max
        self._own = own
        self._changed = changed
        self._active = threading.Event()
        self._stopping = threading.Event()
        self.polls = 0
        self._thread = threading.Thread(
            target=self._run, name="framework-sqlite-watch", daemon=True
        )

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def activate(self, waiting: bool) -> None:
        """Poll while some receiver waits; sleep otherwise."""
        if waiting:
            self._active.set()
        else:
            self._active.clear()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stopping.set()
        self._active.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 1000")
            seen = self._versions(db)
            data_version = db.execute("PRAGMA data_version").fetchone()[0]
            interval = POLL_MIN
            while not self._stopping.is_set():
                if not self._active.is_set():
                    self._active.wait()
                    interval = POLL_MIN
                # time.sleep, not Event.wait(timeout): a timed lock wait cost four times the CPU
                # here (340 against 90 microseconds per 50 ms wait), and this runs 20 times a
                # second in every idle worker. ``stop`` waits at most one interval for it.
                time.sleep(interval)
                if self._stopping.is_set():
                    return
                self.polls += 1
                current = db.execute("PRAGMA data_version").fetchone()[0]
                if current == data_version:
                    interval = min(interval * 2, self._poll_max)
                    continue
                data_version = current
                interval = POLL_MIN
                versions = self._versions(db)
                queues = [
                    queue
                    for queue, version in versions.items()
                    if seen.get(queue) != version and self._own.get(queue) != version
                ]
                seen = versions
                if queues:
                    self._changed(queues)
        except sqlite3.Error:
            return  # the backend is closing or the file is gone: receivers still poll deadlines
        finally:
            db.close()

    @staticmethod
    def _versions(db: sqlite3.Connection) -> dict[str, int]:
        return dict(db.execute("SELECT queue, version FROM changes").fetchall())

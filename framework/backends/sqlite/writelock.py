"""The writers' turn: an OS lock on a file beside the database, held around each transaction.

SQLite lets one writer at a time into the file. A writer that finds it taken waits in SQLite's
busy handler, which sleeps 1, 2, 5, 10, ... 100 ms between attempts and never learns when the
lock comes free: two busy processes lose milliseconds at every collision, and one that keeps
missing its chance waited up to 630 ms in ``bench/sqlite.py``'s gateway run while the other
took the lock again and again. So every framework writer first takes an exclusive ``flock`` on
``PATH-lock`` (created beside the database, never written to) and holds it from
``BEGIN IMMEDIATE`` to ``COMMIT``: a waiter sleeps in the kernel and wakes the moment the
holder lets go. ``busy_timeout`` stays, for writers that do not take this lock (the ``sqlite3``
shell, another program): the lock only orders the framework's writers before SQLite's own.

- ``flock``, not ``fcntl`` record locks: a ``flock`` belongs to its open file, so two backends
  in one process (each with its own descriptor) take turns too, and closing one does not drop
  the other's lock; and the kernel lets it go when its process dies, ``kill -9`` included.
- **A bounded wait.** ``flock`` has no timeout, and a wait on a helper thread cost two more
  thread wake-ups per contended transaction (in ``bench/sqlite.py``'s gateway run, two
  processes served 2,001 requests/s with a helper against 2,266 without). So the backend's
  thread waits in ``flock`` itself, and a watchdog thread, started at the first contended
  wait and looking every ``timeout / 4`` (at most 0.5 s) while waits go on, fails the calls
  waiting for the thread once a wait has lasted ``timeout`` (``busy_timeout``): a holder that
  stops (``SIGSTOP``, a debugger) costs the others the same ``BackendUnavailableError`` as
  SQLite's own lock would, not a hang. When that wait ends, its calls are not run.
- **The file is optional.** If it cannot be created or opened (a read-only folder), writers go
  without it: SQLite's locking keeps the file correct, only the prompt wake-up is lost.
  Deleting it while processes run is safe the same way: the processes that opened the old one
  and those that create a new one no longer queue for each other, only for SQLite's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from framework.exceptions import BackendUnavailableError

__all__ = ["SUFFIX", "WriterLock", "lock_path"]

SUFFIX = "-lock"


def lock_path(database: Path) -> Path:
    """The lock file of ``database``: ``app.db`` -> ``app.db-lock``, as SQLite's ``-wal``."""
    return database.with_name(database.name + SUFFIX)


class WriterLock:
    """The writers' turn on one database file, taken by one thread (the backend's).

    Args:
        database: The database file; the lock is ``lock_path(database)``.
        timeout: The longest wait for another framework writer, in seconds (``busy_timeout``).
    """

    def __init__(self, database: Path, timeout: float) -> None:
        self.database = database
        self.path = lock_path(database)
        self.timeout = timeout
        # Called from the watchdog thread when a wait has lasted ``timeout``, with the error.
        self.on_timeout: Callable[[BaseException], None] | None = None
        self.waits = 0  # contended acquisitions (counted for the close log)
        self._fd: int | None = None
        self._held = False
        self._mutex = threading.Lock()
        self._since: float | None = None  # when the wait in progress began
        self._expired = False  # the wait in progress outlasted ``timeout``
        self._contended = threading.Event()  # wakes the watchdog
        self._watching = False
        self._closing = False

    @property
    def enabled(self) -> bool:
        """True if the lock file is open (else writers rely on SQLite's lock alone)."""
        return self._fd is not None

    def open(self) -> None:
        """Open (creating if needed) the lock file; without it, stay disabled, quietly."""
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):  # flock works on either
            with contextlib.suppress(OSError):
                self._fd = os.open(self.path, flags | os.O_CLOEXEC, 0o644)
                return

    def close(self) -> None:
        """Let the lock go, close the file and let the watchdog end (idempotent)."""
        self.release()
        with self._mutex:
            self._closing = True  # the watchdog ends at its next look (a daemon thread)
            self._contended.set()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def acquire(self) -> None:
        """Take the lock (a no-op when disabled); wait for another writer to let it go.

        Raises:
            BackendUnavailableError: If the wait lasted ``timeout`` (the watchdog has already
                failed the waiting calls with this error).
        """
        fd = self._fd
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._wait(fd)
        self._held = True

    def release(self) -> None:
        """Let the lock go, if held."""
        if self._held and self._fd is not None:
            self._held = False
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _wait(self, fd: int) -> None:
        self.waits += 1
        with self._mutex:
            self._since = time.monotonic()
            if not self._watching and not self._closing:
                self._watching = True
                threading.Thread(
                    target=self._watch, name="framework-sqlite-lock", daemon=True
                ).start()
            self._contended.set()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            with self._mutex:
                self._since = None
                expired, self._expired = self._expired, False
        if expired:
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise self._error()

    def _error(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"sqlite file {str(self.database)!r}: another process held the write lock "
            f"({self.path.name}) for more than busy_timeout ({self.timeout:g} s); the operation "
            "was not stored"
        )

    def _watch(self) -> None:
        tick = min(self.timeout / 4, 0.5)
        while True:
            self._contended.wait()
            time.sleep(tick)
            with self._mutex:
                if self._closing:
                    return
                since = self._since
                if since is None:  # no wait in progress: sleep until the next one
                    self._contended.clear()
                    continue
                fire = time.monotonic() - since >= self.timeout
                if fire:
                    self._expired = True
            if fire and self.on_timeout is not None:
                self.on_timeout(self._error())

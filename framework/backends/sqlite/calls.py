"""The backend's one thread, with group commit: the calls that wait for it share a transaction.

sqlite3 blocks, so every ``Store`` call runs on one thread of the backend's own, with one
connection; the event loop only awaits it. A call made while the thread is busy waits in a
list; when the thread comes free it takes every waiting call and runs them together in one
``BEGIN IMMEDIATE`` ... ``COMMIT``, each in a savepoint of its own (``schema.transaction``
nests), so a call that fails (an unknown queue) rolls back only its own writes. A call's
future is resolved after that commit, all of the batch's with one wake-up of the event loop:
``send`` still returns only once its message is committed and ``ack`` once its delete is, but
ten handlers acknowledging at once, or ten sends in flight, cost one commit instead of ten.

When the transaction itself fails (its write lock not taken within ``busy_timeout``, a full
disk at the commit, SQLite rolling it back after an I/O error), every call of the batch fails
with that error: none is reported stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .store import Outcome

__all__ = ["Calls"]

_T = TypeVar("_T")
RunBatch = Callable[[Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]], list[Outcome]]


def _settle(futures: list[asyncio.Future[Any]], outcomes: list[Outcome]) -> None:
    for future, (ok, value) in zip(futures, outcomes, strict=True):
        if future.done():  # its caller was cancelled: the call ran all the same
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Calls:
    """The thread and the calls waiting for it.

    The thread is the backend's own (not a ``ThreadPoolExecutor``: its ``submit`` cost 10% of
    a sending process's busy time in a profile of ``bench/sqlite.py``); it sleeps on a
    ``queue.SimpleQueue`` and is woken with one ``put`` when calls arrive while it is idle.

    Args:
        run_batch: Runs a list of ``(function, args)`` on the thread, in one transaction when
            there are several; returns each call's ``(ok, result or exception)``.
    """

    def __init__(self, run_batch: RunBatch) -> None:
        self._run_batch = run_batch
        self._jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._running: list[asyncio.Future[Any]] = []  # the batch on the thread now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._closed = False
        self.batches = 0  # batches run, one transaction each at most (logged at close)
        self.calls = 0
        self._thread = threading.Thread(target=self._run, name="framework-sqlite", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    async def alone(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run ``fn`` on the thread by itself, outside any batch (opening, closing the file)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()

        def job() -> None:
            try:
                outcome: Outcome = (True, fn(*args))
            except BaseException as exc:  # handed to the caller
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, [future], [outcome])

        self._jobs.put(job)
        return await future

    def submit(self, fn: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
        """Queue ``fn(*args)`` for the thread; the future resolves once its batch committed.

        Raises:
            RuntimeError: Once ``close`` was called.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("SQLiteBackend is not open: use 'async with backend:'")
            self._pending.append((fn, args, future))
            if self._draining:
                return future
            self._draining = True
            self._loop = loop
        self._jobs.put(functools.partial(self._drain, loop))
        return future

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._draining = False
                    return
                self._running = [f for _, _, f in batch]
            try:
                outcomes = self._run_batch([(fn, args) for fn, args, _ in batch])
            except BaseException as exc:  # handed to every caller of the batch
                outcomes = [(False, exc)] * len(batch)
            with self._lock:
                self._running = []
            self.batches += 1
            self.calls += len(batch)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, [f for _, _, f in batch], outcomes)

    def fail_waiting(self, error: BaseException) -> None:
        """From any thread: fail the batch on the thread and every call waiting for it.

        For a thread stuck waiting for the file's lock (``writelock.py``'s watchdog): the
        waiting calls are dropped, never run, and the stuck batch must not run either (its
        lock wait raises when it ends); their callers get ``error`` now.
        """
        with self._lock:
            waiting, self._pending = self._pending, []
            futures = self._running + [f for _, _, f in waiting]
            loop = self._loop
        if futures and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, futures, [(False, error)] * len(futures))

    async def close(self, final: Callable[[], object]) -> None:
        """Refuse new calls, let the waiting ones run, then run ``final`` and stop the thread."""
        with self._lock:
            self._closed = True
        try:
            # One thread, jobs in order: this runs after the drain that takes the last calls.
            await self.alone(final)
        finally:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)

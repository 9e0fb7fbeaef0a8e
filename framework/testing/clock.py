"""Clocks for tests: a virtual one for the memory backend, a real one that really sleeps."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from framework.clock import SystemClock

__all__ = ["RealClock", "VirtualClock"]


class _VirtualTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


async def settle(max_rounds: int = 10_000) -> None:
    """Yield to the event loop until no other callback is ready to run.

    Used after moving virtual time, so that everything the move woke up (deliveries,
    handlers, acknowledgements) has run before the test looks.
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    quiet = 0
    for _ in range(max_rounds):
        await asyncio.sleep(0)
        if ready is None:
            quiet += 1
            if quiet > 50:
                return
        elif not ready:
            quiet += 1
            if quiet > 2:
                return
        else:
            quiet = 0


class VirtualClock:
    """Time that moves only when a test says so: ``await clock.advance(seconds)``.

    Timers fire in deadline order, and the loop settles after each, so a visibility timeout
    that expires before a delay ends is seen to expire first.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._wall0 = datetime.now(UTC)
        self._heap: list[tuple[float, int, _VirtualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """Return virtual monotonic seconds."""
        return self._now

    def wall(self) -> datetime:
        """Return the wall-clock time at this virtual moment (aware UTC)."""
        return self._wall0 + timedelta(seconds=self._now)

    def call_at(self, when: float, callback: Callable[[], object]) -> _VirtualTimer:
        """Run ``callback`` when virtual time reaches ``when`` (soon, if it already has)."""
        timer = _VirtualTimer(callback)
        if when <= self._now:
            asyncio.get_running_loop().call_soon(lambda: timer.cancelled or timer.callback())
        else:
            heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    async def sleep_until(self, when: float) -> None:
        """Wait until virtual time reaches ``when``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_at(when, lambda: None if future.done() else future.set_result(None))
        try:
            await future
        finally:
            timer.cancel()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time."""
        await self.sleep_until(self._now + seconds)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing due timers in order and settling after each."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        target = self._now + seconds
        await settle()
        while self._heap and self._heap[0][0] <= target:
            when, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.callback()
            await settle()
        self._now = target
        await settle()


class RealClock(SystemClock):
    """The system clock, with ``advance`` that really sleeps: one test body, every backend."""

    async def advance(self, seconds: float) -> None:
        """Sleep ``seconds`` of real time."""
        await asyncio.sleep(seconds)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of real time."""
        await asyncio.sleep(seconds)

"""Time as the runtime sees it: a Clock protocol, and the system clock that real backends use."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "EarliestTimer", "SystemClock", "Timer", "parse_utc"]


class Timer(Protocol):
    """A scheduled callback that can be cancelled."""

    def cancel(self) -> None:
        """Stop the callback from running; a no-op if it already ran."""


class Clock(Protocol):
    """**Protocol**: monotonic seconds plus timers. The memory backend runs on a virtual one."""

    def now(self) -> float:
        """Return the current monotonic time in seconds."""

    def wall(self) -> datetime:
        """Return the current aware UTC datetime."""

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` once the clock reaches ``when`` (monotonic seconds)."""

    async def sleep_until(self, when: float) -> None:
        """Return once the clock reaches ``when``."""


class SystemClock:
    """The event loop's monotonic clock and the system's wall clock."""

    def now(self) -> float:
        """Return the event loop's monotonic time in seconds."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def wall(self) -> datetime:
        """Return the current aware UTC datetime."""
        return datetime.now(UTC)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Schedule ``callback`` on the running loop at monotonic time ``when``."""
        return asyncio.get_running_loop().call_at(when, callback)

    async def sleep_until(self, when: float) -> None:
        """Sleep until the loop's clock reaches ``when``."""
        delay = when - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


class EarliestTimer:
    """One timer for many deadlines: it fires at the earliest one asked for.

    ``by(when)`` moves it only when ``when`` is earlier than it fires, so deadlines that keep
    coming later cost no cancelled and new timer each; when it fires, the callback looks at
    what is due and sets the next deadline with ``at(when)`` (``math.inf``: none).
    """

    __slots__ = ("_call_at", "_callback", "_timer", "when")

    def __init__(
        self,
        call_at: Callable[[float, Callable[[], object]], Timer],
        callback: Callable[[], object],
    ) -> None:
        self._call_at = call_at
        self._callback = callback
        self._timer: Timer | None = None
        self.when = math.inf  # when it fires

    def by(self, when: float) -> None:
        """Make sure it fires by ``when``."""
        if when < self.when:
            self.at(when)

    def at(self, when: float) -> None:
        """Fire at ``when`` (``math.inf``: not at all), whatever was set before."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.when = when
        if when != math.inf:
            self._timer = self._call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer, self.when = None, math.inf
        self._callback()


def parse_utc(value: object) -> datetime | None:
    """Read a time a message carried (ISO 8601 text or bytes, or a datetime) as aware UTC.

    A time without a zone is taken as UTC; anything unreadable is None, never an error, so a
    damaged header never keeps a message from its handler.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

"""The dispatcher's watchdog: one timer per consumer, which only ever moves earlier.

Leases that settle leave the timer where it is; when it fires with nothing due it moves on to
the earliest deadline left, so every lease still expires at its own deadline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from framework.messages import Delivery
from framework.runtime.dispatch import Dispatcher, HandlerLease, _Watchdog
from framework.testing import VirtualClock

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _lease(deadline: float) -> HandlerLease:
    delivery = Delivery("q", "m", b"", {}, {}, 1, NOW, NOW, "r")
    # expire() reads only the lease itself: no dispatcher is needed to watch it.
    return HandlerLease(cast(Dispatcher, cast(Any, None)), delivery, deadline)


async def test_a_settled_lease_leaves_the_timer_and_the_next_lease_expires_on_time() -> None:
    """Disarm the earliest lease: the timer fires for nothing, then the later lease expires."""
    clock = VirtualClock()
    watchdog = _Watchdog(clock)
    early, late = _lease(10.0), _lease(20.0)
    watchdog.arm(early)
    watchdog.arm(late)
    watchdog.disarm(early)
    await clock.advance(10.0)
    assert (early.expired, late.expired) == (False, False)
    await clock.advance(9.9)
    assert late.expired is False
    await clock.advance(0.1)
    assert (early.expired, late.expired) == (False, True)


async def test_an_earlier_lease_moves_the_timer_earlier() -> None:
    """A lease armed after a later one still expires at its own, earlier, deadline."""
    clock = VirtualClock()
    watchdog = _Watchdog(clock)
    late, early = _lease(30.0), _lease(5.0)
    watchdog.arm(late)
    watchdog.arm_all([early], 5.0)
    await clock.advance(5.0)
    assert (early.expired, late.expired) == (True, False)
    await clock.advance(25.0)
    assert late.expired is True


async def test_an_extended_lease_expires_at_its_new_deadline() -> None:
    """Disarm, move the deadline later, arm again (what ``extend`` does): no early expiry."""
    clock = VirtualClock()
    watchdog = _Watchdog(clock)
    lease = _lease(10.0)
    watchdog.arm(lease)
    watchdog.disarm(lease)
    lease.deadline = 40.0
    watchdog.arm(lease)
    await clock.advance(39.0)
    assert lease.expired is False
    await clock.advance(1.0)
    assert lease.expired is True

"""Tests for framework.testing.clock.VirtualClock: time that moves only when a test moves it."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta

import pytest

from framework.testing import VirtualClock


async def test_time_starts_where_told_and_stands_still() -> None:
    """A new clock reads its start time and does not move by itself."""
    clock = VirtualClock(start=5.0)
    assert clock.now() == 5.0
    await asyncio.sleep(0.01)
    assert clock.now() == 5.0


async def test_advance_moves_now_and_wall_together() -> None:
    """``advance`` moves monotonic and wall time by the same amount."""
    clock = VirtualClock()
    wall = clock.wall()
    await clock.advance(90)
    assert clock.now() == 90.0
    assert clock.wall() - wall == timedelta(seconds=90)
    assert clock.wall().tzinfo is not None


async def test_timers_fire_in_deadline_order_whatever_the_scheduling_order() -> None:
    """Timers scheduled out of order fire in deadline order, each seeing its own time."""
    clock = VirtualClock()
    fired: list[tuple[str, float]] = []

    def record(name: str) -> None:
        fired.append((name, clock.now()))

    for name, when in [("c", 3.0), ("a", 1.0), ("b", 2.0)]:
        clock.call_at(when, functools.partial(record, name))
    await clock.advance(10)
    assert fired == [("a", 1.0), ("b", 2.0), ("c", 3.0)]


async def test_timers_with_equal_deadlines_fire_in_scheduling_order() -> None:
    """Two timers due at the same time fire in the order they were set."""
    clock = VirtualClock()
    fired: list[str] = []
    clock.call_at(1.0, lambda: fired.append("first"))
    clock.call_at(1.0, lambda: fired.append("second"))
    await clock.advance(1)
    assert fired == ["first", "second"]


async def test_only_timers_due_by_the_target_fire() -> None:
    """A timer exactly at the target fires; one after it waits for the next advance."""
    clock = VirtualClock()
    fired: list[float] = []
    clock.call_at(5.0, lambda: fired.append(5.0))
    clock.call_at(5.5, lambda: fired.append(5.5))
    await clock.advance(5)
    assert fired == [5.0]
    await clock.advance(0.5)
    assert fired == [5.0, 5.5]


async def test_cancelled_timer_does_not_fire() -> None:
    """A cancelled timer's callback never runs."""
    clock = VirtualClock()
    fired: list[str] = []
    timer = clock.call_at(1.0, lambda: fired.append("cancelled"))
    clock.call_at(2.0, lambda: fired.append("kept"))
    timer.cancel()
    await clock.advance(3)
    assert fired == ["kept"]


async def test_timer_in_the_past_runs_soon_without_advancing() -> None:
    """A timer whose time has come runs on the next loop iteration, and time stays put."""
    clock = VirtualClock(start=10.0)
    fired: list[float] = []
    clock.call_at(3.0, lambda: fired.append(clock.now()))
    assert fired == []
    await asyncio.sleep(0)
    assert fired == [10.0]


async def test_cancelled_past_timer_does_not_run() -> None:
    """A past-due timer cancelled before the loop runs it never fires."""
    clock = VirtualClock(start=10.0)
    fired: list[str] = []
    clock.call_at(10.0, lambda: fired.append("x")).cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert fired == []


async def test_timer_set_by_a_timer_within_the_advance_fires_in_the_same_advance() -> None:
    """A timer scheduled by a callback, still before the target, fires during that advance."""
    clock = VirtualClock()
    fired: list[float] = []

    def chain() -> None:
        fired.append(clock.now())
        clock.call_at(clock.now() + 1, lambda: fired.append(clock.now()))

    clock.call_at(1.0, chain)
    await clock.advance(5)
    assert fired == [1.0, 2.0]


async def test_sleeping_task_wakes_when_time_is_advanced_past_its_deadline() -> None:
    """``sleep`` returns once the clock is advanced far enough, and not before."""
    clock = VirtualClock()
    task = asyncio.create_task(clock.sleep(30))
    await clock.advance(29)
    assert not task.done()
    await clock.advance(1)
    assert task.done()
    await task


async def test_sleep_until_a_past_time_returns_without_advancing() -> None:
    """Sleeping until a time already reached returns at once."""
    clock = VirtualClock(start=10.0)
    await asyncio.wait_for(clock.sleep_until(4.0), timeout=1)
    assert clock.now() == 10.0


async def test_cancelled_sleep_does_not_disturb_other_sleepers() -> None:
    """Cancelling one sleeping task leaves another's wake-up intact."""
    clock = VirtualClock()
    cancelled = asyncio.create_task(clock.sleep(5))
    kept = asyncio.create_task(clock.sleep(5))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await clock.advance(5)
    assert kept.done()
    await kept


async def test_advance_backwards_raises() -> None:
    """Time cannot go backwards: a negative advance raises ValueError."""
    clock = VirtualClock(start=3.0)
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(-1)
    assert clock.now() == 3.0


async def test_advance_zero_runs_nothing_new_and_keeps_time() -> None:
    """``advance(0)`` fires no future timer and leaves the time unchanged."""
    clock = VirtualClock()
    fired: list[str] = []
    clock.call_at(0.001, lambda: fired.append("x"))
    await clock.advance(0)
    assert fired == []
    assert clock.now() == 0.0

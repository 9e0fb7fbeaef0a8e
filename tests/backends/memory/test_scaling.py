"""The memory backend scales: per-message cost does not grow with depth, and receives never poll.

Cost is checked two ways. Counting the Python and C calls an operation makes is deterministic
and catches any work done per queued message in Python; timing catches what counting cannot
see (a linear scan inside one C call, such as ``list.remove``), with a bound generous enough
for a busy two-core machine.
"""

from __future__ import annotations

import gc
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import anyio
import pytest
from anyio.lowlevel import checkpoint

from framework.backends.memory import MemoryBackend
from framework.clock import Timer
from framework.messages import Outgoing
from framework.registry import QueueSpec
from framework.testing.clock import VirtualClock

SHALLOW = 10
DEEP = 100_000
GROUPS = 10


class CountingClock(VirtualClock):
    """A virtual clock that counts the timers armed on it."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = 0

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Arm a timer, counting it."""
        self.armed += 1
        return super().call_at(when, callback)


class Filled:
    """A memory backend holding one queue ``depth`` messages deep, and a message factory."""

    def __init__(self, depth: int, *, fifo: bool) -> None:
        self.depth = depth
        self.fifo = fifo
        self.name = "scaling.fifo" if fifo else "scaling"
        self.backend = MemoryBackend(VirtualClock())
        self._ids = itertools.count()

    def message(self) -> Outgoing:
        """Return a fresh message (FIFO: spread over a few groups, each with its own id)."""
        n = next(self._ids)
        if not self.fifo:
            return Outgoing(body=b"payload")
        return Outgoing(body=b"payload", group_id=f"g{n % GROUPS}", deduplication_id=str(n))

    async def fill(self) -> Filled:
        """Declare the queue and send ``depth`` messages to it."""
        await self.backend.declare_queue(QueueSpec.from_options(self.name, visibility_timeout=30))
        for _ in range(self.depth):
            await self.backend.send(self.name, self.message())
        return self

    async def cycle(self, messages: list[Outgoing]) -> None:
        """For each message: send it, receive the oldest, acknowledge it; the depth stays put."""
        backend, name = self.backend, self.name
        for message in messages:
            await backend.send(name, message)
            [delivery] = await backend.receive(name, limit=1, wait=0)
            await backend.ack(delivery)


@contextmanager
def counting_calls() -> Iterator[list[int]]:
    """Count every Python and C function call made in this thread inside the block."""
    counter = [0]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            counter[0] += 1

    sys.setprofile(profile)
    try:
        yield counter
    finally:
        sys.setprofile(None)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the garbage collector: a full collection costs time in proportion to every live
    object in the process (pytest's included) and lands on whichever operation triggers it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def calls_per_message(queue: Filled, count: int = 500) -> float:
    """Return the calls one send, receive and ack make, averaged over ``count`` messages."""
    messages = [queue.message() for _ in range(count)]
    with counting_calls() as calls:
        await queue.cycle(messages)
    return calls[0] / count


async def seconds_per_message(queue: Filled, count: int = 500) -> float:
    """Return the wall-clock seconds one send, receive and ack take, over ``count`` messages."""
    messages = [queue.message() for _ in range(count)]
    start = time.perf_counter()
    await queue.cycle(messages)
    return (time.perf_counter() - start) / count


@pytest.fixture(scope="module", params=[False, True], ids=["standard", "fifo"])
def queues(request: pytest.FixtureRequest) -> tuple[Filled, Filled]:
    """A queue 10 messages deep and one 100,000 deep, filled once per module (it takes seconds).

    The tests only cycle messages through them, which leaves each depth as it was.
    """

    async def fill() -> tuple[Filled, Filled]:
        return (
            await Filled(SHALLOW, fifo=request.param).fill(),
            await Filled(DEEP, fifo=request.param).fill(),
        )

    return anyio.run(fill)


async def test_calls_per_message_do_not_grow_with_depth(queues: tuple[Filled, Filled]) -> None:
    """Send, receive and ack make as many calls 100,000 messages deep as 10 deep."""
    shallow, deep = queues

    at_shallow = await calls_per_message(shallow)
    at_deep = await calls_per_message(deep)

    assert at_deep <= at_shallow * 1.2, (at_shallow, at_deep)
    assert (await deep.backend.stats(deep.name)).depth == DEEP


async def test_time_per_message_does_not_grow_with_depth(queues: tuple[Filled, Filled]) -> None:
    """Send, receive and ack take under three times as long 100,000 messages deep as 10 deep."""
    shallow, deep = queues

    # Interleave the rounds and keep each side's best, so a burst of load on the machine
    # slows both sides or neither; stop early if a slow queue would run into the test timeout.
    best_shallow = best_deep = float("inf")
    budget = time.monotonic() + 10
    with collector_paused():
        for _ in range(7):
            best_shallow = min(best_shallow, await seconds_per_message(shallow))
            best_deep = min(best_deep, await seconds_per_message(deep))
            if time.monotonic() > budget:
                break

    assert best_deep < best_shallow * 3, (best_shallow, best_deep)


async def test_waiting_receive_wakes_on_send_without_polling() -> None:
    """A receive waiting 20 s returns as soon as a message is sent, on one timer, no time passed."""
    clock = CountingClock()
    backend = MemoryBackend(clock)
    await backend.declare_queue(QueueSpec.from_options("waiting"))
    received: list[bytes] = []

    async def receive() -> None:
        deliveries = await backend.receive("waiting", limit=1, wait=20)
        received.extend(d.body for d in deliveries)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(receive)
        await anyio.wait_all_tasks_blocked()
        for _ in range(100):  # a poller would arm more timers or keep running here
            await checkpoint()
        armed_while_waiting = clock.armed
        await backend.send("waiting", Outgoing(body=b"wake up"))
        for _ in range(10):  # a few turns of the loop, not 20 s nor any real time
            if received:
                break
            await checkpoint()
        answered = list(received)
        tasks.cancel_scope.cancel()

    assert armed_while_waiting == 1
    assert answered == [b"wake up"]
    assert clock.now() == 0

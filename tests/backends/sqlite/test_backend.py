"""``SQLiteBackend`` internals: what the file keeps for every process that opens it.

Two backends on one file stand for two processes (each has its own connection and thread).
Time moves with ``Shifted``, a system clock whose wall time can be pushed forward, because
every deadline in the file is wall-clock time: leases expire and windows close at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from framework.backends.sqlite import SQLiteBackend
from framework.backends.sqlite.settings import SQLiteSettings
from framework.clock import SystemClock
from framework.exceptions import (
    BackendUnavailableError,
    ConfigError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.messages import (
    DLQ_ERROR_TYPE,
    DLQ_SOURCE,
    AttributeValue,
    DeadLetterReason,
    Outgoing,
    OutgoingMail,
)
from framework.registry import QueueSpec, SubscriptionSpec, TopicSpec


class Shifted(SystemClock):
    """The system clock with a wall time that ``advance`` moves forward without sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def wall(self) -> datetime:
        """Return the shifted wall time."""
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        """Move the wall time ``seconds`` forward."""
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Shifted:
    """One clock for both backends, as one machine has one."""
    return Shifted()


@pytest.fixture
async def pair(
    tmp_path: Path, clock: Shifted
) -> AsyncIterator[tuple[SQLiteBackend, SQLiteBackend]]:
    """Two backends on one file, with queues ``q`` and FIFO ``f.fifo`` declared."""
    settings = SQLiteSettings.from_url(f"sqlite:///{tmp_path / 'pair.db'}")
    a, b = SQLiteBackend(settings, clock), SQLiteBackend(settings, clock)
    async with a, b:
        for spec in (
            QueueSpec.from_options("q", visibility_timeout=30),
            QueueSpec.from_options("q-dlq"),
            QueueSpec.from_options("f.fifo", visibility_timeout=30),
            QueueSpec.from_options("f-dlq.fifo"),
        ):
            await a.declare_queue(spec)
        yield a, b


def msg(
    body: str,
    *,
    delay: float = 0.0,
    group_id: str | None = None,
    deduplication_id: str | None = None,
    attributes: dict[str, AttributeValue] | None = None,
) -> Outgoing:
    """A message with a text body."""
    return Outgoing(
        body=body.encode(),
        attributes=attributes or {},
        delay=delay,
        group_id=group_id,
        deduplication_id=deduplication_id,
    )


async def test_a_lease_hides_the_message_from_every_process_until_it_expires(
    pair: tuple[SQLiteBackend, SQLiteBackend], clock: Shifted
) -> None:
    """B cannot receive what A holds; once A's lease ends, B gets it with receive count 2."""
    a, b = pair
    await a.send("q", msg("x"))
    [first] = await a.receive("q", limit=10, wait=0)
    assert await b.receive("q", limit=10, wait=0) == []
    stats = await b.stats("q")
    assert (stats.depth, stats.in_flight) == (0, 1)
    clock.advance(31)
    [second] = await b.receive("q", limit=10, wait=0)
    assert second.message_id == first.message_id
    assert second.receive_count == 2
    assert second.first_received_at == first.first_received_at
    await a.ack(first)  # A's receipt is stale now: nothing happens
    assert (await b.stats("q")).in_flight == 1
    await b.ack(second)
    assert (await a.stats("q")).depth == 0


async def test_an_expired_lease_still_settles_until_the_message_is_received_again(
    pair: tuple[SQLiteBackend, SQLiteBackend], clock: Shifted
) -> None:
    """As on SQS, a handler that finished just past its deadline may still ack its message."""
    a, _ = pair
    await a.send("q", msg("late"))
    [delivery] = await a.receive("q", limit=1, wait=0)
    clock.advance(31)
    await a.ack(delivery)
    stats = await a.stats("q")
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_deduplication_spans_processes_for_five_minutes(
    pair: tuple[SQLiteBackend, SQLiteBackend], clock: Shifted
) -> None:
    """An id sent by A is dropped when B sends it within 300 s, accepted after."""
    a, b = pair
    first = await a.send("f.fifo", msg("1", group_id="g", deduplication_id="d"))
    assert await b.send("f.fifo", msg("2", group_id="g", deduplication_id="d")) == first
    clock.advance(299)
    assert await b.send("f.fifo", msg("3", group_id="g", deduplication_id="d")) == first
    clock.advance(2)
    assert await b.send("f.fifo", msg("4", group_id="g", deduplication_id="d")) != first
    bodies = []
    while got := await a.receive("f.fifo", limit=10, wait=0):
        for delivery in got:
            bodies.append(delivery.body)
            await a.ack(delivery)
    assert bodies == [b"1", b"4"]


async def test_a_fifo_group_is_locked_for_every_process_while_its_head_is_out(
    pair: tuple[SQLiteBackend, SQLiteBackend],
) -> None:
    """While A holds group g's head, B gets only other groups; after A's ack, g's next."""
    a, b = pair
    for body, group in (("g1", "g"), ("g2", "g"), ("h1", "h")):
        await a.send("f.fifo", msg(body, group_id=group))
    [head] = await a.receive("f.fifo", limit=1, wait=0)
    assert head.body == b"g1"
    got = await b.receive("f.fifo", limit=10, wait=0)
    assert [d.body for d in got] == [b"h1"]
    await b.ack(got[0])
    assert await b.receive("f.fifo", limit=10, wait=0) == []
    await a.ack(head)
    [after] = await b.receive("f.fifo", limit=10, wait=0)
    assert after.body == b"g2"


async def test_leaving_gives_back_what_the_process_still_holds(
    tmp_path: Path, clock: Shifted
) -> None:
    """A backend closed with a lease out makes that message visible at once, not after 30 s."""
    settings = SQLiteSettings.from_url(f"sqlite:///{tmp_path / 'leave.db'}")
    async with SQLiteBackend(settings, clock) as a:
        await a.declare_queue(QueueSpec.from_options("q", visibility_timeout=30))
        await a.send("q", msg("held"))
        assert len(await a.receive("q", limit=1, wait=0)) == 1
    async with SQLiteBackend(settings, clock) as b:
        [again] = await b.receive("q", limit=1, wait=0)
    assert again.receive_count == 2


async def test_delays_retries_and_retention_are_deadlines_in_the_file(
    pair: tuple[SQLiteBackend, SQLiteBackend], clock: Shifted
) -> None:
    """A delayed message, a released one and an expired one, all seen from the other backend."""
    a, b = pair
    await a.send("q", msg("later", delay=10))
    assert (await b.stats("q")).delayed == 1
    assert await b.receive("q", limit=1, wait=0) == []
    clock.advance(10)
    [delivery] = await b.receive("q", limit=1, wait=0)
    await b.release(delivery, delay=5)
    assert await a.receive("q", limit=1, wait=0) == []
    clock.advance(5)
    [retried] = await a.receive("q", limit=1, wait=0)
    assert retried.receive_count == 2
    await a.release(retried, delay=0)
    clock.advance(4 * 24 * 3600 + 1)  # past the default retention of 4 days
    assert await b.receive("q", limit=1, wait=0) == []  # which also deleted it from the file
    rows = b.store.db.execute("SELECT COUNT(*) FROM messages WHERE queue = 'q'").fetchone()[0]
    assert rows == 0


async def test_dead_letter_moves_the_message_with_its_reason_in_one_step(
    pair: tuple[SQLiteBackend, SQLiteBackend],
) -> None:
    """The dead letter keeps id, body, attributes and sent time, and gains the reason headers."""
    a, b = pair
    await a.send("q", msg("bad", attributes={"n": 1, "tag": "x"}))
    [delivery] = await a.receive("q", limit=1, wait=0)
    reason = DeadLetterReason("q", 1, "ValueError", "nope", datetime.now(UTC))
    await a.dead_letter(delivery, reason=reason)
    stats = await b.stats("q")
    assert (stats.depth, stats.in_flight, stats.dead_letters) == (0, 0, 1)
    [dead] = await b.receive("q-dlq", limit=1, wait=0)
    assert (dead.message_id, dead.body, dead.sent_at) == (
        delivery.message_id,
        b"bad",
        delivery.sent_at,
    )
    assert dead.attributes == {"n": 1, "tag": "x"}
    assert dead.headers[DLQ_SOURCE] == "q"
    assert dead.headers[DLQ_ERROR_TYPE] == "ValueError"
    assert dead.receive_count == 1


async def test_topics_and_filter_policies_live_in_the_file(
    pair: tuple[SQLiteBackend, SQLiteBackend],
) -> None:
    """A subscription made by A is used by B's publish, filter policy included."""
    a, b = pair
    await a.declare_topic(TopicSpec.from_options("events"))
    for name, policy in (("all", None), ("big", {"size": [{"numeric": [">", 10]}]})):
        queue = QueueSpec.from_options(SubscriptionSpec.queue_name("events", name))
        await a.declare_queue(queue)
        await a.subscribe(SubscriptionSpec("events", name, queue, filter_policy=policy))
    await b.publish("events", msg("small", attributes={"size": 1}))
    await b.publish("events", msg("large", attributes={"size": 50}))
    assert (await a.stats("events.all")).depth == 2
    [large] = await a.receive("events.big", limit=10, wait=0)
    assert large.body == b"large"
    with pytest.raises(UnknownTopicError, match="'nope'"):
        await b.publish("nope", msg("x"))
    missing = await b.missing(
        [QueueSpec.from_options("q"), QueueSpec.from_options("gone")],
        [TopicSpec.from_options("events")],
        [SubscriptionSpec("events", "other", None)],
    )
    assert missing == ["queue 'gone'", "subscription 'other' of topic 'events'"]


async def test_unknown_queues_are_named_with_the_file(
    pair: tuple[SQLiteBackend, SQLiteBackend],
) -> None:
    """send, receive and stats on a queue the file lacks say which queue and which file."""
    a, _ = pair
    for call in (
        a.send("nope", msg("x")),
        a.receive("nope", limit=1, wait=0),
        a.stats("nope"),
        a.purge("nope"),
    ):
        with pytest.raises(UnknownQueueError, match=r"'nope' does not exist in .*pair\.db"):
            await call


async def test_mail_is_kept_in_the_files_outbox(tmp_path: Path) -> None:
    """send_mail stores the mail; a later process reads it back from the file."""
    url = f"sqlite:///{tmp_path / 'mail.db'}"
    mail = OutgoingMail("a@x.example", ("b@y.example",), b"Subject: hi\r\n\r\nhello", "<1@x>")
    async with SQLiteBackend.from_url(url) as backend:
        assert await backend.send_mail(mail) == "<1@x>"
        assert backend.outbox == [mail]
    async with SQLiteBackend.from_url(url) as backend:
        assert await backend._call(backend.store.outbox) == [mail]


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///app.db", "app.db"),
        ("sqlite:///.framework/shop.db", ".framework/shop.db"),
        ("sqlite:////var/lib/app.db", "/var/lib/app.db"),
        ("sqlite:///my%20app.db?synchronous=full", "my app.db"),
    ],
)
def test_urls_name_relative_and_absolute_files(url: str, path: str) -> None:
    """Three slashes: relative to the working directory; four: absolute."""
    assert str(SQLiteSettings.from_url(url).path) == path


def test_synchronous_defaults_to_normal_and_can_be_full() -> None:
    """WAL with synchronous=NORMAL by default; ?synchronous=full for power-loss durability."""
    assert SQLiteSettings.from_url("sqlite:///a.db").synchronous == "normal"
    assert SQLiteSettings.from_url("sqlite:///a.db?synchronous=FULL").synchronous == "full"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("sqlite://host/app.db", "not a SQLite URL"),
        ("sqlite:///", "names no file"),
        ("sqlite:///:memory:", "use memory://"),
        ("sqlite:///a.db?synchronous=off", "must be one of normal, full, extra"),
        ("sqlite:///a.db?busy_timeout=0", "busy_timeout='0'"),
        ("sqlite:///a.db?lease_grace=-1", "lease_grace='-1'"),
        ("sqlite:///a.db?poll_max=0", "poll_max='0'"),
        ("sqlite:///a.db?fast=1", "fast"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, error: str) -> None:
    """Each bad URL names what is wrong."""
    with pytest.raises(ConfigError, match=error):
        SQLiteSettings.from_url(url)


@pytest.mark.parametrize(("option", "level"), [("", 1), ("?synchronous=full", 2)])
async def test_the_file_is_in_wal_mode_with_the_chosen_synchronous_level(
    tmp_path: Path, option: str, level: int
) -> None:
    """WAL always; synchronous NORMAL (1) by default, FULL (2) when asked; busy_timeout set."""
    async with SQLiteBackend.from_url(f"sqlite:///{tmp_path / 'p.db'}{option}") as backend:
        db = backend.store.db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == level
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the file's write lock from a connection of another "process" meanwhile."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("COMMIT")
    finally:
        other.close()


async def queued(backend: SQLiteBackend, count: int) -> None:
    """Wait until the backend's thread is busy and ``count`` calls wait for it."""
    calls = backend._calls
    assert calls is not None
    for _ in range(500):
        await asyncio.sleep(0.01)
        if calls._draining and len(calls._pending) == count:
            return
    raise AssertionError(f"{len(calls._pending)} calls waiting, not {count}")


async def test_calls_waiting_for_the_thread_share_one_commit(
    pair: tuple[SQLiteBackend, SQLiteBackend], tmp_path: Path
) -> None:
    """While another process holds the lock, one send waits on it and 20 more queue up; none
    returns before its commit; then the 20 are stored in one transaction, a failing one (an
    unknown queue) rolling back only itself, and every stored one is visible to B."""
    a, b = pair
    assert a._calls is not None
    batches = a._calls.batches
    with write_lock(tmp_path / "pair.db"):
        first = asyncio.ensure_future(a.send("q", msg("first")))
        await queued(a, 0)
        rest = [asyncio.ensure_future(a.send("q", msg(f"m{n}"))) for n in range(19)]
        unknown = asyncio.ensure_future(a.send("nope", msg("lost")))
        await queued(a, 20)
        assert not first.done()  # nothing returns before its commit
        assert not any(t.done() for t in rest)
    ids = await asyncio.gather(first, *rest)
    with pytest.raises(UnknownQueueError):
        await unknown
    assert a._calls.batches - batches == 2  # the first send alone, then the 20 together
    got = await b.receive("q", limit=10, wait=0) + await b.receive("q", limit=10, wait=0)
    assert sorted(d.message_id for d in got) == sorted(ids)
    assert sorted(d.body for d in got) == sorted([b"first", *(f"m{n}".encode() for n in range(19))])


async def test_a_batch_whose_transaction_fails_stores_none_of_it(tmp_path: Path) -> None:
    """The write lock held past busy_timeout: the waiting sends all fail, and none is stored."""
    url = f"sqlite:///{tmp_path / 'locked.db'}?busy_timeout=0.3"
    async with SQLiteBackend.from_url(url) as backend:
        await backend.declare_queue(QueueSpec.from_options("q"))
        with write_lock(tmp_path / "locked.db"):
            sends = [asyncio.ensure_future(backend.send("q", msg(f"m{n}"))) for n in range(10)]
            results = await asyncio.gather(*sends, return_exceptions=True)
        assert all(isinstance(r, BackendUnavailableError) for r in results), results
        assert (await backend.stats("q")).depth == 0

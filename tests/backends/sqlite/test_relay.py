"""The WebSocket relay through the file: requests to the process holding a connection, and
how a stopped, killed or silent owner is found out.

Two backends on one file stand for two processes. The owners' ``serve`` functions here stand
for ``Connections.serve``; ``tests/websocket/`` drives the real one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from framework.backends.sqlite import SQLiteBackend
from framework.backends.sqlite.relay import (
    FORGET,
    LEASE,
    SQLiteConnectionRelay,
    has_exited,
    process_identity,
)
from framework.backends.sqlite.schema import SCHEMA_VERSION
from framework.backends.sqlite.settings import SQLiteSettings
from framework.exceptions import ConfigError, ConnectionGoneError
from framework.messages import Outgoing
from framework.registry import QueueSpec
from framework.websocket import Reply, Request
from tests.backends.sqlite.test_backend import Shifted
from tests.fleet import until

LINUX_PROC = bool(process_identity())


async def echo(request: Request) -> Reply:
    """An owner that answers every request with what it got."""
    return {"echo": dict(request)}


async def never(request: Request) -> Reply:
    """An owner that never answers."""
    await asyncio.sleep(3600)
    return {}


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child process that sleeps a minute; killed and reaped afterwards."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


@pytest.fixture
def clock() -> Shifted:
    """One clock for both backends."""
    return Shifted()


@pytest.fixture
async def pair(
    tmp_path: Path, clock: Shifted
) -> AsyncIterator[tuple[SQLiteBackend, SQLiteBackend]]:
    """Two open backends on one file."""
    settings = SQLiteSettings.from_url(f"sqlite:///{tmp_path / 'relay.db'}")
    a, b = SQLiteBackend(settings, clock), SQLiteBackend(settings, clock)
    async with a, b:
        yield a, b


def rows(path: Path, table: str) -> list[tuple[object, ...]]:
    """Every row of ``table`` in the file, read by a connection of the test's own."""
    with sqlite3.connect(path) as db:
        return list(db.execute(f"SELECT * FROM {table}"))


def fake_owner(path: Path, process: str, identity: str, seen_at: float) -> None:
    """Register a process that will never beat nor answer (as one killed would leave)."""
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO processes (process, identity, started_at, seen_at) VALUES (?, ?, ?, ?)",
            (process, identity, seen_at, seen_at),
        )


async def test_a_request_reaches_the_owner_and_its_answer_comes_back(
    pair: tuple[SQLiteBackend, SQLiteBackend],
) -> None:
    """Each side asks the other through the file and gets the other's answer; rows are gone."""
    a, b = pair
    ra = await a.connection_relay("pa", echo)
    rb = await b.connection_relay("pb", echo)
    try:
        assert await ra.call("pb", {"op": "info", "id": "pb.x"}) == {
            "echo": {"op": "info", "id": "pb.x"}
        }
        replies = await asyncio.gather(
            *(rb.call("pa", {"op": "send", "id": "pa.y", "text": str(n)}) for n in range(20))
        )
        assert [r["echo"]["text"] for r in replies] == [str(n) for n in range(20)]
        assert rows(a.settings.path, "relay") == []
        assert sorted(r[0] for r in rows(a.settings.path, "processes")) == ["pa", "pb"]
    finally:
        await ra.aclose()
        await rb.aclose()
    assert rows(a.settings.path, "processes") == []


async def test_a_stopped_owner_is_gone_at_once_and_answers_what_it_had_not_claimed(
    pair: tuple[SQLiteBackend, SQLiteBackend],
) -> None:
    """After the owner stopped, a request fails at once; those waiting at its stop hear gone."""
    a, b = pair
    ra = await a.connection_relay("pa", echo)
    rb = await b.connection_relay("pb", never)
    path = a.settings.path

    def stored(claimed: int) -> bool:  # both requests are in the file, ``claimed`` of them
        with sqlite3.connect(path) as db:
            count, taken = db.execute("SELECT count(*), total(claimed) FROM relay").fetchone()
        return bool(count == 2 and taken >= claimed)

    try:
        waiting = asyncio.create_task(ra.call("pb", {"op": "send", "id": "pb.x", "text": "1"}))
        late = asyncio.create_task(ra.call("pb", {"op": "send", "id": "pb.x", "text": "2"}))
        # Both stored before pb stops: a request that reaches the file after its owner's row
        # is gone fails at once instead (the third call below), so waiting for the rows makes
        # the order certain. pb claims what it is woken for and never answers.
        await until(lambda: stored(claimed=1), 5.0, "both requests stored, one claimed")
        await rb.aclose()
        started = time.monotonic()
        with pytest.raises(ConnectionGoneError, match="has stopped"):
            await ra.call("pb", {"op": "send", "id": "pb.x", "text": "3"})
        gone = {"error": "gone", "detail": "the process holding it has stopped"}
        assert await waiting == gone  # Connections raises ConnectionGoneError on it
        assert await late == gone
        assert time.monotonic() - started < 2.0
    finally:
        await ra.aclose()


@pytest.mark.skipif(not LINUX_PROC, reason="needs Linux's /proc to tell a process has exited")
async def test_an_owner_killed_with_sigkill_is_gone_at_once(
    pair: tuple[SQLiteBackend, SQLiteBackend], sleeper: subprocess.Popen[bytes]
) -> None:
    """The owner's row names its OS process: once that was killed, a push fails at once."""
    a, _ = pair
    identity = process_identity(sleeper.pid)
    fake_owner(a.settings.path, "victim", identity, a.clock.wall().timestamp())
    assert not has_exited(identity)
    sleeper.kill()
    sleeper.wait()
    ra = await a.connection_relay("pa", echo)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionGoneError, match="has died"):
            await ra.call("victim", {"op": "send", "id": "victim.x", "text": "hi"})
        assert time.monotonic() - started < 0.5
    finally:
        await ra.aclose()


@pytest.mark.skipif(not LINUX_PROC, reason="needs Linux's /proc")
def test_process_identity_tells_exited_zombie_and_reused_processes(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """A live process has not exited; a killed one has, reaped or not (a zombie)."""
    identity = process_identity(sleeper.pid)
    assert not has_exited(identity)
    assert not has_exited(process_identity())
    sleeper.kill()
    deadline = time.monotonic() + 5
    while not has_exited(identity) and time.monotonic() < deadline:  # a zombie, unreaped
        time.sleep(0.01)
    assert has_exited(identity)
    sleeper.wait()
    assert has_exited(identity)
    boot, namespace, pid, started = identity.split("/")
    assert has_exited(f"{boot}/{namespace}/{pid}/{int(started) + 1}")  # a reused pid
    assert not has_exited(f"another-boot/{namespace}/{pid}/{started}")  # cannot tell
    assert not has_exited("")


async def test_an_owner_silent_past_its_lease_is_gone_while_a_request_waits(
    pair: tuple[SQLiteBackend, SQLiteBackend], clock: Shifted
) -> None:
    """An owner that stopped beating (no OS process to look at) is gone once its lease ends."""
    a, _ = pair
    fake_owner(a.settings.path, "silent", "", a.clock.wall().timestamp())
    ra = await a.connection_relay("pa", echo)
    try:
        call = asyncio.create_task(ra.call("silent", {"op": "send", "id": "silent.x"}))
        await asyncio.sleep(0.1)
        assert not call.done()
        clock.advance(LEASE + 1)
        started = time.monotonic()
        with pytest.raises(ConnectionGoneError, match="has not been seen for 6"):
            await call
        assert time.monotonic() - started < 1.5
        with pytest.raises(ConnectionGoneError, match="has not been seen"):
            await ra.call("silent", {"op": "send", "id": "silent.x"})
    finally:
        await ra.aclose()


async def test_an_owner_that_does_not_answer_is_gone_after_the_timeout(
    pair: tuple[SQLiteBackend, SQLiteBackend],
) -> None:
    """A live owner that never answers: the sender gives up after its timeout, row deleted."""
    a, b = pair
    ra = await a.connection_relay("pa", echo)
    rb = await b.connection_relay("pb", never)
    assert isinstance(ra, SQLiteConnectionRelay)
    ra.timeout = 0.3
    try:
        with pytest.raises(ConnectionGoneError, match=r"did not answer within 0\.3s"):
            await ra.call("pb", {"op": "send", "id": "pb.x"})
        await asyncio.sleep(0.05)
        assert [r for r in rows(a.settings.path, "relay") if r[2] == "pa"] == []
    finally:
        await rb.aclose()
        await ra.aclose()


async def test_processes_silent_for_a_minute_and_their_requests_are_forgotten(
    pair: tuple[SQLiteBackend, SQLiteBackend], clock: Shifted
) -> None:
    """A heartbeat deletes the rows of processes silent past FORGET, and old requests."""
    a, _ = pair
    fake_owner(a.settings.path, "old", "", a.clock.wall().timestamp())
    ra = await a.connection_relay("pa", echo)
    try:
        clock.advance(FORGET + 1)
        forgotten = await a._call(ra.tables.heartbeat, "pa", "", a.clock.wall().timestamp())
        assert forgotten == 1
        assert [r[0] for r in rows(a.settings.path, "processes")] == ["pa"]
    finally:
        await ra.aclose()


async def test_a_version_1_file_is_upgraded_and_keeps_its_messages(tmp_path: Path) -> None:
    """A file of schema version 1 gains the relay's tables on opening; its messages stay."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    async with SQLiteBackend.from_url(url) as backend:
        await backend.declare_queue(QueueSpec(name="q"))
        await backend.send("q", Outgoing(body=b"kept"))
    with sqlite3.connect(tmp_path / "old.db") as db:  # back to what version 1 wrote
        db.execute("DROP TABLE relay")
        db.execute("DROP TABLE processes")
        db.execute("UPDATE framework_meta SET value = '1' WHERE key = 'schema_version'")
    async with SQLiteBackend.from_url(url) as backend:
        assert [d.body for d in await backend.receive("q", limit=1, wait=0)] == [b"kept"]
        relay = await backend.connection_relay("p", echo)
        await relay.aclose()
    with sqlite3.connect(tmp_path / "old.db") as db:
        meta = dict(db.execute("SELECT key, value FROM framework_meta"))
    assert meta["schema_version"] == SCHEMA_VERSION == "2"


async def test_a_file_of_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    """A file a newer framework wrote is refused with both versions named; nothing changes."""
    path = tmp_path / "new.db"
    async with SQLiteBackend.from_url(f"sqlite:///{path}"):
        pass
    with sqlite3.connect(path) as db:
        db.execute("UPDATE framework_meta SET value = '3' WHERE key = 'schema_version'")
        db.execute("DROP TABLE relay")
    with pytest.raises(ConfigError, match=r"'schema_version': '3'.*newer framework"):
        async with SQLiteBackend.from_url(f"sqlite:///{path}"):
            pass
    tables = {r[1] for r in rows(path, "sqlite_master") if r[0] == "table"}
    assert "processes" in tables
    assert "relay" not in tables

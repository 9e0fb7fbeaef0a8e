"""The writers' lock (``writelock.py``): framework writers queue on ``PATH-lock`` before SQLite's
own lock; the kernel lets it go when its holder dies; a stuck holder costs an error after
``busy_timeout``, not a hang; and without the file everything still works on SQLite's lock.

A holder in another process is a real child: a ``SQLiteBackend`` whose send holds the lock
file while it waits for SQLite's write lock, which the test holds from a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from framework.backends.sqlite import SQLiteBackend
from framework.backends.sqlite.writelock import lock_path
from framework.exceptions import BackendUnavailableError
from framework.messages import Outgoing
from framework.registry import QueueSpec
from tests.backends.sqlite.test_backend import write_lock

# A child that opens the file, says "ready", and sends one message when told (a line on stdin).
HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from framework.backends.sqlite import SQLiteBackend
    from framework.messages import Outgoing

    async def main() -> None:
        async with SQLiteBackend.from_url(sys.argv[1] + "?busy_timeout=60") as backend:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            await backend.send("q", Outgoing(body=b"from the child"))
            print("sent", flush=True)

    asyncio.run(main())
    """
)


def msg(body: str) -> Outgoing:
    """A message with a text body."""
    return Outgoing(body=body.encode())


def held_elsewhere(path: Path) -> bool:
    """True if some other open file holds the lock file's flock."""
    fd = os.open(lock_path(path), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


async def until(condition: object, what: str) -> None:
    """Wait (up to 20 s) until ``condition()`` is true."""
    for _ in range(2000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    """A backend on a fresh file with queue ``q``; a short busy_timeout."""
    async with SQLiteBackend.from_url(
        f"sqlite:///{tmp_path / 'app.db'}?busy_timeout=0.5"
    ) as backend:
        await backend.declare_queue(QueueSpec.from_options("q"))
        yield backend


@contextlib.contextmanager
def holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process with a backend on ``path``, between "ready" and its send."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"sqlite:///{path}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            yield child
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGCONT)
                child.kill()


def stopped(pid: int) -> bool:
    """True once process ``pid`` is stopped (``kill`` only sends the signal)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] == "T"


async def start_holding(child: subprocess.Popen[str], path: Path) -> None:
    """Make the child's send take the lock file and wait there for SQLite's lock."""
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    await until(lambda: held_elsewhere(path), "the child held the lock file")


async def test_the_lock_file_is_made_beside_the_database(backend: SQLiteBackend) -> None:
    """Opening creates ``app.db-lock`` next to ``app.db``; it is empty and writes use it."""
    path = lock_path(backend.settings.path)
    assert path.name == "app.db-lock"
    assert path.exists()
    assert backend.store.lock.enabled
    await backend.send("q", msg("one"))
    assert path.stat().st_size == 0


async def test_a_writer_waits_for_the_lock_file_and_goes_on_when_it_is_let_go(
    backend: SQLiteBackend,
) -> None:
    """Another framework writer holds the lock file: a send waits (it is not done and nothing
    is stored), and is stored once the lock is let go; the wait is counted."""
    fd = os.open(lock_path(backend.settings.path), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        sending = asyncio.ensure_future(backend.send("q", msg("waits")))
        await until(lambda: backend.store.lock.waits == 1, "the send waited for the lock")
        assert not sending.done()
        with sqlite3.connect(backend.settings.path) as db:
            assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        await sending
    finally:
        os.close(fd)
    assert (await backend.stats("q")).depth == 1


async def test_kill_9_of_a_process_holding_the_lock_file_frees_it(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    """A child holds the lock file (its send waits for SQLite's lock) and is killed with
    SIGKILL: the kernel lets the lock go, this process's sends are stored, the child's not."""
    path = tmp_path / "app.db"
    with holder(path) as child, write_lock(path):
        await start_holding(child, path)
        child.kill()
        child.wait(10)
        assert not held_elsewhere(path)
    ids = [await backend.send("q", msg(f"after {n}")) for n in range(3)]
    got = await backend.receive("q", limit=10, wait=0)
    print(f"\nkill -9 of the holder: sent=3 stored={len(got)} lost={3 - len(got)}")  # noqa: T201
    assert sorted(d.message_id for d in got) == sorted(ids)


async def test_a_stopped_holder_costs_an_error_after_busy_timeout_not_a_hang(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    """A child holding the lock file is stopped (SIGSTOP): sends here fail with
    BackendUnavailableError naming the file after busy_timeout (0.5 s) and are not stored;
    once it runs again and its send committed, sends here are stored."""
    path = tmp_path / "app.db"
    with holder(path) as child:
        with write_lock(path):
            await start_holding(child, path)
            os.kill(child.pid, signal.SIGSTOP)
            await until(lambda: stopped(child.pid), "the child stopped")
        sends = [asyncio.ensure_future(backend.send("q", msg(f"m{n}"))) for n in range(5)]
        results = await asyncio.gather(*sends, return_exceptions=True)
        assert all(isinstance(r, BackendUnavailableError) for r in results), results
        assert str(path) in str(results[0])
        assert "write lock" in str(results[0])
        os.kill(child.pid, signal.SIGCONT)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "sent"
        child.wait(10)
        await backend.send("q", msg("after"))
    got = await backend.receive("q", limit=10, wait=0)
    assert sorted(d.body for d in got) == [b"after", b"from the child"]


async def test_a_deleted_lock_file_is_safe(backend: SQLiteBackend, tmp_path: Path) -> None:
    """The lock file deleted while a backend has it open: a second backend makes a new one,
    and both still write and read every message (SQLite's own lock keeps them apart)."""
    lock_path(tmp_path / "app.db").unlink()
    async with SQLiteBackend.from_url(f"sqlite:///{tmp_path / 'app.db'}") as other:
        assert lock_path(tmp_path / "app.db").exists()
        sent = await asyncio.gather(
            *(backend.send("q", msg(f"a{n}")) for n in range(10)),
            *(other.send("q", msg(f"b{n}")) for n in range(10)),
        )
        got = await other.receive("q", limit=10, wait=0) + await backend.receive(
            "q", limit=10, wait=0
        )
    assert sorted(d.message_id for d in got) == sorted(sent)


async def test_without_a_lock_file_writes_rely_on_sqlite_alone(tmp_path: Path) -> None:
    """The lock file cannot be made (its name is a link to a folder that does not exist): the
    backend opens, sends and receives, on SQLite's lock alone."""
    path = tmp_path / "app.db"
    lock_path(path).symlink_to(tmp_path / "missing" / "lock")
    async with SQLiteBackend.from_url(f"sqlite:///{path}") as backend:
        assert not backend.store.lock.enabled
        await backend.declare_queue(QueueSpec.from_options("q"))
        sent = await asyncio.gather(*(backend.send("q", msg(f"m{n}")) for n in range(5)))
        got = await backend.receive("q", limit=10, wait=0)
    assert sorted(d.message_id for d in got) == sorted(sent)

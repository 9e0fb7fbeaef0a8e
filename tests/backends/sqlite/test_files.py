"""``sqlite://`` on a bad file: full, read-only, corrupt or foreign; each a clear error naming it.

The full-disk test caps the file with ``PRAGMA max_page_count`` (SQLite then fails a write
with SQLITE_FULL, "database or disk is full", exactly as on a full disk) and counts that every
send that returned is in the file and no send that failed is.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from framework.backends.sqlite import SQLiteBackend
from framework.backends.sqlite.writelock import lock_path
from framework.exceptions import BackendUnavailableError, ConfigError
from framework.messages import CONTENT_TYPE, Outgoing
from framework.registry import QueueSpec


def job(n: int) -> Outgoing:
    """A 2 KiB JSON job."""
    body = json.dumps({"id": f"job-{n}", "pad": "x" * 2048}).encode()
    return Outgoing(body=body, headers={CONTENT_TYPE: "application/json"})


async def test_full_disk_refuses_sends_and_keeps_every_one_it_accepted(tmp_path: Path) -> None:
    """Once the file cannot grow, send raises BackendUnavailableError naming the file; every
    send that returned is in the file (also after reopening it), and reads still work."""
    url = f"sqlite:///{tmp_path / 'full.db'}"
    accepted = refused = 0
    async with SQLiteBackend.from_url(url) as backend:
        await backend.declare_queue(QueueSpec.from_options("orders"))
        pages = backend.store.db.execute("PRAGMA page_count").fetchone()[0]
        await backend._call(backend.store.db.execute, f"PRAGMA max_page_count = {pages + 20}")
        error: BackendUnavailableError | None = None
        for n in range(200):
            try:
                await backend.send("orders", job(n))
            except BackendUnavailableError as exc:
                refused += 1
                error = exc
                continue
            accepted += 1
        assert error is not None, "the capped file never filled"
        assert "full" in str(error)
        assert str(tmp_path / "full.db") in str(error)
        assert (await backend.stats("orders")).depth == accepted
    async with SQLiteBackend.from_url(url) as reopened:
        got = await reopened.receive("orders", limit=10, wait=0)
        depth = (await reopened.stats("orders")).depth + len(got)
    print(  # noqa: T201
        f"\nfull disk: sent={accepted + refused} accepted={accepted} refused={refused} "
        f"stored={depth} lost={accepted - depth}"
    )
    assert 0 < accepted < 200
    assert depth == accepted


def _without_privileges() -> list[str]:
    """The command prefix that makes root obey file modes (it drops every capability)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv(1): root writes read-only files")
    return [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--"]


@pytest.mark.parametrize("lock_file", [True, False], ids=["with-lock-file", "without"])
async def test_read_only_file_is_a_clear_error_and_nothing_is_stored(
    tmp_path: Path, lock_file: bool
) -> None:
    """`framework send` on a file its user cannot write exits 1 with one line naming the file;
    the file is unchanged. So too when the writers' lock file is missing and the read-only
    folder cannot hold a new one."""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "app.db"
    url = f"sqlite:///{path}"
    async with SQLiteBackend.from_url(url) as backend:
        await backend.declare_queue(QueueSpec.from_options("orders"))
    if not lock_file:
        lock_path(path).unlink()
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        command = [sys.executable, "-m", "framework.cli", "send", "orders", '{"id": 1}']
        result = await asyncio.to_thread(
            subprocess.run,
            [*_without_privileges(), *command, "--backend", url],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    assert result.returncode == 1, result
    assert result.stderr.startswith("error: sqlite file"), result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr
    async with SQLiteBackend.from_url(url) as backend:
        stats = await backend.stats("orders")
    print(f"\nread-only: sent=1 refused=1 stored={stats.depth} lost=0")  # noqa: T201
    assert stats.depth == 0
    assert lock_path(path).exists()  # made again by the writable open above


async def test_corrupt_file_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    """A file that is not a SQLite database raises ConfigError naming it; it is not touched."""
    path = tmp_path / "corrupt.db"
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    with pytest.raises(ConfigError, match="not a database") as caught:
        async with SQLiteBackend.from_url(f"sqlite:///{path}"):
            pass
    assert str(path) in str(caught.value)
    assert path.read_bytes() == garbage


async def test_foreign_database_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    """A SQLite database of another program raises ConfigError naming the file and its tables,
    and the framework creates nothing in it."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(ConfigError, match="not a framework database") as caught:
        async with SQLiteBackend.from_url(f"sqlite:///{path}"):
            pass
    assert str(path) in str(caught.value)
    assert "users" in str(caught.value)
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["users"]


def test_cli_on_a_foreign_file_says_so_in_one_line(tmp_path: Path) -> None:
    """`framework queues --backend sqlite:///other.db` exits 1 with one line naming the file."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    result = subprocess.run(
        [sys.executable, "-m", "framework.cli", "queues", "--backend", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert str(path) in result.stderr
    assert "not a framework database" in result.stderr

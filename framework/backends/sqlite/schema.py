"""The file itself: its tables and indexes, how it is opened, and SQLite's errors as ours.

Opening checks the file before touching it: a file that is not a SQLite database, or is one of
another program (tables, but no ``framework_meta``), is refused with an error naming it, and
nothing is written to it. Then: WAL mode (readers never block the writer, and a commit is
durable across a crash of any process whatever ``synchronous`` says), ``busy_timeout`` (a
writer waits for another process's write lock instead of failing), ``synchronous`` from the
URL (``NORMAL`` by default; ``FULL`` to survive power loss), and the tables, created if missing.

``framework_meta`` holds the file's ``schema_version``. A file of an older version is brought
to this one when it is opened (``UPGRADES``: each version's additions, in one transaction with
the version's bump); a file of a newer version is refused, untouched, naming both versions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from framework.exceptions import BackendUnavailableError, ConfigError

from .settings import SQLiteSettings

__all__ = ["KIND", "SCHEMA", "SCHEMA_VERSION", "UPGRADES", "connect", "errors", "transaction"]

KIND = "framework-sqlite"
SCHEMA_VERSION = "2"

_VERSION_1 = """
CREATE TABLE IF NOT EXISTS framework_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    fifo INTEGER NOT NULL,
    visibility_timeout REAL NOT NULL,
    delay REAL NOT NULL,
    retention REAL NOT NULL,
    content_based_deduplication INTEGER NOT NULL,
    dead_letter TEXT,
    max_receive_count INTEGER NOT NULL,
    max_message_size INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    attributes TEXT NOT NULL,
    headers TEXT NOT NULL,
    group_id TEXT,
    deduplication_id TEXT,
    sent_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_received_at REAL,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_deadline ON messages (queue, visible_at, seq);
CREATE INDEX IF NOT EXISTS messages_by_group ON messages (queue, group_id, seq, expires_at)
    WHERE group_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS deduplication (
    scope TEXT NOT NULL,
    deduplication_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (scope, deduplication_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deduplication_by_time ON deduplication (scope, at);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    fifo INTEGER NOT NULL,
    content_based_deduplication INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    topic TEXT NOT NULL,
    name TEXT NOT NULL,
    queue TEXT NOT NULL,
    filter_policy TEXT,
    filter_policy_scope TEXT NOT NULL,
    PRIMARY KEY (topic, name)
);
CREATE TABLE IF NOT EXISTS changes (
    queue TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    message BLOB NOT NULL,
    at REAL NOT NULL
);
"""

# Version 2: the WebSocket relay (``relay.py``): the processes that hold connections, with their
# heartbeat, and the requests addressed to them, with their answers.
_VERSION_2 = """
CREATE TABLE IF NOT EXISTS processes (
    process TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS relay (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    sender TEXT NOT NULL,
    ticket INTEGER NOT NULL,
    request TEXT NOT NULL,
    claimed INTEGER NOT NULL DEFAULT 0,
    reply TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_to_owner ON relay (owner, seq) WHERE claimed = 0;
CREATE INDEX IF NOT EXISTS relay_to_sender ON relay (sender, seq) WHERE reply IS NOT NULL;
"""

SCHEMA = _VERSION_1 + _VERSION_2
"""Every table and index of the current version, each created only if missing."""

UPGRADES: dict[str, str] = {"1": _VERSION_2}
"""What a file of each older version lacks: the statements that bring it to the next version."""


# Errors that say the file cannot be written or reached now (full, read-only, locked past
# busy_timeout, I/O); every other DatabaseError says the file is not what we expect.
_UNAVAILABLE = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN")


@contextmanager
def errors(path: Path) -> Iterator[None]:
    """Turn SQLite's errors into the framework's, naming the file.

    Raises:
        BackendUnavailableError: For a file that cannot be written or reached now.
        ConfigError: For a file that is corrupt or not a database.
    """
    try:
        yield
    except sqlite3.DatabaseError as exc:
        name = exc.sqlite_errorname
        if isinstance(exc, sqlite3.OperationalError) or any(
            name.startswith(code) for code in _UNAVAILABLE
        ):
            raise BackendUnavailableError(
                f"sqlite file {str(path)!r}: {exc} ({name}); the operation was not stored"
            ) from exc
        raise ConfigError(
            f"sqlite file {str(path)!r} cannot be used: {exc} ({name}); is it a corrupt or "
            "foreign file? Point sqlite:/// at another path"
        ) from exc


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error.

    IMMEDIATE takes the write lock at the start, so a transaction never has to upgrade a read
    lock (which can deadlock between processes and fails at once, whatever busy_timeout says).

    Inside a transaction already open (a batch of calls, ``calls.py``) it is a savepoint
    instead: an error rolls back this part's writes only, and the commit is the batch's.
    """
    if db.in_transaction:
        db.execute("SAVEPOINT part")
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # else SQLite rolled the whole transaction back itself
                db.execute("ROLLBACK TO part")
                db.execute("RELEASE part")
            raise
        db.execute("RELEASE part")
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def connect(settings: SQLiteSettings) -> tuple[sqlite3.Connection, bool]:
    """Open the file (creating it and its folder if needed); return it and whether it is new.

    Raises:
        ConfigError: If the file is not a SQLite database, or one of something else.
        BackendUnavailableError: If it cannot be opened or written (read-only, disk full).
    """
    path = settings.path
    created = not path.exists() or path.stat().st_size == 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendUnavailableError(
            f"cannot create the folder of sqlite file {str(path)!r}: {exc}"
        ) from exc
    with errors(path):
        db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=settings.busy_timeout
        )
        try:
            _check_foreign(db, path)
            db.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise BackendUnavailableError(
                    f"sqlite file {str(path)!r} cannot use WAL mode (journal_mode={mode})"
                )
            db.execute(f"PRAGMA synchronous = {settings.synchronous.upper()}")
            with transaction(db):
                _create_or_upgrade(db, path)
        except BaseException:
            db.close()
            raise
    return db, created


def _check_foreign(db: sqlite3.Connection, path: Path) -> None:
    tables = sorted(
        row[0]
        for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not str(row[0]).startswith("sqlite_")
    )
    if tables and "framework_meta" not in tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise ConfigError(
            f"sqlite file {str(path)!r} is not a framework database: it holds other tables "
            f"({shown}). The framework keeps its queues in a file of its own: point "
            "sqlite:/// at another path"
        )


def _run(db: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _create_or_upgrade(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables of a new file, or bring an older version's file to this one.

    Runs in the opening's write transaction: two processes opening one old file upgrade it
    once, and a failed upgrade leaves the file as it was.
    """
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'framework_meta'"
    ).fetchone()
    meta = dict(db.execute("SELECT key, value FROM framework_meta")) if has_meta else {}
    version = meta.get("schema_version")
    if meta and (
        meta.get("kind") != KIND or (version != SCHEMA_VERSION and version not in UPGRADES)
    ):
        raise ConfigError(
            f"sqlite file {str(path)!r} has framework_meta {meta}, expected kind {KIND!r} and "
            f"schema_version {SCHEMA_VERSION!r} (or an older one: "
            f"{', '.join(sorted(UPGRADES))}): a file of another tool, or of a newer framework "
            "version; open it with that version, or point sqlite:/// at another path"
        )
    if not meta:
        _run(db, SCHEMA)
        db.execute(
            "INSERT INTO framework_meta (key, value) VALUES ('kind', ?), ('schema_version', ?)",
            (KIND, SCHEMA_VERSION),
        )
        return
    while version != SCHEMA_VERSION:
        assert version is not None
        _run(db, UPGRADES[version])
        version = str(int(version) + 1)
    db.execute(
        "UPDATE framework_meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,)
    )

"""``sqlite:///PATH``: durable queues, topics and dead letters in one SQLite file."""

from .backend import SQLiteBackend

__all__ = ["SQLiteBackend"]

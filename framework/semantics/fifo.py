"""FIFO queues: the deduplication window and content-based deduplication ids."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

__all__ = ["DEDUPLICATION_WINDOW", "DeduplicationWindow", "content_deduplication_id"]

DEDUPLICATION_WINDOW = 300.0


def content_deduplication_id(body: bytes) -> str:
    """Return the deduplication id SQS derives from a body: its SHA-256, hex."""
    return hashlib.sha256(body).hexdigest()


class DeduplicationWindow:
    """Remembers deduplication ids for ``window`` seconds; ids are checked in O(1) amortised.

    Times are passed in, so the window runs on whatever clock its owner uses.
    """

    __slots__ = ("_seen", "window")

    def __init__(self, window: float = DEDUPLICATION_WINDOW) -> None:
        self.window = window
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def accept(self, dedup_id: str, now: float, message_id: str = "") -> bool:
        """Record ``dedup_id`` and return True, or return False if it was seen within the window."""
        self._expire(now)
        if dedup_id in self._seen:
            return False
        self._seen[dedup_id] = (now, message_id)
        return True

    def first_id(self, dedup_id: str) -> str | None:
        """Return the message id recorded with ``dedup_id`` (what SQS answers a duplicate)."""
        entry = self._seen.get(dedup_id)
        return entry[1] if entry is not None else None

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        while self._seen:
            oldest, (at, _) = next(iter(self._seen.items()))
            if at > horizon:
                break
            del self._seen[oldest]

    def duplicate_of(
        self, dedup_id: str | None, body: bytes, *, content_based: bool, message_id: str, now: float
    ) -> str | None:
        """Return the id of the message this one duplicates, or record it and return None.

        The deduplication id is ``dedup_id``, else the body's hash with content-based
        deduplication; a message with neither is never a duplicate.
        """
        if dedup_id is None and content_based:
            dedup_id = content_deduplication_id(body)
        if dedup_id is None or self.accept(dedup_id, now, message_id):
            return None
        return self.first_id(dedup_id) or message_id

    def __len__(self) -> int:
        return len(self._seen)

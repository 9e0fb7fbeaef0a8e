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
        self._seen: OrderedDict[str, float] = OrderedDict()

    def accept(self, dedup_id: str, now: float) -> bool:
        """Record ``dedup_id`` and return True, or return False if it was seen within the window."""
        self._expire(now)
        if dedup_id in self._seen:
            return False
        self._seen[dedup_id] = now
        return True

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at > horizon:
                break
            del self._seen[oldest]

    def __len__(self) -> int:
        return len(self._seen)

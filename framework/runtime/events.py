"""What the runtime tells observers after each delivery is settled (for metrics and tracing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["HandlerEvent", "HandlerObserver", "Outcome", "ScanEvent", "ScanObserver"]

Outcome = Literal["ok", "retry", "timeout", "dead_letter", "poison"]


@dataclass(frozen=True, slots=True)
class HandlerEvent:
    """One settled delivery: where, which handler, how long, and how it ended.

    ``seconds`` is the handler's run time on the backend's clock, None when it never ran
    (poison bodies and messages over their receive limit). ``error`` is what went wrong
    (``"ValueError: bad total"``), None for ``ok``. ``mail`` summarises an ``@on_email``
    handler's mail (``from``, ``to``, ``subject``), None for other handlers.
    """

    queue: str
    handler: str
    seconds: float | None
    outcome: Outcome
    receive_count: int
    error: str | None = None
    mail: Mapping[str, str] | None = None


HandlerObserver = Callable[[HandlerEvent], None]


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """One mail scanner's run on one mail (or a DNSBL check on one client): how long, and
    whether it failed (raised or timed out, so its checks became ``PROCESSING_FAILED``)."""

    scanner: str
    seconds: float
    failed: bool = False


ScanObserver = Callable[[ScanEvent], None]

"""The runtime's events hub: who wants to know when a delivery settles and when the app starts.

The gateway's metrics and dashboard, the ``App`` and any observer subscribe to one ``Events``
hub; the runtime and its dispatchers publish to it. Nothing below the ``App`` keeps a list of
observers of its own or writes into another object's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from framework.exceptions import AppNotRunningError
from framework.smtp.scanning import ScanEvent, ScanObserver

__all__ = ["Events", "HandlerEvent", "HandlerObserver", "Outcome", "ScanEvent", "ScanObserver"]

log = logging.getLogger("framework.runtime")

Outcome = Literal["ok", "retry", "timeout", "dead_letter", "poison"]

R = TypeVar("R")
_T = TypeVar("_T")


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


class Events(Generic[R]):
    """The hub: handler, scan and runtime observers, and the runtime running now.

    ``R`` is the runtime's type (``Events[Runtime]``); the hub only holds it. Subscribing
    returns a function that unsubscribes, so a gateway built again drops its old observers.

    Args:
        name: The app's name, for the error when nothing is running.
    """

    def __init__(self, name: str = "app") -> None:
        self.name = name
        # A list the dispatchers read directly (``if observers:``), per message: the hot path.
        self.handler_observers: list[HandlerObserver] = []
        # The SMTP receiver is given this list itself (smtp/ knows no hub).
        self.scan_observers: list[ScanObserver] = []
        self._runtime_observers: list[Callable[[R | None], None]] = []
        self._running: R | None = None

    def observe_handlers(self, observer: HandlerObserver) -> Callable[[], None]:
        """Call ``observer`` with every settled delivery; return the unsubscriber."""
        self.handler_observers.append(observer)
        return lambda: _remove(self.handler_observers, observer)

    def observe_scans(self, observer: ScanObserver) -> Callable[[], None]:
        """Call ``observer`` with every mail scanner's run; return the unsubscriber."""
        self.scan_observers.append(observer)
        return lambda: _remove(self.scan_observers, observer)

    def observe_runtime(self, observer: Callable[[R | None], None]) -> Callable[[], None]:
        """Call ``observer`` with the runtime when it starts and None when it stops.

        Subscribed while a runtime runs, ``observer`` is called with it at once.
        """
        self._runtime_observers.append(observer)
        if self._running is not None:
            observer(self._running)
        return lambda: _remove(self._runtime_observers, observer)

    def settled(self, happened: HandlerEvent) -> None:
        """Tell every handler observer; an observer's bug never changes a message's fate."""
        for observer in self.handler_observers:
            try:
                observer(happened)
            except Exception:
                log.exception("observer.failed", extra={"fields": {"queue": happened.queue}})

    def started(self, runtime: R) -> None:
        """Record ``runtime`` as running and tell the runtime observers."""
        self._running = runtime
        for observer in list(self._runtime_observers):
            observer(runtime)

    def stopped(self, runtime: R) -> None:
        """Forget ``runtime`` (if it is the one running) and tell the runtime observers."""
        if self._running is runtime:
            self._running = None
            for observer in list(self._runtime_observers):
                observer(None)

    @property
    def running(self) -> R | None:
        """The runtime running now, or None."""
        return self._running

    def current(self) -> R:
        """Return the runtime running now.

        Raises:
            AppNotRunningError: If nothing is running.
        """
        if self._running is None:
            raise AppNotRunningError(
                f"app {self.name!r} is not running: start it with `framework run`, "
                "`async with TestApp(app)` or `async with app.run(backend)`"
            )
        return self._running


def _remove(observers: list[_T], observer: _T) -> None:
    if observer in observers:
        observers.remove(observer)

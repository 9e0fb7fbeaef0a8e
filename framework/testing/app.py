"""``TestApp``: run an app in-process on any backend, with HTTP, mail and a controllable clock."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Self

import anyio
import httpx

from framework.backends import from_url
from framework.backends.base import OutgoingMail, QueueStats
from framework.runtime import Runtime
from framework.smtp.parsing import Email, parse
from framework.testing.clock import RealClock, VirtualClock, settle

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["TestApp"]


class TestApp:
    """Run ``app`` on ``backend`` inside the test's event loop.

    On ``memory://`` the backend runs on a :class:`VirtualClock`, so ``await t.clock.advance(30)``
    expires a 30-second visibility timeout at once; on real brokers ``t.clock`` really sleeps.

    Args:
        app: The app to run.
        backend: A backend URL.
        workers: Run the queue workers (False to only send and inspect).
        grace: Seconds handlers get to finish when the test app stops.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self, app: App, backend: str = "memory://", *, workers: bool = True, grace: float = 1.0
    ) -> None:
        self.app = app
        self.backend_url = backend
        self.backend = from_url(backend)
        self.clock: VirtualClock | RealClock
        if backend.startswith("memory:"):
            self.clock = VirtualClock()
            self.backend.clock = self.clock
            poll_wait = 20.0
        else:
            self.clock = RealClock()
            self.backend.clock = self.clock
            poll_wait = 1.0
        self.runtime = Runtime(app, self.backend, workers=workers, grace=grace, poll_wait=poll_wait)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app.asgi), base_url="http://testserver"
        )

    async def __aenter__(self) -> Self:
        await self.runtime.__aenter__()
        await self.http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.http.__aexit__(None, None, None)
        finally:
            await self.runtime.__aexit__(*exc_info)

    @property
    def outbox(self) -> list[Email]:
        """Mail the app sent, parsed (memory backend only)."""
        raw: list[OutgoingMail] = getattr(self.backend, "outbox", [])
        return [parse(m.message) for m in raw]

    async def stats(self) -> dict[str, QueueStats]:
        """Return every declared queue's depth, in flight, delayed and dead letters."""
        return await self.runtime.stats()

    async def drain(self, timeout: float = 10.0) -> None:
        """Run until no message is visible in any handled queue and no handler is running.

        Messages waiting for a delay or a retry are left waiting: move ``clock`` for them.

        Raises:
            TimeoutError: If the app is still busy after ``timeout`` real seconds.
        """
        handled = list(self.app.registry.consumers)
        deadline = time.monotonic() + timeout
        quiet = 0
        while True:
            if isinstance(self.clock, VirtualClock):
                await settle()
            busy = self.runtime.active > 0
            if not busy:
                for name in handled:
                    if (await self.backend.stats(name)).depth:
                        busy = True
                        break
            quiet = 0 if busy else quiet + 1
            if quiet >= 2:
                return
            if time.monotonic() > deadline:
                stats = {n: s.as_dict() for n, s in (await self.stats()).items()}
                raise TimeoutError(f"app still busy after {timeout}s: {stats}")
            await anyio.sleep(0.001 if isinstance(self.clock, VirtualClock) else 0.05)

    async def send_email(self, *args: Any, **kwargs: Any) -> None:
        """Send a mail through the app's SMTP receiver (see the SMTP receiver's docs)."""
        raise NotImplementedError("the SMTP receiver is not part of this release yet")

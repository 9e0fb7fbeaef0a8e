"""``TestApp``: run an app in-process on any backend, with HTTP, mail and a controllable clock."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING, Self

import anyio
import httpx

from framework.backends import from_url
from framework.messages import OutgoingMail, QueueStats
from framework.runtime import Runtime
from framework.smtp.parsing import Email, parse
from framework.smtp.receiver import Receiver
from framework.testing.clock import RealClock, VirtualClock, settle
from framework.testing.socket_client import WebSocketClient

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["TestApp"]


class TestApp:
    """Run ``app`` on ``backend`` inside the test's event loop.

    On ``memory://`` the backend runs on a ``VirtualClock``, so ``await t.clock.advance(30)``
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
        self.receiver: Receiver | None = None
        self.runtime = Runtime(
            app.registry,
            self.backend,
            events=app.events,
            app=app,
            workers=workers,
            grace=grace,
            poll_wait=poll_wait,
        )
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app.asgi), base_url="http://testserver"
        )

    async def __aenter__(self) -> Self:
        await self.runtime.__aenter__()
        try:
            if self.app.registry.email_rules:
                self.receiver = Receiver(
                    self.app.registry,
                    self.backend,
                    self.app.smtp,
                    port=0,
                    scan_observers=self.app.events.scan_observers,
                )
                await self.receiver.start()
            await self.http.__aenter__()
        except BaseException:
            await self.runtime.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.http.__aexit__(None, None, None)
            if self.receiver is not None:
                await self.receiver.stop()
        finally:
            await self.runtime.__aexit__(*exc_info)

    def websocket(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        max_queue: int = 64,
        timeout: float = 5.0,
    ) -> WebSocketClient:
        """Return a WebSocket client of the app's API at ``path``, for ``async with``.

        It speaks ASGI to the app's gateway in this event loop (handshake, authorizer,
        routes and limits as served), on whatever backend the test app runs::

            async with t.websocket("/chat", query={"access_token": token}) as ws:
                await ws.send_json({"action": "join", "room": "a"})
                assert await ws.receive_json() == {"joined": "a"}

        Args:
            path: The WebSocket API's path.
            headers: Handshake headers.
            query: Query parameters (``access_token``, an API key's header name).
            max_queue: Messages held unread before the server's sends wait.
            timeout: Seconds the handshake and each ``receive`` wait by default.

        Raises:
            HandshakeRefusedError: On entering, when the handshake is refused.
        """
        return WebSocketClient(
            self.app.asgi, path, headers=headers, query=query, max_queue=max_queue, timeout=timeout
        )

    @property
    def outbox(self) -> list[Email]:
        """Mail the app sent, parsed (memory backend only)."""
        raw: list[OutgoingMail] = getattr(self.backend, "outbox", [])
        return [parse(m.message) for m in raw]

    async def stats(self) -> dict[str, QueueStats]:
        """Return every declared queue's depth, in flight, delayed and dead letters."""
        return await self.runtime.stats()

    # The timeout is in real seconds and bounds a test, so it is an argument, not a scope.
    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Run until no message is visible in any handled queue and no handler is running.

        Messages waiting for a delay or a retry are left waiting (and on ``memory://``, so are
        FIFO messages queued behind such a message): move ``clock`` for them.

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
            for name in handled if not busy else ():
                if await self._receivable(name):
                    busy = True
                    break
            quiet = 0 if busy else quiet + 1
            if quiet >= 2:
                return
            if time.monotonic() > deadline:
                stats = {n: s.as_dict() for n, s in (await self.stats()).items()}
                raise TimeoutError(f"app still busy after {timeout}s: {stats}")
            await anyio.sleep(0.001 if isinstance(self.clock, VirtualClock) else 0.05)

    async def _receivable(self, queue: str) -> bool:
        # The memory backend can tell a message that a receive would return from one waiting
        # behind its FIFO group's head; other backends report depth, which counts both.
        probe = getattr(self.backend, "has_receivable", None)
        if probe is not None:
            return bool(await probe(queue))
        return (await self.backend.stats(queue)).depth > 0

    async def send_email(
        self,
        *,
        to: str | Sequence[str],
        from_: str = "sender@example.org",
        subject: str = "",
        text: str = "",
        html: str | None = None,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        """Send a mail through the app's real SMTP receiver, over loopback, with smtplib.

        Args:
            to: Recipient address(es), used for RCPT TO (and the To header).
            from_: The envelope sender and From header.
            subject: The subject.
            text: The plain-text body.
            html: An HTML alternative.
            headers: Extra headers.
            raw: Send these bytes as the message instead of building one.

        Raises:
            smtplib.SMTPRecipientsRefused: If the receiver refused every recipient (550).
            smtplib.SMTPResponseException: For another refusal (552, 554, 451, ...).
        """
        if self.receiver is None:
            raise RuntimeError("the app has no @on_email handler, so no SMTP receiver runs")
        recipients = [to] if isinstance(to, str) else list(to)
        if raw is None:
            message = EmailMessage()
            message["From"] = from_
            message["To"] = ", ".join(recipients)
            message["Subject"] = subject
            for key, value in (headers or {}).items():
                message[key] = value
            message.set_content(text)
            if html is not None:
                message.add_alternative(html, subtype="html")
            raw = bytes(message)
        port = self.receiver.port

        def deliver() -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail(from_, recipients, raw)

        await anyio.to_thread.run_sync(deliver)

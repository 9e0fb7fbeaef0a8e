"""The SMTP receiver (aiosmtpd, on the app's event loop): receipt rules at RCPT, queue at DATA.

Mail is acknowledged with 250 only once it is on every matching rule's queue, so ``@on_email``
handlers get the retries, visibility timeout and dead letters of any queue handler. A recipient
that no rule matches is refused at RCPT (550): the receiver is never an open relay.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from framework.backends.base import CONTENT_TYPE, Outgoing
from framework.logs import event
from framework.smtp.parsing import MAIL_FROM, PEER, RCPT_TO
from framework.smtp.rules import rules_for

if TYPE_CHECKING:
    from framework.runtime import Runtime

__all__ = ["DEFAULT_MAX_SIZE", "Receiver"]

log = logging.getLogger("framework.smtp")

DEFAULT_MAX_SIZE = 10 * 1024 * 1024


class _Handler:
    """aiosmtpd's handler hooks, bound to the running app's rules and backend."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.rules = runtime.registry.email_rules

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not rules_for(self.rules, address):
            event(log, logging.INFO, "mail.refused", recipient=address, peer=str(session.peer))
            return "550 5.1.1 Recipient address rejected: no receipt rule accepts it"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        per_queue: dict[str, list[str]] = {}
        for recipient in envelope.rcpt_tos:
            for rule in rules_for(self.rules, recipient):
                per_queue.setdefault(rule.queue.name, []).append(recipient)
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer or "")
        try:
            for queue, recipients in per_queue.items():
                await self.runtime.backend.send(
                    queue,
                    Outgoing(
                        body=raw,
                        headers={
                            CONTENT_TYPE: "message/rfc822",
                            MAIL_FROM: envelope.mail_from or "",
                            RCPT_TO: ",".join(recipients),
                            PEER: peer,
                        },
                    ),
                )
        except Exception as exc:
            log.exception("mail.enqueue_failed", extra={"fields": {"peer": peer}})
            return f"451 4.3.0 Temporary failure, try again later ({type(exc).__name__})"
        event(
            log,
            logging.INFO,
            "mail.accepted",
            mail_from=envelope.mail_from,
            recipients=len(envelope.rcpt_tos),
            queues=sorted(per_queue),
            size=len(raw),
        )
        return "250 2.0.0 Message accepted for delivery"


class Receiver:
    """An SMTP server on the running loop, feeding the app's ``@on_email`` queues."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        host: str = "127.0.0.1",
        port: int = 8025,
        max_size: int = DEFAULT_MAX_SIZE,
        hostname: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.max_size = max_size
        self.hostname = hostname
        self._server: asyncio.Server | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()

    async def start(self) -> int:
        """Start listening; return the bound port (useful with port 0)."""
        handler = _Handler(self.runtime)

        def protocol() -> Any:
            connection = SMTP(
                handler,
                data_size_limit=self.max_size,
                hostname=self.hostname,
                enable_SMTPUTF8=True,
                ident="framework ESMTP",
            )
            self._connections.add(connection)
            return connection

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        event(log, logging.INFO, "smtp.started", address=f"{self.host}:{self.port}")
        return self.port

    async def stop(self) -> None:
        """Stop accepting connections and close the open ones."""
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                if connection.transport is not None:
                    connection.transport.close()
            await self._server.wait_closed()
            self._server = None

"""The SMTP receiver (aiosmtpd, on the app's event loop): IP rules at connect, receipt rules at
RCPT, the queue at DATA.

Mail is acknowledged with 250 only once it is on every matching rule's queue, so ``@on_email``
handlers get the retries, visibility timeout and dead letters of any queue handler. A recipient
that no rule matches is refused at RCPT (550): the receiver is never an open relay.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import socket
import ssl
import time
import warnings
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from framework.exceptions import ConfigError
from framework.logs import event
from framework.messages import CONTENT_TYPE, Outgoing
from framework.registry import Registry, rules_for
from framework.smtp import parsing
from framework.smtp.config import DEFAULT_MAX_SIZE, SMTPConfig
from framework.smtp.parsing import MAIL_FROM, PEER, RCPT_TO, VERDICTS
from framework.smtp.scanners import using
from framework.smtp.scanning import Findings, ScanEvent, ScanObserver, Verdicts, scan

if TYPE_CHECKING:
    from framework.backends.base import Backend

__all__ = ["DEFAULT_MAX_SIZE", "Receiver"]

log = logging.getLogger("framework.smtp")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


def _peer_address(peer: object) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


class _TakingTurnsReader(asyncio.StreamReader):
    """aiosmtpd's stream reader, letting the loop's other work run every ``TURN`` lines.

    aiosmtpd reads DATA one line per ``readuntil``, and a line already in the buffer is
    returned without yielding: a mail of many short lines (40,000 lines, 700 KB) held the loop,
    and every HTTP request, other mail and handler waited for it, for a third of a second.
    """

    TURN = 256
    _lines = 0

    async def readuntil(self, separator: Any = b"\n") -> bytes:
        self._lines += 1
        if self._lines % self.TURN == 0:
            await asyncio.sleep(0)
        return await super().readuntil(separator)


class _Connection(SMTP):
    """One SMTP connection: aiosmtpd's, with the line limit and the IP rules of ``config``."""

    def __init__(self, handler: _Handler, *, config: SMTPConfig, **options: Any) -> None:
        # Set before aiosmtpd's __init__, which sizes its stream reader with it.
        self.line_length_limit = config.max_line_length
        self.config = config
        self.auth_failures = 0
        self._session_timer: asyncio.TimerHandle | None = None
        self.observers = handler.scan_observers
        self.counts = handler.counts
        self._counted = False
        self._limit_key: str | None = None  # what _Counts counts this connection under
        super().__init__(handler, **options)
        # aiosmtpd made its reader in __init__; the same object, taking turns with the loop.
        self._stream_reader.__class__ = _TakingTurnsReader  # type: ignore[attr-defined]

    # Deadlines. aiosmtpd's own timer (``timeout``) restarts at each valid command, so a client
    # that sends one before it runs out holds the connection for ever, and a DATA transfer
    # gets the same per-command allowance. Here DATA has its own deadline for the whole
    # message, and the whole session one too (STARTTLS calls connection_made again: one timer).

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._session_timer is None:
            self._session_timer = self.loop.call_later(
                self.config.session_timeout, self._session_expired
            )
        if not self._counted:  # STARTTLS calls this again for the same connection
            assert self.session is not None
            self._limit_key = self.counts.opened(_peer_address(self.session.peer))
            self._counted = True

    def connection_lost(self, error: Exception | None) -> None:
        if self._session_timer is not None:
            self._session_timer.cancel()
        if self._counted:
            self.counts.closed(self._limit_key)
            self._counted = False
        super().connection_lost(error)

    def _session_expired(self) -> None:
        if self.transport is None:
            return
        assert self.session is not None
        event(log, logging.INFO, "mail.session_timeout", peer=_peer_address(self.session.peer))
        assert isinstance(self.transport, asyncio.WriteTransport)
        self.transport.write(b"421 4.4.2 Session time limit exceeded, closing connection\r\n")
        self.transport.close()

    def _timeout_cb(self) -> None:
        if self.transport is None:  # aiosmtpd asserts it; a closed connection has none
            return
        assert self.session is not None
        event(log, logging.INFO, "mail.timeout", peer=_peer_address(self.session.peer))
        assert isinstance(self.transport, asyncio.WriteTransport)
        self.transport.write(b"421 4.4.2 Timeout waiting for the client, closing connection\r\n")
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def smtp_DATA(self, arg: str) -> None:
        self._reset_timeout(self.config.data_timeout)
        try:
            await super().smtp_DATA(arg)
        finally:
            if self.transport is not None:
                self._reset_timeout()  # the next command gets the per-command allowance again

    async def smtp_AUTH(self, arg: str) -> None:
        failures = self.auth_failures
        await super().smtp_AUTH(arg)
        # The authenticator counts wrong credentials; past the limit, no more guesses here.
        if self.auth_failures > failures and self.auth_failures >= self.config.max_auth_failures:
            assert self.session is not None
            event(
                log,
                logging.WARNING,
                "mail.auth_locked",
                peer=_peer_address(self.session.peer),
                failures=self.auth_failures,
            )
            await self.push("421 4.7.0 Too many failed authentication attempts, closing connection")
            if self.transport is not None:
                self.transport.close()

    async def _handle_client(self) -> None:
        # IP rules run before the greeting, as a 554 instead of the 220 (RFC 5321 3.1).
        assert self.session is not None
        peer = _peer_address(self.session.peer)
        if not self.config.allows(peer):
            event(log, logging.INFO, "mail.connection_refused", peer=peer)
            await self.push("554 5.7.1 Access denied: this address may not send mail here")
            if self.transport is not None:
                self.transport.close()
            return
        if self._counted and (over := self.counts.over(self._limit_key)):
            event(log, logging.WARNING, "mail.connection_refused", peer=peer, reason=over)
            await self.push("421 4.7.0 Too many connections, try again later")
            if self.transport is not None:
                self.transport.close()
            return
        refusal = await self._blocklisted(peer)
        if refusal is not None:
            await self.push(refusal)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    async def _blocklisted(self, peer: str) -> str | None:
        """The reply refusing a client a DNS blocklist lists (554), or that could not be
        checked (421, try later); None to go on. The zone is logged, never told."""
        for blocklist in self.config.blocklists:
            started = time.perf_counter()
            zone, failed = None, False
            try:
                with using(self.config.resolver):
                    zone = await blocklist.listed(peer)
            except Exception as exc:
                failed = True
                event(log, logging.WARNING, "mail.dnsbl_failed", peer=peer, error=repr(exc))
            finally:
                happened = ScanEvent("dnsbl", time.perf_counter() - started, failed)
                for observer in self.observers:
                    try:
                        observer(happened)
                    except Exception:  # an observer's bug must never change who may connect
                        log.exception("observer.failed", extra={"fields": {"scanner": "dnsbl"}})
            if failed:
                return "421 4.7.0 Cannot check your address now, try again later"
            if zone is not None:
                event(log, logging.INFO, "mail.connection_refused", peer=peer, dnsbl=zone)
                return "554 5.7.1 Access denied: this address may not send mail here"
        return None


class _Counts:
    """The connections open now: in all, and per peer address (``SMTPConfig.limit_key``)."""

    def __init__(self, config: SMTPConfig) -> None:
        self.config = config
        self.total = 0
        self.per_key: dict[str, int] = {}

    def opened(self, peer: str) -> str | None:
        """Count a new connection from ``peer``; return the key it is counted under."""
        self.total += 1
        key = self.config.limit_key(peer)
        if key is not None:
            self.per_key[key] = self.per_key.get(key, 0) + 1
        return key

    def closed(self, key: str | None) -> None:
        self.total -= 1
        if key is not None:
            left = self.per_key[key] - 1
            if left:
                self.per_key[key] = left
            else:
                del self.per_key[key]

    def over(self, key: str | None) -> str:
        """Which limit a connection counted under ``key`` is over ('' for none), itself counted."""
        if self.total > self.config.max_connections:
            return f"more than max_connections={self.config.max_connections} open"
        if key is not None and self.per_key.get(key, 0) > self.config.max_connections_per_ip:
            limit = self.config.max_connections_per_ip
            return f"more than max_connections_per_ip={limit} open from {key}"
        return ""


class _Handler:
    """aiosmtpd's handler hooks, bound to the running app's rules and backend."""

    def __init__(
        self,
        registry: Registry,
        backend: Backend,
        config: SMTPConfig,
        scan_observers: Sequence[ScanObserver],
    ) -> None:
        self.backend = backend
        self.scan_observers = scan_observers
        self.rules = registry.email_rules
        self.config = config
        self.actions = {
            rule.queue.name: rule.actions for rule in self.rules if rule.actions is not None
        }
        if self.actions and not config.scanners:
            raise ConfigError(
                f"receipt rule(s) {', '.join(sorted(self.actions))} act on verdicts "
                "(reject_on/drop_on) but the SMTPConfig has no scanners=[...] to give them"
            )
        self.authserv_id = config.hostname or socket.getfqdn()
        self.counts = _Counts(config)
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            return "452 4.5.3 Too many recipients"
        if not rules_for(self.rules, address):
            event(log, logging.INFO, "mail.refused", recipient=address, peer=str(session.peer))
            return "550 5.1.1 Recipient address rejected: no receipt rule accepts it"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_flight += 1
        self.idle.clear()
        try:
            return await self._enqueue(session, envelope)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()

    async def _enqueue(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        peer = _peer_address(session.peer)
        # Refused here, before any scanner or queue sees it: a mail the handlers' parser would
        # not read in full (too many parts or header lines) is the sender's to fix.
        complexity = parsing.too_complex(raw)
        if complexity is not None:
            event(log, logging.INFO, "mail.too_complex", peer=peer, reason=complexity)
            return f"554 5.6.0 Message refused: {complexity}"
        headers = {
            CONTENT_TYPE: "message/rfc822",
            MAIL_FROM: envelope.mail_from or "",
            PEER: peer,
        }
        verdicts: Verdicts | None = None
        if self.config.scanners:
            transaction = parsing.Envelope(envelope.mail_from or "", tuple(envelope.rcpt_tos), peer)
            findings = Findings(helo=session.host_name or "")
            with using(self.config.resolver):
                verdicts = await scan(
                    self.config.content_scanners,
                    raw,
                    transaction,
                    findings=findings,
                    observers=self.scan_observers,
                )
            headers[VERDICTS] = verdicts.to_header()
            raw = self._results_headers(findings, verdicts) + raw
            action = self.config.action_on(verdicts)
            if action is not None:
                what, why = action
                if what == "reject":
                    event(log, logging.INFO, "mail.rejected", peer=peer, verdict=why)
                    return f"550 5.7.1 Message rejected ({why})"
                # Dropped: the sender is told nothing, as with SES's stop action on a verdict.
                event(log, logging.INFO, "mail.dropped", peer=peer, verdict=why)
                return "250 2.0.0 Message accepted"
        per_queue: dict[str, list[str]] = {}
        for recipient in envelope.rcpt_tos:
            for rule in rules_for(self.rules, recipient):
                per_queue.setdefault(rule.queue.name, []).append(recipient)
        if self.actions and verdicts is not None:
            refusal = self._apply_rule_actions(per_queue, verdicts, peer)
            if refusal is not None:
                return refusal
        try:
            for queue, recipients in per_queue.items():
                await self.backend.send(
                    queue,
                    Outgoing(body=raw, headers={**headers, RCPT_TO: ",".join(recipients)}),
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

    def _results_headers(self, findings: Findings, verdicts: Verdicts) -> bytes:
        """``Authentication-Results`` (RFC 8601, by authres) and SES's ``X-SES-*-Verdict``
        headers, to put first in the stored mail."""
        lines = []
        if findings.results:
            from authres import AuthenticationResultsHeader

            header = AuthenticationResultsHeader(
                authserv_id=self.authserv_id, results=findings.results
            )
            # Values come from the sender (a DKIM-Signature's tags, an SPF exp= text in its DNS):
            # one line of printable text, so nothing in them can start a header of its own.
            lines.append(_UNPRINTABLE.sub(" ", str(header)))
        for check, name in (("spam", "Spam"), ("virus", "Virus")):
            verdict = getattr(verdicts, check)
            if verdict.value != "DISABLED":
                lines.append(f"X-SES-{name}-Verdict: {verdict.value}")
        return "".join(f"{line}\r\n" for line in lines).encode("utf-8", "replace")

    def _apply_rule_actions(
        self, per_queue: dict[str, list[str]], verdicts: Verdicts, peer: str
    ) -> str | None:
        """Apply each reached rule's ``reject_on``/``drop_on``; return the reply if that ends it.

        A rule dropping the mail loses its queue from ``per_queue``; one rejecting it refuses
        the whole mail, since ``DATA`` has one reply for every recipient.
        """
        decisions = {
            queue: decision
            for queue in per_queue
            if (actions := self.actions.get(queue)) is not None
            and (decision := actions.action_on(verdicts)) is not None
        }
        for queue, (what, why) in decisions.items():
            if what == "reject":
                event(log, logging.INFO, "mail.rejected", peer=peer, verdict=why, rule=queue)
                return f"550 5.7.1 Message rejected ({why})"
        for queue, (_, why) in decisions.items():
            event(log, logging.INFO, "mail.dropped", peer=peer, verdict=why, rule=queue)
            del per_queue[queue]
        if not per_queue:
            return "250 2.0.0 Message accepted"
        return None


def _count_failure(server: SMTP) -> None:
    if isinstance(server, _Connection):
        server.auth_failures += 1


def _authenticator(config: SMTPConfig) -> Any:
    """aiosmtpd's authenticator for ``config.auth``: a credentials map or a callable."""
    auth = config.auth
    if auth is None:
        return None

    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        try:
            username = data.login.decode("utf-8")
            password = data.password.decode("utf-8")
        except UnicodeDecodeError:
            _count_failure(server)
            return AuthResult(success=False, handled=False)
        if callable(auth):
            ok = bool(auth(username, password))
        else:
            expected = auth.get(username)
            # Compare in constant time, and compare something even for an unknown user.
            ok = hmac.compare_digest((expected or "\0").encode(), password.encode()) and (
                expected is not None
            )
        # The user name is logged; the password never is.
        event(log, logging.INFO, "mail.auth", user=username, success=ok, peer=str(session.peer))
        if not ok:
            _count_failure(server)
        return AuthResult(success=ok, handled=False, auth_data=username if ok else None)

    return check


class Receiver:
    """An SMTP server on the running loop, feeding the app's ``@on_email`` queues.

    Args:
        registry: The app's description: its receipt rules, their queues and actions.
        backend: Where accepted mail is queued (the running app's backend).
        config: Limits, IP rules, TLS and AUTH (the app's ``smtp`` config).
        host: The address to listen on.
        port: The port (0 picks a free one; ``start`` returns it).
        scan_observers: Told each scanner's run time (the events hub's list: the gateway's
            ``/metrics`` subscribes to it).
        sock: A socket bound already (``framework run --processes`` shares one), used
            instead of binding ``host`` and ``port``.
    """

    def __init__(
        self,
        registry: Registry,
        backend: Backend,
        config: SMTPConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 8025,
        scan_observers: Sequence[ScanObserver] = (),
        sock: socket.socket | None = None,
    ) -> None:
        self.registry = registry
        self.sock = sock
        self.backend = backend
        self.scan_observers = scan_observers
        self.host = host
        self.port = port
        self.config = config
        self._server: asyncio.Server | None = None
        self._handler: _Handler | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None or self.config.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.config.tls_cert), str(self.config.tls_key))
        return context

    async def start(self) -> int:
        """Start listening; return the bound port (useful with port 0)."""
        config = self.config
        handler = self._handler = _Handler(self.registry, self.backend, config, self.scan_observers)
        tls = self._tls_context()
        authenticator = _authenticator(config)

        def protocol() -> SMTP:
            with warnings.catch_warnings():
                # aiosmtpd warns about AUTH without TLS; SMTPConfig only allows it when
                # auth_require_tls=False was asked for explicitly.
                warnings.simplefilter("ignore", UserWarning)
                connection = _Connection(
                    handler,
                    config=config,
                    data_size_limit=config.max_size,
                    hostname=config.hostname,
                    enable_SMTPUTF8=True,
                    ident="framework ESMTP",
                    tls_context=tls,
                    require_starttls=config.require_tls,
                    timeout=config.timeout,
                    authenticator=authenticator,
                    auth_required=config.auth_required,
                    auth_require_tls=config.auth_require_tls,
                )
            self._connections.add(connection)
            return connection

        loop = asyncio.get_running_loop()
        if self.sock is not None:  # bound already, shared by several processes
            self._server = await loop.create_server(protocol, sock=self.sock)
        else:
            self._server = await loop.create_server(protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        event(
            log,
            logging.INFO,
            "smtp.started",
            address=f"{self.host}:{self.port}",
            max_size=config.max_size,
            starttls=tls is not None,
            auth=config.auth is not None,
        )
        return self.port

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting connections, let mail being enqueued finish, then close the rest.

        Args:
            grace: Seconds a message already received gets to reach its queue (its client
                then gets its 250) before the connections are closed.
        """
        if self._server is None:
            return
        self._server.close()
        if self._handler is not None:
            try:
                await asyncio.wait_for(self._handler.idle.wait(), grace)
            except TimeoutError:
                event(log, logging.WARNING, "smtp.stop_timeout", in_flight=self._handler.in_flight)
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        await self._server.wait_closed()
        self._server = None
        event(log, logging.INFO, "smtp.stopped", address=f"{self.host}:{self.port}")

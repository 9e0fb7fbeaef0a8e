"""The broker connection: a bounded connect, its losses and recoveries, and what the client says.

- **Bounded.** Every connect and reconnect attempt, AMQP handshake included, is bounded by
  ``connect_timeout``: a port that accepts TCP but never answers AMQP (a stalled broker, a
  port that is not RabbitMQ's) is an error naming what was awaited, never a silent wait, and a
  failed first attempt leaves no reconnect loop running behind it.
- **One log format.** aio-pika's and aiormq's own records (one per connection loss, some
  with tracebacks) are re-emitted as ``backend.client_log`` events of the framework's logger;
  connection losses and recoveries are ``backend.disconnected`` / ``backend.reconnected``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from aiormq.exceptions import ProbableAuthenticationError

from framework.exceptions import BackendUnavailableError, ConfigError
from framework.logs import event

from .consuming import RobustConnection

__all__ = [
    "LOST",
    "ClientLogs",
    "Link",
    "connect",
    "route_client_logs",
    "unavailable_as_error",
    "where",
]

log = logging.getLogger("framework.backends.rabbitmq")
_client_log = logging.getLogger("framework.backends.rabbitmq.client")

# What the client library raises when the connection (or a channel with it) is gone: a send,
# declaration or receive that meets one of these raises BackendUnavailableError instead.
# aio-pika raises a bare RuntimeError ("<Connection ...> closed") on a closed connection.
LOST: tuple[type[BaseException], ...] = (
    AMQPError,
    ChannelInvalidStateError,
    ConnectionError,
    RuntimeError,
    TimeoutError,
)
_CLIENT_LOGGERS = ("aio_pika", "aiormq")

P = ParamSpec("P")
T = TypeVar("T")


def where(url: str) -> str:
    """Return ``host:port/vhost`` of an AMQP URL: no user, no password."""
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    vhost = parts.path.lstrip("/") or "/"
    return f"{parts.hostname or 'localhost'}:{port} (vhost {vhost!r})"


def unavailable_as_error(
    method: Callable[P, Awaitable[T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Make a backend method raise ``BackendUnavailableError`` for a lost connection.

    The client library's own errors (``ChannelInvalidStateError``, ``ConnectionClosed``, ...)
    never reach the runtime or the gateway: they mean "the broker is not reachable now", and
    the robust connection is already reconnecting.
    """

    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except LOST as exc:
            raise BackendUnavailableError(
                f"the RabbitMQ connection is not usable ({type(exc).__name__}: {exc}); "
                "it reconnects by itself: retry shortly"
            ) from exc

    return translated


class Link:
    """Logs a connection's losses and recoveries, with how long each outage lasted."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.lost_at: float | None = None
        self.closing = False

    def disconnected(self, _sender: object, exc: BaseException | None = None) -> None:
        """The transport went away (a close callback of the robust connection)."""
        if self.closing or self.lost_at is not None:
            return
        self.lost_at = time.monotonic()
        event(
            log,
            logging.WARNING,
            "backend.disconnected",
            backend="rabbitmq",
            broker=self.address,
            reason=f"{type(exc).__name__}: {exc}" if exc is not None else "closed",
        )

    def reconnected(self) -> None:
        """The robust connection is back, channels and consumers restored."""
        lost_at, self.lost_at = self.lost_at, None
        outage = round(time.monotonic() - lost_at, 3) if lost_at is not None else None
        event(
            log,
            logging.WARNING,
            "backend.reconnected",
            backend="rabbitmq",
            broker=self.address,
            outage_seconds=outage,
        )


async def connect(url: str, *, name: str, seconds: float) -> AbstractRobustConnection:
    """Open a robust connection to ``url``, the AMQP handshake bounded by ``seconds``.

    The same bound applies to each reconnect attempt later.

    Raises:
        BackendUnavailableError: If the broker cannot be reached or does not complete the
            handshake within ``seconds``.
        ConfigError: If the broker refuses the credentials or the virtual host.
    """
    address = where(url)
    event(
        log,
        logging.INFO,
        "backend.connecting",
        backend="rabbitmq",
        broker=address,
        waiting_for="TCP connect and AMQP handshake",
        timeout_seconds=seconds,
    )
    connection = RobustConnection(
        aio_pika.connection.make_url(url), client_properties={"connection_name": name}
    )
    try:
        await connection.connect(timeout=seconds)
    except BaseException as exc:
        # Without this, aio-pika's reconnect loop would go on trying behind the error (and
        # keep a stopping process alive for as long as its attempts take).
        await connection.close()
        if isinstance(exc, TimeoutError):
            event(log, logging.ERROR, "backend.connect_timeout", broker=address, seconds=seconds)
            raise BackendUnavailableError(
                f"RabbitMQ at {address} did not complete the AMQP handshake within "
                f"{seconds:g} s (connect_timeout): a port that accepts connections but does not "
                "answer is a stalled broker (on RabbitMQ 3.10, often out of file handles: "
                "`rabbitmqctl eval 'file_handle_cache:info().'`) or not an AMQP port"
            ) from None
        if isinstance(exc, ProbableAuthenticationError):
            raise ConfigError(
                f"RabbitMQ at {address} refused the login or the virtual host: check the "
                "user, password and vhost in the amqp:// URL"
            ) from None
        if isinstance(exc, (*LOST, OSError)):
            raise BackendUnavailableError(
                f"cannot connect to RabbitMQ at {address}: {exc or type(exc).__name__}"
            ) from None
        raise
    return connection


class ClientLogs(logging.Handler):
    """Re-emits aio-pika's and aiormq's records as ``backend.client_log`` events.

    A traceback becomes its exception's type and message (the full one is logged at DEBUG),
    and no record is logged above WARNING.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"library": record.name, "message": record.getMessage()}
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                fields["error"] = f"{type(error).__name__}: {error}"
            # At most a warning: a connection loss is expected, and backend.disconnected
            # marks it; aio-pika logs some of its steps as errors with tracebacks.
            event(_client_log, min(record.levelno, logging.WARNING), "backend.client_log", **fields)
            if record.exc_info and _client_log.isEnabledFor(logging.DEBUG):
                _client_log.debug(
                    "backend.client_traceback",
                    exc_info=record.exc_info,
                    extra={"fields": {"library": record.name}},
                )
        except Exception:  # a log record must never break the connection code that made it
            self.handleError(record)


_HANDLER = ClientLogs()


def route_client_logs() -> None:
    """Send the client library's log records through the framework's logging (idempotent)."""
    for name in _CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if _HANDLER not in logger.handlers:
            logger.addHandler(_HANDLER)
        logger.propagate = False

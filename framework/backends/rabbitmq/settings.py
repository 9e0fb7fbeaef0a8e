"""The ``amqp://`` URL: the broker address aio-pika connects to, plus the backend's own options."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from framework.exceptions import ConfigError
from framework.redact import mask_url

__all__ = ["RabbitMQSettings"]

_OPTIONS = {
    "delete_on_exit",
    "queue_expires",
    "lease_grace",
    "fifo_prefetch",
    "prefetch",
    "connection_name",
    "connect_timeout",
}


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"amqp:// option {name}={value!r} must be a number of seconds") from None
    if seconds <= 0:
        raise ConfigError(f"amqp:// option {name}={value!r} must be positive")
    return seconds


def _count(name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"amqp:// option {name}={value!r} must be a whole number from 1")
    return int(value)


@dataclass(frozen=True, slots=True)
class RabbitMQSettings:
    """What ``amqp://user:pass@host:port/vhost?options`` asks for.

    Options the backend reads (everything else in the query, such as ``heartbeat``, goes to
    aio-pika unchanged):

    - ``delete_on_exit``: ``1`` to delete every queue and exchange the backend declared when
      it disconnects, messages included. For tests only.
    - ``queue_expires``: seconds; every queue the backend declares gets ``x-expires``, so the
      broker deletes it once unused that long, messages included. For throw-away brokers only:
      expiring quorum queues coincided with minute-long broker stalls on RabbitMQ 3.10.8.
    - ``lease_grace``: seconds past a lease's deadline after which the backend itself returns
      a message a handler still holds (one that ignores cancellation); default 5.
    - ``prefetch``: unacknowledged deliveries per standard queue consumer; default the
      queue's ``concurrency``.
    - ``fifo_prefetch``: the same for FIFO queues, whose consumer buffers later messages of
      busy groups to reach other groups; default 100 (at least ``concurrency``).
    - ``connection_name``: shown by ``rabbitmqctl list_connections``; default
      ``framework-<pid>-<random>``.
    - ``connect_timeout``: seconds each connect or reconnect attempt, AMQP handshake
      included, may take before it fails; default 10.
    """

    url: str = field(repr=False)  # it carries the password
    queue_expires: float | None = None
    delete_on_exit: bool = False
    lease_grace: float = 5.0
    prefetch: int | None = None
    fifo_prefetch: int = 100
    connection_name: str = ""
    connect_timeout: float = 10.0

    @classmethod
    def from_url(cls, url: str) -> RabbitMQSettings:
        """Split ``url`` into the broker URL and the backend's options.

        Raises:
            ConfigError: For a URL that is not ``amqp://`` or ``amqps://``, or a bad option.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ConfigError(
                f"not a RabbitMQ URL: {mask_url(url)!r} (expected amqp://... or amqps://...)"
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in _OPTIONS}
        rest = [(k, v) for k, v in query if k not in _OPTIONS]
        broker = urlunsplit(parts._replace(query=urlencode(rest)))
        return cls(
            url=broker,
            queue_expires=(
                _seconds("queue_expires", ours["queue_expires"])
                if "queue_expires" in ours
                else None
            ),
            delete_on_exit=ours.get("delete_on_exit", "0").lower() in ("1", "true", "yes"),
            lease_grace=_seconds("lease_grace", ours.get("lease_grace", "5")),
            prefetch=_count("prefetch", ours["prefetch"]) if "prefetch" in ours else None,
            fifo_prefetch=_count("fifo_prefetch", ours.get("fifo_prefetch", "100")),
            connection_name=ours.get("connection_name")
            or f"framework-{os.getpid()}-{uuid.uuid4().hex[:6]}",
            connect_timeout=_seconds("connect_timeout", ours.get("connect_timeout", "10")),
        )

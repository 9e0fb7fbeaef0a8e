"""Frozen specs that the decorators record: what the app declares, validated at import time."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict

from framework.exceptions import DeclarationError
from framework.smtp.rules import RuleActions

if TYPE_CHECKING:
    from framework.binding import Binder

__all__ = [
    "ConsumerSpec",
    "EmailRule",
    "GatewayOptions",
    "QueueOptions",
    "QueueSpec",
    "Registry",
    "RouteSpec",
    "SubscriptionSpec",
    "TopicSpec",
    "WebSocketAPISpec",
    "WebSocketRouteSpec",
    "rules_for",
]

RetryDelay = float | Callable[[int], float]
Handler = Callable[..., Any]

MAX_VISIBILITY_TIMEOUT = 43_200.0
MAX_DELAY = 900.0
MAX_MESSAGE_SIZE = 1_048_576
DEFAULT_MESSAGE_SIZE = 262_144
DEFAULT_RETENTION = 4 * 24 * 3600.0
MAX_RETENTION = 14 * 24 * 3600.0
# SQS: alphanumerics, hyphens and underscores, 1-80 characters (".fifo" included). Dots are allowed
# too because subscription queues are named TOPIC.SUBSCRIPTION; backends that forbid dots map them.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


class QueueOptions(TypedDict, total=False):
    """The keyword options of ``@app.on_queue`` and ``app.queue``; see SPEC section 2."""

    visibility_timeout: float
    max_receive_count: int
    dead_letter: str | None
    fifo: bool
    content_based_deduplication: bool
    delay: float
    retention: float
    batch_size: int
    concurrency: int
    retry_delay: RetryDelay | None
    max_message_size: int


def check_name(kind: str, name: str) -> None:
    """Raise DeclarationError unless ``name`` is a valid queue or topic name."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DeclarationError(
            f"{kind} name {name!r} is invalid: use 1-80 letters, digits, '-', '_' or '.'"
        )


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue and its SQS-style attributes. Durations are seconds."""

    name: str
    visibility_timeout: float = 30.0
    max_receive_count: int = 5
    dead_letter: str | None = None
    fifo: bool = False
    content_based_deduplication: bool = False
    delay: float = 0.0
    retention: float = DEFAULT_RETENTION
    batch_size: int = 10
    concurrency: int = 10
    retry_delay: RetryDelay | None = None
    max_message_size: int = DEFAULT_MESSAGE_SIZE
    is_dead_letter_queue: bool = False
    # Fed by a receipt rule (``@on_email``): the backend hands over received mail as the SMTP
    # receiver stores it (on AWS it unwraps SES's notification).
    carries_mail: bool = False

    @classmethod
    def from_options(cls, name: str, **options: Any) -> QueueSpec:
        """Build and validate a spec from decorator options.

        Args:
            name: The queue name; FIFO queues must end in ``.fifo``.
            **options: The options of [QueueOptions][framework.registry.QueueOptions].

        Returns:
            The validated spec, with ``dead_letter`` resolved to ``NAME-dlq`` unless given.

        Raises:
            DeclarationError: For an unknown option or a value out of range, naming both.
        """
        unknown = set(options) - set(QueueOptions.__annotations__)
        if unknown:
            allowed = ", ".join(sorted(QueueOptions.__annotations__))
            raise DeclarationError(
                f"queue {name!r}: unknown option(s) {', '.join(sorted(unknown))} "
                f"(allowed: {allowed})"
            )
        check_name("queue", name)
        fifo = bool(options.get("fifo", name.endswith(".fifo")))
        if fifo and not name.endswith(".fifo"):
            raise DeclarationError(
                f"queue {name!r}: FIFO queue names end in '.fifo'; rename it {name + '.fifo'!r}"
            )
        if not fifo and name.endswith(".fifo"):
            raise DeclarationError(
                f"queue {name!r}: only FIFO queue names end in '.fifo'; drop fifo=False or "
                "rename it"
            )
        values = {"dead_letter": _dlq_name(name), **options, "fifo": fifo}
        spec = cls(name=name, **values)
        spec.check()
        return spec

    def check(self) -> None:
        """Raise DeclarationError if any attribute is out of its allowed range."""
        where = f"queue {self.name!r}"
        _in_range(where, "visibility_timeout", self.visibility_timeout, 0, MAX_VISIBILITY_TIMEOUT)
        _in_range(where, "delay", self.delay, 0, MAX_DELAY)
        _in_range(where, "retention", self.retention, 60, MAX_RETENTION)
        _in_range(where, "max_receive_count", self.max_receive_count, 1, 1000)
        _in_range(where, "batch_size", self.batch_size, 1, 10)
        _in_range(where, "concurrency", self.concurrency, 1, 10_000)
        _in_range(where, "max_message_size", self.max_message_size, 1024, MAX_MESSAGE_SIZE)
        if isinstance(self.retry_delay, int | float):
            _in_range(where, "retry_delay", self.retry_delay, 0, MAX_VISIBILITY_TIMEOUT)
        elif self.retry_delay is not None and not callable(self.retry_delay):
            raise DeclarationError(f"{where}: retry_delay must be seconds or a callable")
        if self.content_based_deduplication and not self.fifo:
            raise DeclarationError(f"{where}: content_based_deduplication needs a FIFO queue")
        if self.dead_letter is not None:
            check_name("dead-letter queue", self.dead_letter)
            if self.dead_letter.endswith(".fifo") != self.fifo:
                raise DeclarationError(
                    f"{where}: dead-letter queue {self.dead_letter!r} must be of the same type "
                    "(FIFO or standard) as its source"
                )
            if self.dead_letter == self.name:
                raise DeclarationError(f"{where}: a queue cannot be its own dead-letter queue")

    def retry_delay_for(self, receive_count: int) -> float:
        """Return the seconds to wait before redelivering after the ``receive_count``-th failure."""
        if self.retry_delay is None:
            return self.visibility_timeout
        if callable(self.retry_delay):
            return max(0.0, min(float(self.retry_delay(receive_count)), MAX_VISIBILITY_TIMEOUT))
        return float(self.retry_delay)

    def dead_letter_spec(self) -> QueueSpec | None:
        """Return the spec of this queue's dead-letter queue, or None if it has none."""
        if self.dead_letter is None:
            return None
        return QueueSpec(
            name=self.dead_letter,
            fifo=self.fifo,
            dead_letter=None,
            retention=MAX_RETENTION,
            max_message_size=self.max_message_size,
            visibility_timeout=self.visibility_timeout,
            is_dead_letter_queue=True,
            carries_mail=self.carries_mail,
        )


def _dlq_name(name: str) -> str:
    if name.endswith(".fifo"):
        return name.removesuffix(".fifo") + "-dlq.fifo"
    return name + "-dlq"


def _in_range(where: str, option: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise DeclarationError(
            f"{where}: {option}={value!r} must be a number from {low:g} to {high:g}"
        )


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """An SNS-style topic; FIFO topics end in ``.fifo``."""

    name: str
    fifo: bool = False
    content_based_deduplication: bool = False
    max_message_size: int = DEFAULT_MESSAGE_SIZE

    @classmethod
    def from_options(cls, name: str, **options: Any) -> TopicSpec:
        """Build and validate a topic spec.

        Raises:
            DeclarationError: For an unknown option or a bad FIFO name.
        """
        allowed = {"fifo", "content_based_deduplication", "max_message_size"}
        unknown = set(options) - allowed
        if unknown:
            raise DeclarationError(
                f"topic {name!r}: unknown option(s) {', '.join(sorted(unknown))} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        check_name("topic", name)
        fifo = bool(options.pop("fifo", name.endswith(".fifo")))
        if fifo != name.endswith(".fifo"):
            raise DeclarationError(f"topic {name!r}: FIFO topics, and only they, end in '.fifo'")
        spec = cls(name=name, fifo=fifo, **options)
        _in_range(
            f"topic {name!r}", "max_message_size", spec.max_message_size, 1024, DEFAULT_MESSAGE_SIZE
        )
        return spec


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """A topic subscription delivering to its own queue ``TOPIC.NAME`` (or an endpoint)."""

    topic: str
    name: str
    queue: QueueSpec | None
    filter_policy: Mapping[str, Any] | None = None
    filter_policy_scope: str = "MessageAttributes"
    raw: bool = True
    endpoint: str | None = None

    @staticmethod
    def queue_name(topic: str, name: str) -> str:
        """Return the queue name of subscription ``name`` to ``topic``."""
        if topic.endswith(".fifo"):
            return f"{topic.removesuffix('.fifo')}.{name}.fifo"
        return f"{topic}.{name}"


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A handler bound to a queue."""

    queue: QueueSpec
    handler: Handler
    binder: Binder
    kind: str = "queue"  # "queue", "topic" or "email"

    @property
    def name(self) -> str:
        """The handler's qualified name, for logs and errors."""
        return f"{self.handler.__module__}.{self.handler.__qualname__}"


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """An HTTP route served by the gateway."""

    path: str
    methods: tuple[str, ...]
    handler: Handler
    binder: Binder
    status_code: int = 200
    version: str | None = None
    auth: Any = None
    throttle: Any = None
    cache: Any = None
    name: str = ""

    @property
    def full_path(self) -> str:
        """The path as served, with the version prefix."""
        return f"/{self.version}{self.path}" if self.version else self.path

    def as_dict(self) -> dict[str, Any]:
        """Return the route as the admin API and ``framework routes`` list it."""
        return {
            "methods": list(self.methods),
            "path": self.full_path,
            "handler": self.binder.handler_name,
            "version": self.version,
            "status_code": self.status_code,
            "auth": auth_name(self.auth),
        }


def auth_name(auth: Any) -> str | None:
    """Name a route's authorizer for listings: its class (and a ``CustomAuth``'s function)."""
    if auth is None:
        return None
    function = getattr(auth, "function", None)
    if callable(function):
        return f"{type(auth).__name__}({function.__module__}.{function.__qualname__})"
    return type(auth).__name__


@dataclass(frozen=True, slots=True)
class EmailRule:
    """A receipt rule: recipients it matches and the queue feeding its handler."""

    recipients: tuple[str, ...]
    queue: QueueSpec
    stop: bool = False
    actions: RuleActions | None = None

    def matches(self, address: str) -> bool:
        """True if ``address`` satisfies one of the rule's recipient conditions.

        A condition is a full address, a domain (``example.com``) or, with a leading dot,
        any subdomain of one (``.example.com``), as SES receipt rules have them.
        """
        address = address.lower()
        domain = address.rpartition("@")[2]
        for condition in self.recipients:
            condition = condition.lower()
            if "@" in condition:
                if address == condition:
                    return True
            elif condition.startswith("."):
                if domain.endswith(condition):
                    return True
            elif domain == condition:
                return True
        return False


def rules_for(rules: Sequence[EmailRule], recipient: str) -> list[EmailRule]:
    """Return the rules matching ``recipient``, in order, up to and including a stop rule."""
    chosen: list[EmailRule] = []
    for rule in rules:
        if rule.matches(recipient):
            chosen.append(rule)
            if rule.stop:
                break
    return chosen


@dataclass(frozen=True, slots=True)
class WebSocketAPISpec:
    """A WebSocket API at one path: how a message picks its route, and its limits.

    Attributes:
        path: Where the gateway serves it (an exact path).
        route_selection: The field of a JSON message naming its route (``action``).
        max_message_size: The largest message a client may send, in bytes (a bigger one
            closes the connection with 1009, as API Gateway's 128 KB limit does).
        rate: Messages per second one connection may send, refilling a bucket of ``burst``
            (more are answered with a ``throttled`` error and not handled).
        burst: The bucket's size.
        idle_timeout: Seconds without a message from the client before the connection is
            closed (1000, ``idle timeout``); API Gateway's is 10 minutes.
        max_connections: Open connections of this API one process holds (503 above).
        send_queue: Messages waiting to be written to one slow client (1008 above).
        allowed_origins: Origins of the web pages, besides the server's own, that may open
            a connection (``"*"``: any); None for the origins the app's ``CORS`` allows.
            A browser handshake from any other is refused with 403.
    """

    path: str
    route_selection: str = "action"
    max_message_size: int = 131_072
    rate: float = 100.0
    burst: int = 200
    idle_timeout: float = 600.0
    max_connections: int = 10_000
    send_queue: int = 256
    allowed_origins: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class WebSocketRouteSpec:
    """One route of a WebSocket API: ``$connect``, ``$disconnect``, ``$default`` or a value."""

    path: str
    route: str
    handler: Handler
    binder: Binder
    auth: Any = None

    @property
    def name(self) -> str:
        """The handler's qualified name, for logs and errors."""
        return self.binder.handler_name

    def as_dict(self) -> dict[str, Any]:
        """Return the route as the admin API and ``framework routes`` list it."""
        return {
            "path": self.path,
            "route": self.route,
            "handler": self.name,
            "auth": auth_name(self.auth),
        }


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """How the app's HTTP gateway is served, checked when the ``App`` is made.

    Attributes:
        cors: A ``framework.gateway.CORS``, or None for no cross-origin access.
        trusted_proxies: CIDR ranges whose ``X-Forwarded-For`` names the client.
        max_body_size: The largest request body accepted, in bytes (413 above).
        admin_token: The bearer token of the admin API under ``/_framework/``, or None.
        metrics: Per-route metrics and ``/metrics``.
        openapi: ``/openapi.json`` and ``/docs``.
        dashboard: ``/_framework/dashboard`` and its sampler.
        admin_hosts: Host names (besides loopback) the admin API answers for without a token,
            and origins its pages may come from.
        protect_metrics: With an admin token, ``/metrics`` asks for it too.
    """

    cors: Any = None
    trusted_proxies: tuple[str, ...] = ()
    max_body_size: int = 1_048_576
    admin_token: str | None = None
    metrics: bool = True
    openapi: bool = True
    dashboard: bool = True
    admin_hosts: tuple[str, ...] = ()
    protect_metrics: bool = False


@dataclass(slots=True)
class Registry:
    """Everything an app declares, in declaration order: the complete description of the app.

    The runtime, the gateway, the SMTP receiver and the Lambda handler are built from it (and
    their collaborators), never from the ``App``.
    """

    name: str = "app"
    gateway: GatewayOptions = field(default_factory=GatewayOptions)
    queues: dict[str, QueueSpec] = field(default_factory=dict)
    topics: dict[str, TopicSpec] = field(default_factory=dict)
    subscriptions: list[SubscriptionSpec] = field(default_factory=list)
    consumers: dict[str, ConsumerSpec] = field(default_factory=dict)
    routes: list[RouteSpec] = field(default_factory=list)
    email_rules: list[EmailRule] = field(default_factory=list)
    websocket_apis: dict[str, WebSocketAPISpec] = field(default_factory=dict)
    websocket_routes: list[WebSocketRouteSpec] = field(default_factory=list)

    def listing(self) -> dict[str, list[dict[str, Any]]]:
        """The HTTP and WebSocket routes, as the admin API and ``framework routes`` list them."""
        return {
            "routes": [spec.as_dict() for spec in self.routes],
            "websocket_routes": [spec.as_dict() for spec in self.websocket_routes],
        }

    def add_queue(self, spec: QueueSpec) -> QueueSpec:
        """Record a queue (and its dead-letter queue); redeclaring must not change it."""
        existing = self.queues.get(spec.name)
        if existing is not None and existing != spec:
            if existing.is_dead_letter_queue and not spec.is_dead_letter_queue:
                # A queue declared explicitly after being implied as a DLQ: the explicit one wins.
                spec = replace(spec, is_dead_letter_queue=True)
            elif not spec.is_dead_letter_queue:
                raise DeclarationError(
                    f"queue {spec.name!r} is declared twice with different options"
                )
            else:
                return existing
        self.queues[spec.name] = spec
        dlq = spec.dead_letter_spec()
        if dlq is not None and dlq.name not in self.queues:
            self.queues[dlq.name] = dlq
        return spec

    def add_consumer(self, consumer: ConsumerSpec) -> None:
        """Record a handler for a queue; one queue has at most one handler."""
        other = self.consumers.get(consumer.queue.name)
        if other is not None:
            raise DeclarationError(
                f"{consumer.name}: queue {consumer.queue.name!r} already has a handler, "
                f"{other.name}; one queue has one handler (use a topic to fan out)"
            )
        self.add_queue(consumer.queue)
        self.consumers[consumer.queue.name] = consumer

    def add_topic(self, spec: TopicSpec) -> TopicSpec:
        """Record a topic; redeclaring must not change it."""
        existing = self.topics.get(spec.name)
        if existing is not None and existing != spec:
            raise DeclarationError(f"topic {spec.name!r} is declared twice with different options")
        self.topics[spec.name] = spec
        return spec

    def add_subscription(self, sub: SubscriptionSpec) -> None:
        """Record a subscription; names are unique per topic."""
        if any(s.topic == sub.topic and s.name == sub.name for s in self.subscriptions):
            raise DeclarationError(
                f"topic {sub.topic!r} already has a subscription named {sub.name!r}; "
                "pass name=... to tell them apart"
            )
        self.subscriptions.append(sub)

    def dead_letter_sources(self, dlq: str) -> list[str]:
        """Return the queues whose dead-letter queue is ``dlq``."""
        return [q.name for q in self.queues.values() if q.dead_letter == dlq]

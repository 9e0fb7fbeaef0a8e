"""``App``: decorators record specs; ``send``, ``publish``, ``redrive`` go to the runtime."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from framework.backends.base import AttributeValue
from framework.binding import bind
from framework.exceptions import AppNotRunningError, DeclarationError
from framework.registry import (
    ConsumerSpec,
    EmailRule,
    QueueOptions,
    QueueSpec,
    Registry,
    RouteSpec,
    SubscriptionSpec,
    TopicSpec,
)
from framework.runtime.events import HandlerObserver
from framework.semantics.filter_policy import validate as validate_filter_policy
from framework.smtp.config import RelayConfig, SMTPConfig
from framework.smtp.outbound import Mailer
from framework.smtp.rules import RuleActions

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from framework.config import Settings
    from framework.gateway.cors import CORS
    from framework.gateway.routers import Router
    from framework.runtime import Runtime

__all__ = ["App"]

H = TypeVar("H", bound=Callable[..., Any])

_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


@contextmanager
def _named(handler: Callable[..., Any]) -> Iterator[None]:
    """Prefix a declaration error with the handler it is about, unless it already names it."""
    name = f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', handler)}"
    try:
        yield
    except DeclarationError as exc:
        if str(exc).startswith(name):
            raise
        raise type(exc)(f"{name}: {exc}") from None


def _endpoint_name(endpoint: str) -> str:
    """A subscription name from an endpoint: its host or address, as a queue-safe token."""
    core = endpoint.partition("://")[2] or endpoint.partition(":")[2]
    return re.sub(r"[^A-Za-z0-9_-]+", "-", core).strip("-")[:40] or "endpoint"


def _checked_gateway_options(cors: object, ranges: Sequence[str]) -> Sequence[str]:
    """Check the gateway's options now, at import, not when the gateway is first built."""
    if cors is not None:
        from framework.gateway.cors import CORS

        if not isinstance(cors, CORS):
            raise DeclarationError(f"App cors={cors!r} must be CORS(allow_origins=[...], ...)")
    if ranges:
        from framework.gateway.proxies import TrustedProxies

        TrustedProxies(ranges)
    return ranges


class App:
    """An event-driven application: HTTP routes, queue, topic and mail handlers.

    Args:
        name: The app's name, used in logs and as the default mail sender's local part.
        admin_token: A bearer token required by the admin API under ``/_framework/``
            (default: the ``FRAMEWORK_ADMIN_TOKEN`` environment variable; none means open).
        mail_from: The default sender of ``app.mail.send``.
        max_body_size: The largest HTTP request body the gateway accepts, in bytes (413 above).
        smtp: The SMTP receiver's limits, IP rules, TLS and AUTH (default: the nearest
            ``pyproject.toml``'s ``[tool.framework.smtp]`` table, read when the receiver
            starts, else ``SMTPConfig()``); given here, it replaces that table whole.
        mail_relay: An SMTP relay for ``app.mail.send`` (default: the ``FRAMEWORK_MAIL_RELAY``
            URL, like ``smtp+starttls://user:pass@relay:587``, else the backend's own mail
            transport, which is the outbox on ``memory://``).
        cors: Which other origins' web pages may call the gateway (default: none); see
            ``framework.gateway.CORS``.
        trusted_proxies: CIDR ranges of the reverse proxies in front of the gateway, whose
            ``X-Forwarded-For`` names the client (default: none; the socket peer is the
            client, whatever the headers say).

    Raises:
        DeclarationError: For ``cors`` that is not a ``CORS``, or a malformed proxy range.
    """

    def __init__(
        self,
        name: str,
        *,
        admin_token: str | None = None,
        mail_from: str | None = None,
        max_body_size: int = 1_048_576,
        smtp: SMTPConfig | None = None,
        mail_relay: RelayConfig | None = None,
        cors: CORS | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.cors = cors
        self.trusted_proxies = tuple(_checked_gateway_options(cors, trusted_proxies))
        self._smtp = smtp
        self._smtp_in_code = smtp is not None
        # Each receipt rule's reject_on/drop_on, by the rule's queue name.
        self.email_actions: dict[str, RuleActions] = {}
        self.max_body_size = max_body_size
        self.handler_observers: list[HandlerObserver] = []
        # Called with the runtime when the app starts and None when it stops (the dashboard's
        # sampler runs in between).
        self.runtime_observers: list[Callable[[Runtime | None], None]] = []
        self.registry = Registry()
        self.admin_token = admin_token or os.environ.get("FRAMEWORK_ADMIN_TOKEN") or None
        local_part = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "app"
        self.mail = Mailer(
            self,
            sender=mail_from or f"{local_part}@localhost",
            relay=mail_relay or RelayConfig.from_env(),
        )
        self._runtime: Runtime | None = None
        self._asgi: ASGIApp | None = None

    # Per-route HTTP metrics and /metrics; set False before the gateway is built to drop both.
    metrics: bool = True
    # /openapi.json and /docs; set False before the gateway is built to serve neither.
    openapi: bool = True
    # /_framework/dashboard and its once-a-second sampler; set False before the gateway is built.
    dashboard: bool = True
    # Host names (besides localhost and loopback addresses) the admin API answers for when it
    # has no token, and origins (host[:port]) its pages may come from; see the security page.
    admin_hosts: Sequence[str] = ()
    # With an admin token, /metrics asks for it too (Authorization: Bearer TOKEN).
    protect_metrics: bool = False

    def __repr__(self) -> str:
        return f"<App {self.name!r}>"

    @property
    def smtp(self) -> SMTPConfig:
        """The SMTP receiver's config: ``smtp=`` as given, else ``[tool.framework.smtp]``.

        Raises:
            ConfigError: On first use, if the pyproject table has an unknown key or bad value.
        """
        if self._smtp is None:
            from framework.config import load_smtp_config

            self._smtp = load_smtp_config() or SMTPConfig()
        return self._smtp

    @smtp.setter
    def smtp(self, config: SMTPConfig) -> None:
        self._smtp = config
        self._smtp_in_code = True

    def use_settings(self, settings: Settings) -> None:
        """Apply resolved settings that configure the app itself, such as ``framework run``'s.

        Settings given in code win: ``[tool.framework.smtp]`` (with the ``--env`` profile's
        table) becomes the receiver's config only when the app was made without ``smtp=``.

        Raises:
            ConfigError: If the table has a value ``SMTPConfig`` refuses.
        """
        if not self._smtp_in_code and settings.smtp is not None:
            self._smtp = settings.smtp.build()

    # --- declarations --------------------------------------------------------------------

    def route(
        self,
        path: str,
        *,
        methods: Sequence[str] = ("GET",),
        status_code: int = 200,
        version: str | None = None,
        auth: Any = None,
        throttle: Any = None,
        cache: Any = None,
        name: str | None = None,
    ) -> Callable[[H], H]:
        """Serve the decorated function at ``path`` (under ``/VERSION`` when ``version`` is set).

        Raises:
            DeclarationError: For a path without a leading '/', an unknown method, or a
                handler parameter that cannot be bound.
        """
        if not path.startswith("/"):
            raise DeclarationError(f"route {path!r}: the path must start with '/'")
        upper = tuple(m.upper() for m in methods)
        unknown = set(upper) - _METHODS
        if unknown:
            raise DeclarationError(
                f"route {path!r}: unknown method(s) {', '.join(sorted(unknown))}"
            )
        if version is not None and (not version or "/" in version):
            raise DeclarationError(f"route {path!r}: version {version!r} must be one path segment")

        def register(handler: H) -> H:
            binder = bind(handler, kind="route", path=path, methods=upper)
            spec = RouteSpec(
                path=path,
                methods=upper,
                handler=handler,
                binder=binder,
                status_code=status_code,
                version=version,
                auth=auth,
                throttle=throttle,
                cache=cache,
                name=name or handler.__name__,
            )
            for other in self.registry.routes:
                if other.full_path == spec.full_path and set(other.methods) & set(upper):
                    raise DeclarationError(
                        f"{binder.handler_name}: {'/'.join(upper)} {spec.full_path} is already "
                        f"served by {other.binder.handler_name}"
                    )
            self.registry.routes.append(spec)
            self._asgi = None
            return handler

        return register

    def router(
        self,
        prefix: str = "",
        *,
        version: str | None = None,
        auth: Any = None,
        throttle: Any = None,
        cache: Any = None,
    ) -> Router:
        """Return a router (blueprint): routes under ``prefix`` sharing version and options.

        Raises:
            DeclarationError: For a malformed prefix.
        """
        from framework.gateway.routers import Router

        return Router(self, prefix, version=version, auth=auth, throttle=throttle, cache=cache)

    def queue(self, name: str, **options: Unpack[QueueOptions]) -> QueueSpec:
        """Declare a queue without a handler (to send to, or consume elsewhere)."""
        return self.registry.add_queue(QueueSpec.from_options(name, **options))

    def topic(self, name: str, **options: Any) -> TopicSpec:
        """Declare a topic without subscribing to it here.

        Args:
            name: The topic's name (FIFO topics end in ``.fifo``).
            **options: ``fifo``, ``content_based_deduplication``, ``max_message_size``.
        """
        return self.registry.add_topic(TopicSpec.from_options(name, **options))

    def on_queue(self, name: str, **options: Unpack[QueueOptions]) -> Callable[[H], H]:
        """Run the decorated function for every message on queue ``name``.

        Raises:
            DeclarationError: For bad options (now, at import) or a second handler.
        """

        def register(handler: H) -> H:
            with _named(handler):
                spec = QueueSpec.from_options(name, **options)
                binder = bind(handler, kind="queue")
                self.registry.add_consumer(ConsumerSpec(spec, handler, binder, kind="queue"))
            return handler

        return register

    def on_topic(
        self,
        topic: str,
        filter_policy: Mapping[str, Any] | None = None,
        name: str | None = None,
        *,
        filter_policy_scope: str = "MessageAttributes",
        **options: Unpack[QueueOptions],
    ) -> Callable[[H], H]:
        """Subscribe the decorated function to ``topic`` through its own queue ``TOPIC.NAME``.

        Args:
            topic: The topic (declared now with defaults if it was not).
            filter_policy: An SNS filter policy; only matching messages are delivered.
            name: The subscription's name (default: the function's name).
            filter_policy_scope: ``"MessageAttributes"`` or ``"MessageBody"``.
            **options: Options of the subscription's queue, as for ``on_queue``.

        Raises:
            DeclarationError: For an invalid filter policy, naming the handler.
        """
        if filter_policy_scope not in ("MessageAttributes", "MessageBody"):
            raise DeclarationError(
                f"topic {topic!r}: filter_policy_scope must be 'MessageAttributes' or "
                f"'MessageBody', not {filter_policy_scope!r}"
            )
        topic_spec = self.registry.topics.get(topic) or self.topic(topic)

        def register(handler: H) -> H:
            sub_name = name or handler.__name__
            queue_name = SubscriptionSpec.queue_name(topic, sub_name)
            with _named(handler):
                if filter_policy is not None:
                    validate_filter_policy(filter_policy, scope=filter_policy_scope)  # type: ignore[arg-type]
                spec = QueueSpec.from_options(queue_name, **{"fifo": topic_spec.fifo, **options})
                binder = bind(handler, kind="topic")
                self.registry.add_subscription(
                    SubscriptionSpec(
                        topic=topic,
                        name=sub_name,
                        queue=spec,
                        filter_policy=filter_policy,
                        filter_policy_scope=filter_policy_scope,
                    )
                )
                self.registry.add_consumer(ConsumerSpec(spec, handler, binder, kind="topic"))
            return handler

        return register

    def subscribe(
        self,
        topic: str,
        endpoint: str,
        *,
        name: str | None = None,
        filter_policy: Mapping[str, Any] | None = None,
        filter_policy_scope: str = "MessageAttributes",
        **options: Unpack[QueueOptions],
    ) -> None:
        """Deliver ``topic``'s messages to an HTTP(S) endpoint (POST) or ``mailto:`` address.

        Deliveries go through the subscription's own queue, so a failing endpoint is retried
        with exponential backoff (1 s, 2 s, 4 s ... 60 s) and dead-lettered after
        ``max_receive_count`` tries, without blocking other subscribers.

        Raises:
            DeclarationError: For an unsupported endpoint or an invalid filter policy.
        """
        from framework.runtime.endpoints import backoff, endpoint_handler

        handler = endpoint_handler(self, topic, endpoint)
        handler.__name__ = handler.__qualname__ = name or _endpoint_name(endpoint)
        options.setdefault("retry_delay", backoff)
        self.on_topic(
            topic, filter_policy, name, filter_policy_scope=filter_policy_scope, **options
        )(handler)

    def on_email(
        self,
        recipients: Sequence[str],
        *,
        stop: bool = False,
        reject_on: Mapping[str, Sequence[str]] | None = None,
        drop_on: Mapping[str, Sequence[str]] | None = None,
        **options: Unpack[QueueOptions],
    ) -> Callable[[H], H]:
        """Run the decorated function for mail to ``recipients``, delivered through a queue.

        Args:
            recipients: Addresses (``a@x.org``), domains (``x.org``) or any subdomain
                (``.x.org``), as in SES receipt rules.
            stop: Stop evaluating later rules when this one matches.
            reject_on: ``{check: [verdict, ...]}``: refuse a mail reaching this rule with such
                a verdict with ``550 5.7.1`` (the whole mail: SMTP answers once for all
                recipients). Needs ``scanners`` in the app's ``SMTPConfig``.
            drop_on: ``{check: [verdict, ...]}``: keep a mail with such a verdict from this
                rule's queue only; the sender gets 250 and other rules still get it.
            **options: Options of the rule's queue (``email-FUNCTION``).

        Raises:
            DeclarationError: For no recipients, a malformed condition, or an unknown check
                or verdict in ``reject_on`` or ``drop_on``.
        """
        actions = RuleActions.of(reject_on, drop_on)
        if isinstance(recipients, str) or not recipients:
            raise DeclarationError("on_email: recipients must be a non-empty list of addresses")
        for r in recipients:
            if not r or any(c in r for c in " \r\n,;<>"):
                raise DeclarationError(f"on_email: recipient condition {r!r} is not valid")

        def register(handler: H) -> H:
            with _named(handler):
                spec = QueueSpec.from_options(f"email-{handler.__name__}", **options)
                binder = bind(handler, kind="email")
            self.registry.add_consumer(ConsumerSpec(spec, handler, binder, kind="email"))
            self.registry.email_rules.append(EmailRule(tuple(recipients), spec, stop=stop))
            if actions is not None:
                self.email_actions[spec.name] = actions
            return handler

        return register

    # --- running -------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        """The runtime the app is attached to.

        Raises:
            AppNotRunningError: If the app is not running.
        """
        if self._runtime is None:
            raise AppNotRunningError(
                f"app {self.name!r} is not running: start it with `framework run`, "
                "`async with TestApp(app)` or `async with app.run(backend)`"
            )
        return self._runtime

    def _attach(self, runtime: Runtime) -> None:
        self._runtime = runtime
        for observer in self.runtime_observers:
            observer(runtime)

    def _detach(self, runtime: Runtime) -> None:
        if self._runtime is runtime:
            self._runtime = None
            for observer in self.runtime_observers:
                observer(None)

    def run(self, backend: str | Any = "memory://", *, workers: bool = True) -> Runtime:
        """Return a runtime for ``async with``: the app on ``backend`` (a URL or a backend)."""
        from framework.backends import from_url
        from framework.runtime import Runtime

        instance = from_url(backend) if isinstance(backend, str) else backend
        return Runtime(self, instance, workers=workers)

    @property
    def asgi(self) -> ASGIApp:
        """The HTTP gateway as an ASGI application, for any ASGI server."""
        if self._asgi is None:
            from framework.gateway import build

            self._asgi = build(self)
        return self._asgi

    async def send(
        self,
        queue: str,
        body: object,
        *,
        attributes: Mapping[str, AttributeValue] | None = None,
        delay: float = 0,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Send ``body`` to ``queue``; return the message id.

        Args:
            queue: A declared queue.
            body: A pydantic model, a dict or list (JSON), str or bytes.
            attributes: Message attributes (str, int, float, bool), at most 10.
            delay: Seconds (0-900) before the message becomes visible.
            group_id: The FIFO message group (required on FIFO queues).
            deduplication_id: The FIFO deduplication id (or use content-based deduplication).

        Raises:
            UnknownQueueError: If the queue is not declared.
            MessageTooLargeError: If body and attributes exceed the queue's limit.
            AppNotRunningError: If the app is not running.
        """
        return await self.runtime.send(
            queue,
            body,
            attributes=attributes,
            delay=delay,
            group_id=group_id,
            deduplication_id=deduplication_id,
        )

    async def publish(
        self,
        topic: str,
        body: object,
        *,
        attributes: Mapping[str, AttributeValue] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Publish ``body`` to every matching subscription of ``topic``; return the message id.

        Raises:
            UnknownTopicError: If the topic is not declared.
            MessageTooLargeError: If body and attributes exceed 256 KiB.
        """
        return await self.runtime.publish(
            topic,
            body,
            attributes=attributes,
            group_id=group_id,
            deduplication_id=deduplication_id,
        )

    async def redrive(self, dlq: str, to: str | None = None, limit: int | None = None) -> int:
        """Move dead letters from ``dlq`` back to their source queue (or ``to``).

        Returns:
            How many messages were moved.
        """
        return await self.runtime.redrive(dlq, to=to, limit=limit)

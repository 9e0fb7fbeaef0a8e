"""``App``: decorators record specs; ``send``, ``publish``, ``redrive`` go to the runtime."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from framework.binding import bind
from framework.exceptions import DeclarationError
from framework.gateway.admin import ADMIN_PREFIX
from framework.gateway.auth import Authorizer, authorizer_for
from framework.gateway.cache import cache_for
from framework.gateway.cors import CORS, checked_origins
from framework.gateway.proxies import TrustedProxies
from framework.gateway.throttle import throttles_for
from framework.outgoing import PublishOptions, SendOptions
from framework.registry import (
    ConsumerSpec,
    EmailRule,
    GatewayOptions,
    QueueOptions,
    QueueSpec,
    Registry,
    RouteSpec,
    SubscriptionSpec,
    TopicSpec,
    WebSocketAPISpec,
    WebSocketRouteSpec,
)
from framework.runtime import Runtime
from framework.runtime.events import Events
from framework.runtime.lifecycle import DEFAULT_GRACE
from framework.semantics.filter_policy import validate as validate_filter_policy
from framework.smtp.config import RelayConfig, SMTPConfig
from framework.smtp.outbound import Mailer, default_sender
from framework.smtp.rules import RuleActions
from framework.websocket import CONNECT, DISCONNECT, SPECIAL_ROUTES

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from framework.gateway.asgi import Gateway
    from framework.gateway.routers import Router
    from framework.settings import Settings
    from framework.websocket import ConnectionManager

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


def _gateway_options(
    cors: object,
    ranges: Sequence[str],
    max_body_size: object,
    admin_token: str | None,
) -> GatewayOptions:
    """Check the gateway's options now, at import, not when the gateway is first built."""
    if cors is not None and not isinstance(cors, CORS):
        raise DeclarationError(f"App cors={cors!r} must be CORS(allow_origins=[...], ...)")
    if ranges:
        TrustedProxies(ranges)
    if isinstance(max_body_size, bool) or not isinstance(max_body_size, int) or max_body_size < 0:
        raise DeclarationError(
            f"App max_body_size={max_body_size!r} must be a number of bytes (0 or more)"
        )
    return GatewayOptions(
        cors=cors,
        trusted_proxies=tuple(ranges),
        max_body_size=max_body_size,
        admin_token=admin_token,
    )


def _switch(option: str, doc: str) -> property:
    """A boolean gateway option of the registry, readable and settable on the App."""

    def get(app: App) -> bool:
        return bool(getattr(app.registry.gateway, option))

    def set_(app: App, value: bool) -> None:
        app._set_gateway(**{option: bool(value)})

    return property(get, set_, doc=doc)


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
        self.registry = Registry(
            name=name,
            gateway=_gateway_options(
                cors,
                trusted_proxies,
                max_body_size,
                admin_token or os.environ.get("FRAMEWORK_ADMIN_TOKEN") or None,
            ),
        )
        self._smtp = smtp
        self._smtp_in_code = smtp is not None
        # The hub the runtime, the gateway's metrics and dashboard, and the app itself share.
        self.events: Events[Runtime] = Events(name)
        self.mail = Mailer(
            lambda: self.runtime.backend,
            sender=mail_from or default_sender(name),
            relay=mail_relay or RelayConfig.from_env(),
        )
        self._gateway: Gateway | None = None
        self._authorizers: dict[int, tuple[object, Authorizer]] = {}

    metrics = _switch("metrics", "Per-route HTTP metrics and ``/metrics`` (set before serving).")
    openapi = _switch("openapi", "``/openapi.json`` and ``/docs`` (set before serving).")
    dashboard = _switch("dashboard", "``/_framework/dashboard`` and its sampler.")
    protect_metrics = _switch(
        "protect_metrics", "With an admin token, ``/metrics`` asks for it too (set before serving)."
    )

    @property
    def admin_hosts(self) -> tuple[str, ...]:
        """Host names (besides localhost and loopback addresses) the admin API answers for
        when it has no token, and origins (``host[:port]``) its pages may come from."""
        return self.registry.gateway.admin_hosts

    @admin_hosts.setter
    def admin_hosts(self, hosts: Sequence[str]) -> None:
        if isinstance(hosts, str):
            raise DeclarationError("app.admin_hosts takes a list of host names, not one string")
        self._set_gateway(admin_hosts=tuple(hosts))

    @property
    def admin_token(self) -> str | None:
        """The admin API's bearer token, or None (open)."""
        return self.registry.gateway.admin_token

    @admin_token.setter
    def admin_token(self, token: str | None) -> None:
        self._set_gateway(admin_token=token or None)

    @property
    def cors(self) -> CORS | None:
        """The cross-origin policy of the gateway's routes."""
        cors: CORS | None = self.registry.gateway.cors
        return cors

    @property
    def trusted_proxies(self) -> tuple[str, ...]:
        """The reverse proxies whose ``X-Forwarded-For`` the gateway believes."""
        return self.registry.gateway.trusted_proxies

    @property
    def max_body_size(self) -> int:
        """The largest HTTP request body the gateway accepts, in bytes."""
        return self.registry.gateway.max_body_size

    def _set_gateway(self, **changes: Any) -> None:
        self.registry.gateway = replace(self.registry.gateway, **changes)
        self._drop_gateway()

    def _drop_gateway(self) -> None:
        """Forget the built gateway (a route or an option changed): it is built again."""
        if self._gateway is not None:
            self._gateway.close()
            self._gateway = None

    def __repr__(self) -> str:
        return f"<App {self.name!r}>"

    @property
    def smtp(self) -> SMTPConfig:
        """The SMTP receiver's config: ``smtp=`` as given, else ``[tool.framework.smtp]``.

        Raises:
            ConfigError: On first use, if the pyproject table has an unknown key or bad value.
        """
        if self._smtp is None:
            from framework.settings import load_smtp_config

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
            DeclarationError: For a path without a leading '/' or under ``/_framework``, an
                unknown method, a handler parameter that cannot be bound, or an ``auth=``,
                ``throttle=`` or ``cache=`` that is not one of the documented forms.
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
            where = binder.handler_name
            full_path = f"/{version}{path}" if version else path
            if full_path == ADMIN_PREFIX or full_path.startswith(ADMIN_PREFIX + "/"):
                raise DeclarationError(f"{where}: {full_path} is reserved for the admin API")
            authorizer = self._authorizer(auth, where) if auth is not None else None
            if cache is not None and "GET" not in upper:
                raise DeclarationError(f"{where}: cache= only applies to GET routes")
            spec = RouteSpec(
                path=path,
                methods=upper,
                handler=handler,
                binder=binder,
                status_code=status_code,
                version=version,
                auth=authorizer,
                throttle=(
                    throttles_for(throttle, where, authorizer is not None)
                    if throttle is not None
                    else None
                ),
                cache=cache_for(cache, where) if cache is not None else None,
                name=name or handler.__name__,
            )
            for other in self.registry.routes:
                if other.full_path == spec.full_path and set(other.methods) & set(upper):
                    raise DeclarationError(
                        f"{binder.handler_name}: {'/'.join(upper)} {spec.full_path} is already "
                        f"served by {other.binder.handler_name}"
                    )
            self.registry.routes.append(spec)
            self._drop_gateway()
            return handler

        return register

    def _authorizer(self, auth: object, where: str) -> Authorizer:
        """Check ``auth=``; the same value on several routes gives one authorizer (one scheme)."""
        known = self._authorizers.get(id(auth))
        if known is not None and known[0] is auth:
            return known[1]
        checked = authorizer_for(auth, where)
        self._authorizers[id(auth)] = (auth, checked)
        return checked

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

        return Router(
            self.route, prefix, version=version, auth=auth, throttle=throttle, cache=cache
        )

    def websocket_api(
        self,
        path: str,
        route_selection: str = "action",
        *,
        max_message_size: int = 131_072,
        rate: float = 100.0,
        burst: int = 200,
        idle_timeout: float = 600.0,
        max_connections: int = 10_000,
        send_queue: int = 256,
        allowed_origins: Sequence[str] | None = None,
    ) -> WebSocketAPISpec:
        """Declare the WebSocket API at ``path``: which JSON field picks a route, and its limits.

        ``@app.websocket`` declares one with the defaults when its path has none; call this
        first (or after: it replaces the defaults) to change them. See ``WebSocketAPISpec``.

        ``allowed_origins`` lists the web pages' origins (``"https://app.example.com"``), besides
        the server's own, whose scripts may connect (``["*"]``: any page); by default those
        of the app's ``CORS``, a CORS ``"*"`` excepted. A handshake without ``Origin`` (not
        from a browser) is always admitted.

        Raises:
            DeclarationError: For a path without a leading '/' or under ``/_framework``, an
                empty ``route_selection``, a limit out of range, an ``allowed_origins`` entry
                that is not an origin, or a second declaration of the path with other
                options.
        """
        if not path.startswith("/"):
            raise DeclarationError(f"websocket_api {path!r}: the path must start with '/'")
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            raise DeclarationError(f"websocket_api {path!r}: it is reserved for the admin API")
        if not isinstance(route_selection, str) or not route_selection:
            raise DeclarationError(
                f"websocket_api {path!r}: route_selection={route_selection!r} must name a field"
            )
        where = f"websocket_api {path!r}"
        limits: dict[str, tuple[float, float]] = {
            "max_message_size": (1, 16_777_216),
            "rate": (0.001, 1_000_000),
            "burst": (1, 1_000_000),
            "idle_timeout": (0.01, 86_400),
            "max_connections": (1, 10_000_000),
            "send_queue": (1, 1_000_000),
        }
        values = {
            "max_message_size": max_message_size,
            "rate": rate,
            "burst": burst,
            "idle_timeout": idle_timeout,
            "max_connections": max_connections,
            "send_queue": send_queue,
        }
        for option, (low, high) in limits.items():
            value = values[option]
            whole = option in ("max_message_size", "burst", "max_connections", "send_queue")
            if (
                isinstance(value, bool)
                or not isinstance(value, int if whole else int | float)
                or not low <= value <= high
            ):
                kind = "a whole number" if whole else "a number"
                raise DeclarationError(
                    f"{where}: {option}={value!r} must be {kind} from {low:g} to {high:g}"
                )
        origins = (
            checked_origins(f"{where}: allowed_origins", allowed_origins)
            if allowed_origins is not None
            else None
        )
        spec = WebSocketAPISpec(
            path,
            route_selection,
            **values,  # type: ignore[arg-type]
            allowed_origins=origins,
        )
        known = self.registry.websocket_apis.get(path)
        if known is not None and known != spec and known != WebSocketAPISpec(path):
            raise DeclarationError(f"{where} is declared twice with different options")
        self.registry.websocket_apis[path] = spec
        self._drop_gateway()
        return spec

    def websocket(
        self, path: str, route: str = "$default", *, auth: Any = None
    ) -> Callable[[H], H]:
        """Handle one route of the WebSocket API at ``path`` with the decorated function.

        Args:
            path: The API's path (declared with defaults if ``websocket_api`` was not called).
            route: ``$connect``, ``$disconnect``, ``$default``, or a value of the JSON
                message's route selection field (``action``).
            auth: An authorizer (as for routes), checked at the handshake: only on
                ``$connect``.

        Raises:
            DeclarationError: For a bad path or route name, ``auth=`` on another route than
                ``$connect``, a message parameter on ``$connect``/``$disconnect``, a
                parameter that cannot be bound, or a second handler of the route.
        """
        if (
            not isinstance(route, str)
            or not route
            or (route.startswith("$") and route not in SPECIAL_ROUTES)
        ):
            raise DeclarationError(
                f"websocket {path!r}: route {route!r} must be $connect, $disconnect, $default "
                "or a value of the route selection field"
            )

        def register(handler: H) -> H:
            binder = bind(handler, kind="websocket")
            where = binder.handler_name
            with _named(handler):
                if path not in self.registry.websocket_apis:
                    self.websocket_api(path)
                if route in (CONNECT, DISCONNECT) and binder.body is not None:
                    raise DeclarationError(
                        f"parameter {binder.body.name!r}: {route} has no message; "
                        "take conn: Connection only"
                    )
                if auth is not None and route != CONNECT:
                    raise DeclarationError(
                        f"auth= applies at the handshake: put it on the {CONNECT} route"
                    )
                authorizer = self._authorizer(auth, where) if auth is not None else None
                for other in self.registry.websocket_routes:
                    if other.path == path and other.route == route:
                        raise DeclarationError(
                            f"route {route!r} of WebSocket API {path} is already handled by "
                            f"{other.name}"
                        )
            self.registry.websocket_routes.append(
                WebSocketRouteSpec(path, route, handler, binder, auth=authorizer)
            )
            self._drop_gateway()
            return handler

        return register

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
        from framework.runtime.endpoint_delivery import backoff, endpoint_handler

        handler = endpoint_handler(topic, endpoint)
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
                spec = replace(spec, carries_mail=True)
                binder = bind(handler, kind="email")
            self.registry.add_consumer(ConsumerSpec(spec, handler, binder, kind="email"))
            self.registry.email_rules.append(
                EmailRule(tuple(recipients), spec, stop=stop, actions=actions)
            )
            return handler

        return register

    # --- running -------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        """The runtime the app runs on now.

        Raises:
            AppNotRunningError: If the app is not running.
        """
        return self.events.current()

    @property
    def connections(self) -> ConnectionManager:
        """Push to, close and describe WebSocket connections, wherever they are held.

        ``await app.connections.send(connection_id, body)``, ``close(connection_id)`` and
        ``info(connection_id)`` work from any handler in any process on the same backend
        (see ``framework.runtime.connections``).

        Raises:
            AppNotRunningError: If the app is not running.
        """
        return self.events.current().connections

    def run(
        self,
        backend: str | Any = "memory://",
        *,
        workers: bool = True,
        declare: bool = True,
        grace: float = DEFAULT_GRACE,
    ) -> Runtime:
        """Return a runtime for ``async with``: the app on ``backend`` (a URL or a backend).

        Args:
            backend: A backend URL, or a backend instance.
            workers: Run the queue, topic and mail workers.
            declare: Create what the app declares; with False, check that it exists.
            grace: Seconds handlers in flight get to finish on stop (default 30).
        """
        from framework.backends import from_url

        instance = from_url(backend) if isinstance(backend, str) else backend
        return Runtime(
            self.registry,
            instance,
            events=self.events,
            app=self,
            workers=workers,
            declare=declare,
            grace=grace,
        )

    @property
    def asgi(self) -> ASGIApp:
        """The HTTP gateway as an ASGI application, for any ASGI server."""
        return self.gateway()

    def gateway(self, *, clock: Callable[[], float] | None = None) -> Gateway:
        """Return the app's gateway, built now from the registry if it was not yet.

        Args:
            clock: Wall-clock seconds for throttles, caches and quotas (tests pass their
                own); a gateway with its own clock is built anew and not kept.
        """
        from framework.gateway import build

        if clock is not None:
            return build(self.registry, self.events, clock=clock)
        if self._gateway is None:
            self._gateway = build(self.registry, self.events)
        return self._gateway

    async def send(self, queue: str, body: object, **options: Unpack[SendOptions]) -> str:
        """Send ``body`` to ``queue``; return the message id.

        Args:
            queue: A declared queue.
            body: A pydantic model, a dict or list (JSON), str or bytes.
            **options: ``attributes`` (str, int, float, bool; at most 10), ``delay``
                (seconds, 0-900, before the message becomes visible), ``group_id`` (the
                FIFO message group, required on FIFO queues) and ``deduplication_id`` (or
                use content-based deduplication).

        Raises:
            UnknownQueueError: If the queue is not declared.
            MessageTooLargeError: If body and attributes exceed the queue's limit.
            AppNotRunningError: If the app is not running.
        """
        return await self.events.current().send(queue, body, **options)

    async def send_batch(
        self, queue: str, bodies: Iterable[object], **options: Unpack[SendOptions]
    ) -> list[str]:
        """Send every body of ``bodies`` to ``queue``, in order; return their message ids.

        The same as ``send`` for each body, with the same options for all of them, the same
        checks and errors, at a lower cost per message: every body is encoded and checked
        before any is sent (one bad body sends none), and the backend stores them in one step
        where it can (one transaction on SQLite, ``SendMessageBatch`` requests of 10 on SQS,
        confirms in flight together on RabbitMQ).

        Args:
            queue: A declared queue.
            bodies: Pydantic models, dicts or lists (JSON), str or bytes.
            **options: As for ``send``, applied to every message; a ``deduplication_id``
                is refused for more than one body (the rest would be dropped as duplicates).

        Returns:
            The message ids, in the order of ``bodies`` (on a FIFO queue, a duplicate's
            place holds the first message's id, as ``send`` returns it).

        Raises:
            UnknownQueueError: If the queue is not declared.
            MessageTooLargeError: If a body and the attributes exceed the queue's limit (the
                error says which body).
            InvalidMessageError: For bad options, as ``send``.
            AppNotRunningError: If the app is not running.
        """
        return await self.events.current().send_batch(queue, bodies, **options)

    async def publish(self, topic: str, body: object, **options: Unpack[PublishOptions]) -> str:
        """Publish ``body`` to every matching subscription of ``topic``; return the message id.

        Args:
            topic: A declared topic.
            body: A pydantic model, a dict or list (JSON), str or bytes.
            **options: ``attributes``, ``group_id`` and ``deduplication_id``, as for ``send``.

        Raises:
            UnknownTopicError: If the topic is not declared.
            MessageTooLargeError: If body and attributes exceed 256 KiB.
        """
        return await self.events.current().publish(topic, body, **options)

    async def redrive(self, dlq: str, to: str | None = None, limit: int | None = None) -> int:
        """Move dead letters from ``dlq`` back to their source queue (or ``to``).

        Returns:
            How many messages were moved.
        """
        return await self.runtime.redrive(dlq, to=to, limit=limit)

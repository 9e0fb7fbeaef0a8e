"""The gateway: an ASGI application serving an app's routes and the admin API.

It is one callable, not a middleware stack: it gives the request its id, finds the endpoint,
and turns whatever goes wrong into a JSON error response. Everything else was decided when it
was built.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from framework.exceptions import DeclarationError
from framework.gateway.admin import ADMIN_PREFIX, AdminTarget, admin_routes
from framework.gateway.admin_access import AdminAccess
from framework.gateway.auth import guarded
from framework.gateway.cache import cached
from framework.gateway.cors import CORSPolicy
from framework.gateway.dashboard import Dashboard
from framework.gateway.endpoints import route_endpoint
from framework.gateway.errors import (
    ClientDisconnectedError,
    HTTPError,
    ResponseAbortedError,
    backend_error,
)
from framework.gateway.inputs import header, request_id, route_path
from framework.gateway.metrics import METRICS_PATH, Metrics
from framework.gateway.openapi import DOCS_PATH, OPENAPI_PATH, OpenAPI
from framework.gateway.origins import OriginPolicy, allowed_origins
from framework.gateway.proxies import TrustedProxies
from framework.gateway.responses import send_error, send_json
from framework.gateway.routing import Endpoint, RouteTable
from framework.gateway.sockets import SocketAPI, deny
from framework.gateway.throttle import throttled
from framework.runtime.events import Events

if TYPE_CHECKING:
    from framework.registry import GatewayOptions, Registry, RouteSpec
    from framework.runtime import Runtime

__all__ = ["Gateway", "build"]

log = logging.getLogger("framework.gateway")


class Gateway:
    """The HTTP gateway of an app, an ASGI application any ASGI server can serve.

    Every response carries ``X-Request-ID``: the request's own when it is a sane token (1-128
    characters of ``[A-Za-z0-9._-]``), else a new uuid4 hex. A handler taking
    ``request: Request`` finds it in ``request.state.request_id``.

    Errors are JSON ``{"detail": ...}``: 404 and 405 (with ``Allow``), 413 for a body over
    ``max_body_size`` bytes (default 1 MiB), 415 for a body that is not JSON, 422 with field
    errors for invalid input, 503 with ``Retry-After`` when a handler meets an unreachable
    backend (``BackendUnavailableError``), 413 when the backend cannot carry a message
    (``MessageTooLargeError``), and 500 ``{"detail": "internal server error", "request_id":
    ...}`` for any other exception a handler raises, framework errors included (an unknown
    queue is a bug in the server, not in the request). A handler
    may raise starlette's ``HTTPException`` to answer with its status and detail.

    Each route is chained, when the gateway is built, from what it declares: its authorizer
    (``auth=``: 401, 403, and 429 over a usage plan), its throttles (``throttle=``: 429 with
    ``Retry-After``), its cache (``cache=``), then the handler; every route is measured for
    ``/metrics`` unless the app sets ``metrics = False``. ``/openapi.json`` and its page
    ``/docs`` are served unless the app sets ``openapi = False``; an app route at any of these
    three paths replaces the built-in one. The dashboard at ``/_framework/dashboard`` is served
    unless the app sets ``dashboard = False``.

    WebSocket handshakes at an ``app.websocket_api`` path are served by its ``SocketAPI``
    (``sockets.py``), a browser's only from a page of an allowed origin (``origins.py``); at
    any other path they are refused with 404.

    Before routing, the client's address is read from ``X-Forwarded-For`` when the socket peer
    is one of the app's ``trusted_proxies`` (never otherwise), and a CORS preflight is answered
    when the app has ``cors=``; CORS headers are then added to every answer.

    Built from the registry alone (its routes in their checked forms, its gateway options)
    and the events hub, which tells it the running runtime and the settled deliveries: it
    never reads the ``App``. ``close`` unsubscribes it from the hub.

    Args:
        registry: The app's description: routes and gateway options.
        events: The app's events hub.
        clock: Wall-clock seconds, for throttles, caches and quotas (tests pass their own).
    """

    def __init__(
        self,
        registry: Registry,
        events: Events[Runtime],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        options = registry.gateway
        self.registry = registry
        self.clock = clock
        self.max_body_size = options.max_body_size
        self.cors = CORSPolicy(options.cors) if options.cors is not None else None
        self.proxies = TrustedProxies(options.trusted_proxies) if options.trusted_proxies else None
        self.metrics = Metrics(events) if options.metrics else None
        self.routes = RouteTable()
        for spec in registry.routes:
            endpoint = self._pipeline(spec)
            # HEAD first: adding GET would otherwise claim HEAD before an explicit HEAD.
            for method in sorted(spec.methods, key=lambda m: m != "HEAD"):
                served = endpoint
                if self.metrics is not None:
                    version = spec.version or ""
                    served = self.metrics.instrument(endpoint, spec.full_path, method, version)
                self.routes.add(spec.full_path, (method,), served)
        # The app's own routes at these paths win: adding ours would refuse to build.
        taken = {spec.full_path for spec in registry.routes}
        built_in: list[tuple[str, Endpoint]] = []
        if self.metrics is not None:
            built_in.append((METRICS_PATH, _metrics_endpoint(options, self.metrics)))
        if options.openapi:
            openapi = OpenAPI(registry)
            built_in += [(OPENAPI_PATH, openapi.document), (DOCS_PATH, openapi.page)]
        for path, endpoint in built_in:
            if path not in taken:
                self.routes.add(path, ("GET",), endpoint)
        self.dashboard = Dashboard(registry, events, self.metrics) if options.dashboard else None
        state = self.dashboard.state_operation if self.dashboard is not None else None
        target = AdminTarget(registry, events)
        for path, methods, endpoint in admin_routes(target, self.max_body_size, state):
            self.routes.add(path, methods, endpoint)
        for path, endpoint in self.dashboard.routes() if self.dashboard is not None else ():
            self.routes.add(path, ("GET",), endpoint)
        sockets = self.metrics.sockets if self.metrics is not None else None
        self.sockets = {
            path: SocketAPI(
                api,
                [r for r in registry.websocket_routes if r.path == path],
                events,
                sockets,
                clock,
                OriginPolicy(allowed_origins(api, options.cors)),
            )
            for path, api in registry.websocket_apis.items()
        }

    def close(self) -> None:
        """Stop observing the app's events (the gateway is being replaced)."""
        if self.metrics is not None:
            self.metrics.close()
        if self.dashboard is not None:
            self.dashboard.close()

    def _pipeline(self, spec: RouteSpec) -> Endpoint:
        """Chain what the route declares, outermost first: authorizer, throttles, cache, handler.

        Only declared stages are chained, so a route without them pays nothing for them. The
        forms were checked when the route was declared (``App.route``).
        """
        authorizer = spec.auth
        endpoint = route_endpoint(spec, self.max_body_size, authorized=authorizer is not None)
        if spec.cache is not None:
            settings = spec.cache
            metrics = self.metrics
            counted = (
                metrics.cache_counter(spec.full_path, spec.version or "")
                if metrics is not None
                else _uncounted
            )
            endpoint = cached(endpoint, settings, self.clock, counted)
        if spec.throttle is not None:
            endpoint = throttled(endpoint, spec.throttle, self.clock)
        if authorizer is not None:
            endpoint = guarded(endpoint, authorizer, self.clock)
        return endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: an HTTP request, a WebSocket, or the lifespan protocol."""
        if scope["type"] != "http":
            await self._other(scope, receive, send)
            return
        rid = request_id(scope["headers"])
        if self.proxies is not None:
            self.proxies.resolve(scope)
        # The app's CORS policy is for its own routes: the admin API never sends CORS
        # headers, so no other origin's page can read a queue through a browser.
        if self.cors is not None and not _is_admin(scope):
            origin = header(scope, b"origin")
            if self.cors.is_preflight(scope, origin):
                await self.cors.preflight(scope, send, origin or b"", rid)
                return
            send = self.cors.wrap(origin, send)
        try:
            endpoint, scope["path_params"] = self.routes.match(scope["method"], route_path(scope))
        except HTTPError as exc:
            if self.metrics is not None:
                self.metrics.unmatched(scope["method"], exc.status)
            await send_error(send, exc, rid)
            return
        try:
            await endpoint(scope, receive, send, rid)
        except HTTPError as exc:
            await send_error(send, exc, rid)
        except HTTPException as exc:
            await send_error(send, HTTPError(exc.status_code, exc.detail, exc.headers), rid)
        except ClientDisconnectedError:
            return
        except ResponseAbortedError as exc:
            _log_error(scope, rid, exc.__cause__ or exc)
            raise
        except Exception as exc:
            answer = backend_error(exc)
            if answer is not None:
                _log_backend_error(scope, rid, exc, answer.status)
                await send_error(send, answer, rid)
                return
            _log_error(scope, rid, exc)
            await send_json(send, 500, {"detail": "internal server error", "request_id": rid}, rid)

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # The app's runtime is started by `framework run` or TestApp, not by the server.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "websocket":
            api = self.sockets.get(route_path(scope))
            if api is None:
                if (await receive())["type"] == "websocket.connect":
                    await deny(scope, send, 404, "no WebSocket API at this path")
                return
            if self.proxies is not None:
                self.proxies.resolve(scope)
            await api(scope, receive, send)


def build(
    registry: Registry, events: Events[Runtime], *, clock: Callable[[], float] = time.time
) -> Gateway:
    """Return the gateway for an app: its routes, ``/metrics``, then the admin API.

    Args:
        registry: The app's description.
        events: The app's events hub.
        clock: Wall-clock seconds, for throttles, caches and quotas (tests pass their own).
    """
    return Gateway(registry, events, clock=clock)


def _is_admin(scope: Scope) -> bool:
    path = route_path(scope)
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def _metrics_endpoint(options: GatewayOptions, metrics: Metrics) -> Endpoint:
    """``/metrics``, behind the admin token when the app sets ``protect_metrics``."""
    if not options.protect_metrics:
        return metrics.endpoint
    if not options.admin_token:
        raise DeclarationError(
            "protect_metrics = True needs an admin token: App(admin_token=...) or "
            "FRAMEWORK_ADMIN_TOKEN"
        )
    access = AdminAccess(options.admin_token)
    serve = metrics.endpoint

    async def protected(scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        access.check_token(header(scope, b"authorization"))
        await serve(scope, receive, send, request_id)

    return protected


def _uncounted(hit: bool) -> None:
    """Count nothing: the app has metrics off."""


def _log_backend_error(scope: Scope, rid: str, exc: BaseException, status: int) -> None:
    """A 503 or 413 from the backend: a warning with the reason, no traceback."""
    log.warning(
        "http.backend_error",
        extra={
            "fields": {
                "request_id": rid,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "error": type(exc).__name__,
                "reason": str(exc),
            }
        },
    )


def _log_error(scope: Scope, rid: str, exc: BaseException) -> None:
    log.error(
        "http.error",
        exc_info=exc,
        extra={
            "fields": {
                "request_id": rid,
                "method": scope["method"],
                "path": scope["path"],
                "client": (scope.get("client") or ("",))[0],
                "error": type(exc).__name__,
            }
        },
    )

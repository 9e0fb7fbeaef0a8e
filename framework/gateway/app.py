"""The gateway: an ASGI application serving an App's routes and the admin API.

It is one callable, not a middleware stack: it gives the request its id, finds the endpoint,
and turns whatever goes wrong into a JSON error response. Everything else was decided when it
was built.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from framework.exceptions import DeclarationError
from framework.gateway.admin import ADMIN_PREFIX, admin_routes
from framework.gateway.endpoints import route_endpoint
from framework.gateway.errors import ClientDisconnectedError, HTTPError, ResponseAbortedError
from framework.gateway.inputs import request_id, route_path
from framework.gateway.responses import send_error, send_json
from framework.gateway.routing import RouteTable

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["Gateway", "build"]

log = logging.getLogger("framework.gateway")


class Gateway:
    """The HTTP gateway of ``app``, an ASGI application any ASGI server can serve.

    Every response carries ``X-Request-ID``: the request's own when it is a sane token (1-128
    characters of ``[A-Za-z0-9._-]``), else a new uuid4 hex. A handler taking
    ``request: Request`` finds it in ``request.state.request_id``.

    Errors are JSON ``{"detail": ...}``: 404 and 405 (with ``Allow``), 413 for a body over
    ``app.max_body_size`` bytes (default 1 MiB), 415 for a body that is not JSON, 422 with field
    errors for invalid input, and 500 ``{"detail": "internal server error", "request_id": ...}``
    for any exception a handler raises, framework errors included (an unknown queue, or a
    message that ``app.send`` refuses, is a bug in the server, not in the request). A handler
    may raise starlette's ``HTTPException`` to answer with its status and detail.

    Args:
        app: The app whose routes to serve.

    Raises:
        DeclarationError: If a route cannot be served: a path under ``/_framework``, a
            parameter a route cannot give, or an option this gateway does not implement yet.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.max_body_size = _max_body_size(app)
        self.routes = RouteTable()
        for spec in app.registry.routes:
            where = spec.binder.handler_name
            if spec.full_path == ADMIN_PREFIX or spec.full_path.startswith(ADMIN_PREFIX + "/"):
                raise DeclarationError(f"{where}: {spec.full_path} is reserved for the admin API")
            if spec.auth is not None:
                # Serving a route its author believes protected, unprotected, would be worse
                # than not serving it.
                raise DeclarationError(
                    f"{where}: auth= is not supported by this gateway yet (authorizers come "
                    "in a later release); remove it rather than serve the route unprotected"
                )
            for option in ("throttle", "cache"):
                if getattr(spec, option) is not None:
                    log.warning(
                        "gateway.option_ignored",
                        extra={"fields": {"route": spec.full_path, "option": option}},
                    )
            self.routes.add(spec.full_path, spec.methods, route_endpoint(spec, self.max_body_size))
        for path, methods, endpoint in admin_routes(app, self.max_body_size):
            self.routes.add(path, methods, endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: an HTTP request, or the lifespan protocol."""
        if scope["type"] != "http":
            await self._other(scope, receive, send)
            return
        rid = request_id(scope["headers"])
        try:
            endpoint, scope["path_params"] = self.routes.match(scope["method"], route_path(scope))
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
            await send({"type": "websocket.close", "code": 1000})


def build(app: App) -> Gateway:
    """Return the gateway for ``app``: its routes, then the admin API under ``/_framework/``.

    Raises:
        DeclarationError: If a route cannot be served (see ``Gateway``).
    """
    return Gateway(app)


def _max_body_size(app: App) -> int:
    size = app.max_body_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise DeclarationError(f"app.max_body_size must be a number of bytes, not {size!r}")
    return size


def _log_error(scope: Scope, rid: str, exc: BaseException) -> None:
    log.error(
        "http.error",
        exc_info=exc,
        extra={
            "fields": {
                "request_id": rid,
                "method": scope["method"],
                "path": scope["path"],
                "error": type(exc).__name__,
            }
        },
    )

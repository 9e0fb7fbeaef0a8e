"""Build the gateway's starlette application from an App's routes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from framework.gateway.admin import admin_routes
from framework.gateway.routing import endpoint

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["build"]

log = logging.getLogger("framework.gateway")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("http.error", exc_info=exc, extra={"fields": {"path": request.url.path}})
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def build(app: App) -> Starlette:
    """Return the gateway for ``app``: its routes, then ``/_framework/`` for operations."""
    routes: list[BaseRoute] = [
        Route(spec.full_path, endpoint(spec), methods=list(spec.methods), name=spec.name)
        for spec in app.registry.routes
    ]
    routes.append(Mount("/_framework", routes=admin_routes(app)))
    return Starlette(routes=routes, exception_handlers={Exception: _server_error})

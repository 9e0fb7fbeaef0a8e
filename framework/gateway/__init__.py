"""The HTTP gateway: an ASGI application built from the app's RouteSpecs, plus the admin API."""

from framework.gateway.app import Gateway, build

__all__ = ["Gateway", "build"]

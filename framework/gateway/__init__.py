"""The HTTP gateway: a starlette app built from the app's RouteSpecs, plus the admin API."""

from framework.gateway.app import build

__all__ = ["build"]

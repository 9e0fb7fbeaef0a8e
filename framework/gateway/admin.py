"""The admin API under ``/_framework/``: how the CLI reaches a running app's backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["admin_routes"]


def admin_routes(app: App) -> list[BaseRoute]:
    """Return the admin routes for ``app``."""
    return []

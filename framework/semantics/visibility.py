"""Visibility: what it means for a handler to outlive its message's visibility timeout."""

from __future__ import annotations

__all__ = ["VisibilityTimeoutError", "expired"]


class VisibilityTimeoutError(TimeoutError):
    """The handler was still running when the message's visibility timeout ran out."""


def expired(timeout: float) -> VisibilityTimeoutError:
    """Return the error recorded for a handler cancelled at a ``timeout``-second deadline."""
    return VisibilityTimeoutError(
        f"handler did not finish within the visibility timeout ({timeout:g}s); "
        "extend it with ctx.extend_visibility"
    )

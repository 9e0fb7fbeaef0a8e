"""``framework.aws.entry.handler``: the Lambda handler of the app ``FRAMEWORK_APP`` names.

For apps whose module has no ``handler = lambda_handler(app)`` of its own: the template sets
``Handler: framework.aws.entry.handler`` and ``FRAMEWORK_APP=module:attribute``, and the app
is imported on the first invocation (the cold start), once per execution environment.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from framework.aws.handler import LambdaHandler, lambda_handler
from framework.exceptions import ConfigError

__all__ = ["handler"]

_handler: LambdaHandler | None = None


def _load() -> LambdaHandler:
    target = os.environ.get("FRAMEWORK_APP", "")
    module_name, _, attribute = target.partition(":")
    attribute = attribute or "app"
    if not module_name:
        raise ConfigError(
            f"FRAMEWORK_APP={target!r} must name the app as module:attribute (examples.shop:app)"
        )
    app = getattr(importlib.import_module(module_name), attribute, None)
    if app is None:
        raise ConfigError(f"FRAMEWORK_APP={target!r}: module {module_name!r} has no {attribute!r}")
    return lambda_handler(app)


def handler(event: Any, context: Any) -> Any:
    """Serve one invocation with the app of ``FRAMEWORK_APP`` (loaded on the first)."""
    global _handler
    if _handler is None:
        _handler = _load()
    return _handler(event, context)

"""``module:attribute`` to an App, with one-line errors instead of tracebacks."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from framework.app import App
from framework.exceptions import ConfigError

__all__ = ["load_app"]


def load_app(target: str) -> App:
    """Import ``module[:attribute]`` (attribute default ``app``) from the cwd and return the App.

    Raises:
        ConfigError: If the module cannot be imported or the attribute is not an App.
    """
    module_name, _, attribute = target.partition(":")
    attribute = attribute or "app"
    if not module_name:
        raise ConfigError(f"cannot load {target!r}: expected module:attribute, like shop:app")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"cannot import {module_name!r}: no module named {exc.name!r} "
                f"(run from the folder that contains it, or check the name)"
            ) from None
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    app = getattr(module, attribute, None)
    if app is None:
        raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}")
    if not isinstance(app, App):
        raise ConfigError(f"{target} is a {type(app).__name__}, not a framework.App")
    return app

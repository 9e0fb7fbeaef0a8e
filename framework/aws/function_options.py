"""From an app and its ``module:attribute`` to the options of its Lambda functions."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from framework.aws.handler import LambdaHandler
from framework.aws.sam import LambdaOptions

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["ENTRY", "handler_setting", "options_for"]

ENTRY = "framework.aws.entry.handler"


def handler_setting(app: App, target: str) -> tuple[str, dict[str, str]]:
    """Return the functions' handler setting and the environment it needs.

    ``MODULE.NAME`` when the app's module holds ``NAME = lambda_handler(app)``; otherwise
    the framework's own entry point, told which app to load by ``FRAMEWORK_APP``.
    """
    module_name, _, attribute = target.partition(":")
    module = sys.modules.get(module_name)
    for name, value in sorted(vars(module).items()) if module is not None else ():
        if isinstance(value, LambdaHandler) and value.app is app:
            return f"{module_name}.{name}", {}
    return ENTRY, {"FRAMEWORK_APP": f"{module_name}:{attribute or 'app'}"}


def options_for(
    app: App,
    target: str,
    *,
    memory: int = 512,
    architecture: str = "x86_64",
    python_version: str = "3.11",
    code_uri: str | None = None,
) -> LambdaOptions:
    """Return how ``app``'s functions are built (``target`` is its ``module:attribute``)."""
    handler, environment = handler_setting(app, target)
    return LambdaOptions(
        app_name=app.name,
        handler=handler,
        environment=environment,
        runtime=f"python{python_version}",
        architecture=architecture,
        memory=memory,
        code_uri=code_uri or f"dist/{app.name}.zip",
        mail_sender=app.mail.sender,
        cors=app.cors is not None,
        openapi=app.openapi,
    )

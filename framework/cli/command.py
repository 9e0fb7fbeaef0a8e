"""How every one-shot CLI command runs and fails: one ``error: ...`` line, quiet client libraries.

``one_line_errors`` wraps a command so that any error becomes one line on stderr and exit
status 1, never a traceback (``FRAMEWORK_TRACEBACK=1`` prints it too), with secrets in URLs
masked; ``run_once`` runs a command's async work with client libraries' own logging silenced.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import anyio
import click

from framework.exceptions import FrameworkError
from framework.logs import configure
from framework.redact import mask_text

__all__ = ["describe", "one_line_errors", "quiet_libraries", "run_once"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def one_line_errors(command: F) -> F:
    """Turn any error into one ``error: ...`` line on stderr and exit status 1, never a
    traceback (``FRAMEWORK_TRACEBACK=1`` prints it too); URL secrets are masked in both."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("FRAMEWORK_TRACEBACK"):
                text = "".join(traceback.format_exception(exc))
                click.echo(mask_text(text.rstrip()), err=True)
            click.echo(f"error: {mask_text(describe(exc))}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def describe(exc: BaseException) -> str:
    """What to say of ``exc``: a framework error's own text, else its type and message in one
    line."""
    # A task group wraps what failed inside it: show the one error that started it.
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, FrameworkError):
        return str(exc)  # worded for this: a list of missing resources spans lines on purpose
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())  # one line, whatever the library put in its message


def run_once(work: Callable[[], Awaitable[T]]) -> T:
    """Run a one-shot command's async ``work`` to its end, with ``quiet_libraries`` around it."""
    with quiet_libraries():
        return anyio.run(work)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """For a one-shot command: the framework's warnings structured, client libraries' never.

    A client library that logs its connection failure (aiormq's "error when creating
    transport") would print a bare line through logging's last resort beside the one
    ``error:`` line that already says it. Everything is put back afterwards, so a command
    run in-process (a test's CliRunner) leaves logging as it found it.
    """
    framework = logging.getLogger("framework")
    if framework.handlers:  # configured already (``framework run``): leave it alone
        yield
        return
    saved = (framework.handlers[:], framework.level, framework.propagate)
    # The backends relay their client libraries' own output (reconnect attempts, transport
    # errors) as warnings under framework.backends: the one error line already says it.
    relays = logging.getLogger("framework.backends")
    relays_level = relays.level
    relays.setLevel(logging.ERROR)
    root = logging.getLogger()
    null = logging.NullHandler() if not root.handlers else None
    configure("warning")
    if null is not None:
        root.addHandler(null)
    try:
        yield
    finally:
        framework.handlers[:], level, framework.propagate = saved
        framework.setLevel(level)
        relays.setLevel(relays_level)
        if null is not None:
            root.removeHandler(null)

"""Routers (blueprints): a group of routes sharing a path prefix, a version and gateway options.

``app.router("/admin", version="v2", auth=...)`` returns a ``Router`` whose ``@r.route(...)``
declares routes on the app itself, as ``@app.route`` would, with the prefix put in front of the
path and the router's version, ``auth=``, ``throttle=`` and ``cache=`` used wherever the route
does not give its own. A route can opt out of the router's authorizer with ``auth=PUBLIC``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from framework.exceptions import DeclarationError

__all__ = ["PUBLIC", "Router"]

H = TypeVar("H", bound=Callable[..., Any])


class _Public:
    """The ``auth=`` of a router's route that is open although its router is not."""

    def __repr__(self) -> str:
        return "PUBLIC"


PUBLIC: Any = _Public()
"""Pass as ``auth=`` to a router's route to serve it without the router's authorizer."""


class Router:
    """Routes under one prefix and version, with shared gateway options.

    Args:
        declare: What declares a route: the app's ``route`` decorator factory.
        prefix: The path put in front of every route's (``""`` or starting with ``/``, not
            ending with one).
        version: The version of the router's routes (served under ``/VERSION/PREFIX/...``).
        auth: The authorizer of routes that give none.
        throttle: The throttles of routes that give none.
        cache: The cache of routes that give none (GET routes only).

    Raises:
        DeclarationError: For a malformed prefix.
    """

    def __init__(
        self,
        declare: Callable[..., Callable[[Any], Any]],
        prefix: str = "",
        *,
        version: str | None = None,
        auth: Any = None,
        throttle: Any = None,
        cache: Any = None,
    ) -> None:
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise DeclarationError(
                f"router prefix {prefix!r} must start with '/' and not end with one"
            )
        self._declare = declare
        self.prefix = prefix
        self.version = version
        self.auth = auth
        self.throttle = throttle
        self.cache = cache

    def __repr__(self) -> str:
        return f"<Router {self.prefix or '/'} version={self.version!r}>"

    def route(
        self,
        path: str,
        *,
        methods: Sequence[str] = ("GET",),
        status_code: int = 200,
        version: str | None = None,
        auth: Any = None,
        throttle: Any = None,
        cache: Any = None,
        name: str | None = None,
    ) -> Callable[[H], H]:
        """Serve the decorated function at the router's prefix plus ``path``.

        Takes the options of ``App.route``; those left out come from the router.

        Raises:
            DeclarationError: As ``App.route`` does.
        """
        if not path.startswith("/"):
            raise DeclarationError(f"route {path!r}: the path must start with '/'")
        chosen_auth = None if auth is PUBLIC else auth if auth is not None else self.auth
        # GET-only defaults: a router's cache does not make its POST routes fail to build.
        is_get = "GET" in (m.upper() for m in methods)
        return self._declare(
            self.prefix + path if path != "/" or not self.prefix else self.prefix,
            methods=methods,
            status_code=status_code,
            version=version if version is not None else self.version,
            auth=chosen_auth,
            throttle=throttle if throttle is not None else self.throttle,
            cache=cache if cache is not None else (self.cache if is_get else None),
            name=name,
        )

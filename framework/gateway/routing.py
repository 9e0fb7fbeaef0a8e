"""The route table: request method and path to an endpoint, or 404 and 405.

Paths without parameters are found with one dict lookup; templated paths (``/orders/{id}``)
are tried in declaration order after them, so ``/orders/new`` wins over ``/orders/{id}``
whichever was declared first. A route serving GET also serves HEAD. There are no trailing-slash
redirects: ``/orders/`` is a different path from ``/orders``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send

from framework.exceptions import DeclarationError
from framework.gateway.errors import HTTPError

__all__ = ["Endpoint", "RouteTable"]

Endpoint = Callable[[Scope, Receive, Send, str], Awaitable[None]]
"""An endpoint: ``(scope, receive, send, request_id)``; path parameters are in ``scope``."""

_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class _Template:
    __slots__ = ("convertors", "endpoints", "path", "regex")

    def __init__(self, path: str) -> None:
        try:
            self.regex, _, self.convertors = compile_path(path)
        except (AssertionError, ValueError) as exc:
            raise DeclarationError(f"route {path!r}: {exc}") from None
        self.path = path
        self.endpoints: dict[str, Endpoint] = {}

    def params(self, match: re.Match[str]) -> dict[str, Any]:
        convertors = self.convertors
        return {k: convertors[k].convert(v) for k, v in match.groupdict().items()}


class RouteTable:
    """Endpoints by path and method, matched as described in the module docstring."""

    def __init__(self) -> None:
        self._static: dict[str, dict[str, Endpoint]] = {}
        self._templates: list[_Template] = []
        self._by_path: dict[str, _Template] = {}

    def add(self, path: str, methods: Iterable[str], endpoint: Endpoint) -> None:
        """Serve ``endpoint`` for ``methods`` at ``path`` (a starlette path template).

        Raises:
            DeclarationError: If a method at that path is already served, or the template
                is malformed (unknown convertor, repeated parameter).
        """
        if "{" in path:
            template = self._by_path.get(path)
            if template is None:
                template = self._by_path[path] = _Template(path)
                self._templates.append(template)
            endpoints = template.endpoints
        else:
            endpoints = self._static.setdefault(path, {})
        wanted = [m.upper() for m in methods]
        for method in wanted:
            if method in endpoints:
                raise DeclarationError(f"{method} {path} is served twice")
            endpoints[method] = endpoint
        if "GET" in wanted and "HEAD" not in endpoints:
            endpoints["HEAD"] = endpoint

    def match(self, method: str, path: str) -> tuple[Endpoint, dict[str, Any]]:
        """Return the endpoint for ``method`` and ``path`` and the path parameters.

        Raises:
            HTTPError: 404 when no route has the path; 405, with ``Allow``, when routes
                have the path but none serves the method.
        """
        endpoints = self._static.get(path)
        if endpoints is not None:
            endpoint = endpoints.get(method)
            if endpoint is not None:
                return endpoint, {}
        for template in self._templates:
            found = template.regex.match(path)
            if found is not None:
                endpoint = template.endpoints.get(method)
                if endpoint is not None:
                    return endpoint, template.params(found)
        raise self._unmatched(method, path)

    def _unmatched(self, method: str, path: str) -> HTTPError:
        allowed = set(self._static.get(path, ()))
        for template in self._templates:
            if template.regex.match(path):
                allowed.update(template.endpoints)
        if not allowed:
            return HTTPError(404, f"no route matches {path}")
        ordered = ", ".join(sorted(allowed, key=_method_order))
        detail = f"method {method} is not allowed on {path}; allowed: {ordered}"
        return HTTPError(405, detail, {"Allow": ordered})


def _method_order(method: str) -> int:
    return _ORDER.index(method) if method in _ORDER else len(_ORDER)

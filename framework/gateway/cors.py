"""Cross-origin requests (CORS): preflights answered by the gateway, headers on every answer.

The policy follows starlette's ``CORSMiddleware``, with two differences: an allowed preflight is
answered ``204`` (no body) rather than ``200 OK``, and a refused one (``400``, as starlette
answers) carries no ``Access-Control-*`` header at all, so nothing in it can be mistaken for a
permission. Preflights are answered before routing, so they never reach an authorizer, a
throttle, a cache, a handler or the metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import Message, Scope, Send

from framework.exceptions import DeclarationError
from framework.gateway.responses import send_json

__all__ = ["CORS", "CORSPolicy", "checked_origins"]

_ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
# Fetch's CORS-safelisted request headers: always allowed, as starlette does.
_SAFELISTED = ("accept", "accept-language", "content-language", "content-type")
_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9.:\[\]_-]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PREFLIGHT_VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def _names(field: str, values: Sequence[str], pattern: re.Pattern[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise DeclarationError(f"CORS {field} must be a list of strings, not {values!r}")
    bad = [v for v in values if v != "*" and not pattern.fullmatch(v)]
    if bad:
        raise DeclarationError(f"CORS {field}: {', '.join(map(repr, bad))} is not valid")
    return tuple(values)


def checked_origins(where: str, values: Sequence[str]) -> tuple[str, ...]:
    """Return ``values`` as origins in lowercase (``"*"`` and ``"null"`` allowed as such).

    Raises:
        DeclarationError: Naming ``where``, for a single string, or a value that is not an
            origin (a path, a trailing slash, no scheme).
    """
    if (
        isinstance(values, str)
        or not isinstance(values, Iterable)
        or not all(isinstance(v, str) for v in values)
    ):
        raise DeclarationError(f"{where} must be a list of strings, not {values!r}")
    origins = tuple(values)
    bad = [o for o in origins if o not in ("*", "null") and not _ORIGIN.fullmatch(o.lower())]
    if bad:
        raise DeclarationError(
            f"{where}: {bad[0]!r} is not an origin; an origin is scheme, host and "
            "optional port, with no path or trailing slash ('https://app.example.com')"
        )
    return tuple(o.lower() for o in origins)


@dataclass(frozen=True, slots=True)
class CORS:
    """Which other origins' web pages may call the gateway: ``App(..., cors=CORS(...))``.

    Attributes:
        allow_origins: Origins allowed (``"https://shop.example.com"``: scheme, host and port
            if not the default, without a path or a trailing slash), or ``["*"]`` for any.
        allow_methods: Methods a preflight may ask for (``["*"]``: all of them).
        allow_headers: Request headers a preflight may ask for, besides the safelisted
            ``Accept``, ``Accept-Language``, ``Content-Language`` and ``Content-Type``
            (``["*"]``: any, echoed back).
        allow_credentials: Let pages send cookies and ``Authorization`` (then the allowed
            origin is echoed back even with ``"*"``, as browsers require).
        max_age: Seconds a browser may cache a preflight's answer.
        expose_headers: Response headers the page's script may read, besides the safelisted
            ones.

    Raises:
        DeclarationError: For an origin with a path or without a scheme, a header name that is
            not a token, an unknown method, a negative ``max_age``, or a single string where a
            list is expected.
    """

    allow_origins: Sequence[str] = ()
    allow_methods: Sequence[str] = ("GET",)
    allow_headers: Sequence[str] = ()
    allow_credentials: bool = False
    max_age: int = 600
    expose_headers: Sequence[str] = ()

    def __post_init__(self) -> None:
        origins = checked_origins("CORS allow_origins", self.allow_origins)
        object.__setattr__(self, "allow_origins", origins)
        methods = tuple(m.upper() for m in _names("allow_methods", self.allow_methods, _TOKEN))
        unknown = sorted(set(methods) - {*_ALL_METHODS, "*"})
        if unknown:
            raise DeclarationError(
                f"CORS allow_methods: unknown method(s) {', '.join(unknown)} "
                f"(methods: {', '.join(_ALL_METHODS)} or '*')"
            )
        object.__setattr__(self, "allow_methods", methods)
        for name in ("allow_headers", "expose_headers"):
            object.__setattr__(self, name, _names(name, getattr(self, name), _TOKEN))
        if not isinstance(self.allow_credentials, bool):
            raise DeclarationError(
                f"CORS allow_credentials must be True or False, not {self.allow_credentials!r}"
            )
        if isinstance(self.max_age, bool) or not isinstance(self.max_age, int) or self.max_age < 0:
            raise DeclarationError(
                f"CORS max_age={self.max_age!r} must be whole seconds, 0 or more"
            )


class CORSPolicy:
    """A ``CORS`` setting compiled into the headers the gateway sends.

    Args:
        cors: The app's setting.
    """

    def __init__(self, cors: CORS) -> None:
        self.any_origin = "*" in cors.allow_origins
        self.origins = frozenset(o.encode("latin-1") for o in cors.allow_origins)
        self.methods = frozenset(_ALL_METHODS if "*" in cors.allow_methods else cors.allow_methods)
        self.any_header = "*" in cors.allow_headers
        self.headers = frozenset({*_SAFELISTED, *(h.lower() for h in cors.allow_headers)})
        # With credentials a browser refuses '*': the origin is echoed, so answers vary by it.
        self.echo = not self.any_origin or cors.allow_credentials
        common: list[tuple[bytes, bytes]] = []
        if cors.allow_credentials:
            common.append((b"access-control-allow-credentials", b"true"))
        self.simple = list(common)
        if cors.expose_headers:
            self.simple.append(
                (b"access-control-expose-headers", ", ".join(cors.expose_headers).encode())
            )
        self.preflight_headers = [
            *common,
            (b"access-control-allow-methods", ", ".join(sorted(self.methods)).encode()),
            (b"access-control-max-age", str(cors.max_age).encode()),
        ]
        self.allowed_headers = ", ".join(sorted(self.headers)).encode()

    def allows(self, origin: bytes) -> bool:
        """True if a page at ``origin`` may read the gateway's answers."""
        if self.any_origin:  # echoed back with credentials, so it must be a sane origin
            return origin == b"null" or _ORIGIN.fullmatch(origin.decode("latin-1")) is not None
        return origin.lower() in self.origins

    def is_preflight(self, scope: Scope, origin: bytes | None) -> bool:
        """True for an ``OPTIONS`` request with ``Origin`` and ``Access-Control-Request-Method``."""
        if origin is None or scope["method"] != "OPTIONS":
            return False
        return any(k == b"access-control-request-method" for k, _ in scope["headers"])

    async def preflight(self, scope: Scope, send: Send, origin: bytes, request_id: str) -> None:
        """Answer a preflight: 204 with the permissions, or 400 saying what is not allowed."""
        method = requested = None
        for key, value in scope["headers"]:
            if key == b"access-control-request-method":
                method = value.decode("latin-1")
            elif key == b"access-control-request-headers":
                requested = value
        failures = []
        if not self.allows(origin):
            failures.append("origin")
        if method not in self.methods:
            failures.append("method")
        asked = [h.strip() for h in (requested or b"").decode("latin-1").lower().split(",")]
        if not self.any_header and any(h and h not in self.headers for h in asked):
            failures.append("headers")
        vary = [(b"vary", _PREFLIGHT_VARY)]
        if failures:
            detail = f"Disallowed CORS {', '.join(failures)}"
            await send_json(send, 400, {"detail": detail}, request_id, vary)
            return
        allow_headers = requested if self.any_header and requested else self.allowed_headers
        headers = [
            (b"access-control-allow-origin", origin if self.echo else b"*"),
            *self.preflight_headers,
            (b"access-control-allow-headers", allow_headers),
            *vary,
        ]
        raw = [(b"x-request-id", request_id.encode()), *headers]
        await send({"type": "http.response.start", "status": 204, "headers": raw})
        await send({"type": "http.response.body", "body": b""})

    def wrap(self, origin: bytes | None, send: Send) -> Send:
        """Return ``send`` adding the CORS headers (and ``Vary: Origin``) to the response."""
        added: list[tuple[bytes, bytes]] = []
        if origin is not None and self.allows(origin):
            added = [(b"access-control-allow-origin", origin if self.echo else b"*"), *self.simple]
        vary = self.echo
        if not added and not vary:
            return send

        async def cors_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers += added
                if vary:
                    _add_vary(headers)
                message["headers"] = headers
            await send(message)

        return cors_send


def _add_vary(headers: list[tuple[bytes, bytes]]) -> None:
    """Add ``Origin`` to the response's ``Vary``, merging with one the handler set."""
    for i, (key, value) in enumerate(headers):
        if key.lower() == b"vary":
            if value.strip() != b"*" and b"origin" not in value.lower():
                headers[i] = (key, value + b", Origin")
            return
    headers.append((b"vary", b"Origin"))

"""Which web pages may open a WebSocket: the handshake's ``Origin`` against the API's list.

A browser attaches the site's cookies to a WebSocket handshake whichever page opens it, and
a WebSocket is outside the same-origin policy (no CORS preflight, no opaque answer): without
a check, any page a user visits could connect as that user (cross-site WebSocket hijacking),
or reach a server only the user's machine or network can reach (``localhost``, an intranet).
Browsers always send ``Origin`` on a handshake, so a WebSocket API admits a handshake when:

- it has no ``Origin``: not a browser (the ``websockets`` library, a server, a script), which
  holds its own credentials and is not tricked into using someone else's;
- its ``Origin`` is the server's own: the same host and port as the handshake's ``Host``
  (the scheme aside: behind a TLS proxy the page is ``https`` and the server sees ``ws``);
- its ``Origin`` is one of the API's ``allowed_origins``
  (``app.websocket_api(path, allowed_origins=[...])``); by default the origins the app's
  ``CORS`` allows, except ``"*"``: a CORS wildcard lets pages read answers to requests sent
  without cookies, but a WebSocket handshake always carries them, so ``"*"`` must be said on
  the API itself.

Any other is refused with 403 before the authorizer and the ``$connect`` handler run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.types import Scope

from framework.gateway.inputs import header
from framework.registry import Registry, WebSocketAPISpec
from framework.websocket import CONNECT

__all__ = ["OriginPolicy", "allowed_origins", "any_origin_warnings"]

ANY = "*"


def allowed_origins(api: WebSocketAPISpec, cors: Any) -> tuple[str, ...]:
    """The origins besides the server's own that may open ``api``: its own list, or the CORS one.

    Args:
        api: The WebSocket API.
        cors: The app's ``CORS``, or None.
    """
    if api.allowed_origins is not None:
        return api.allowed_origins
    if cors is None:
        return ()
    return tuple(o for o in cors.allow_origins if o != ANY)


def any_origin_warnings(registry: Registry) -> dict[str, str]:
    """Each WebSocket API admitting every origin where that is unsafe: its path, and why.

    Without an authorizer, any page a visitor opens can connect (from the visitor's machine,
    to a server on ``localhost`` or an intranet); with one reading cookies, any page connects
    as its visitor. Credentials in a header or the query string are the page's own to send,
    so ``"*"`` with them is no risk.
    """
    warnings: dict[str, str] = {}
    cors = registry.gateway.cors
    for path, api in registry.websocket_apis.items():
        if ANY not in allowed_origins(api, cors):
            continue
        auth = next(
            (r.auth for r in registry.websocket_routes if r.path == path and r.route == CONNECT),
            None,
        )
        if auth is None:
            why = "it has no authorizer, so any web page a visitor opens can connect"
        elif str(getattr(auth, "header", "")).lower() == "cookie":
            why = "its authorizer reads cookies, so any web page connects as its visitor"
        else:
            continue
        warnings[path] = (
            f"the WebSocket API {path} admits pages of every origin (allowed_origins=['*']) and "
            f"{why}; list your pages' origins in app.websocket_api({path!r}, allowed_origins=[...])"
        )
    return warnings


def _netloc(origin: str) -> str:
    try:
        return urlsplit(origin).netloc
    except ValueError:  # "http://[evil": an unclosed IPv6 bracket
        return ""


class OriginPolicy:
    """Decides whether a handshake's page may open the API (see the module docs).

    Args:
        allowed: Origins allowed besides the server's own (lowercase), ``"*"`` for any.
    """

    def __init__(self, allowed: Sequence[str]) -> None:
        self.any = ANY in allowed
        self.allowed = frozenset(allowed)

    def refusal(self, scope: Scope) -> str | None:
        """Return the ``Origin`` of a handshake that must be refused, or None to admit it."""
        raw = header(scope, b"origin")
        if raw is None or self.any:
            return None
        origin = raw.decode("latin-1").strip().lower()
        if origin in self.allowed:
            return None
        host = header(scope, b"host")
        if host is not None and origin != "null":
            netloc = _netloc(origin)
            if netloc and netloc == host.decode("latin-1").strip().lower():
                return None
        return raw.decode("latin-1")[:200]

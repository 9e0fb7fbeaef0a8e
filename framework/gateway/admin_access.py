"""Who may call the admin API: the token, the connection's addresses, ``Host``, ``Origin``.

The admin API purges, deletes and redrives, so a request must prove it comes from an
operator, not from a web page some operator happens to have open:

- With ``app.admin_token`` set, a request needs ``Authorization: Bearer TOKEN`` (401 without,
  403 with a wrong one). A browser never attaches a bearer token by itself, so another site's
  page cannot forge such a request.
- Without a token (the default, for local development), the API answers only requests that
  reached a loopback address from a loopback client (403 otherwise, even when ``framework
  run --host 0.0.0.0`` listens everywhere), and only for a ``Host`` that is a loopback name
  (``localhost``, ``*.localhost``, ``127.0.0.1``, ``[::1]``) or one of ``app.admin_hosts``:
  a DNS-rebinding page (``attacker.example`` resolving to 127.0.0.1) sends its own name.
  Requests served in-process (``TestApp``, ``httpx.ASGITransport``) have no network address
  and skip the address and ``Host`` checks.
- Always: a request whose ``Origin`` is not the API's own origin (scheme aside, the same
  ``Host``) or one of ``app.admin_hosts`` is refused with 403, and so is one a browser marks
  ``Sec-Fetch-Site: cross-site`` or ``same-site`` (another port on localhost is same-site);
  every ``POST`` must be ``Content-Type: application/json`` (415), which an HTML form or a
  ``no-cors`` fetch cannot send.

The admin API never sends CORS headers, whatever the app's ``cors=`` allows its own routes.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import Scope

from framework.gateway.errors import HTTPError
from framework.gateway.inputs import JSON_MEDIA_TYPE, header

__all__ = ["AdminAccess", "is_loopback_host"]

_LOOPBACK_NAMES = ("localhost",)
_BROWSER_CROSS = (b"cross-site", b"same-site")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, a ``*.localhost`` name, and IPv4/IPv6 loopback addresses."""
    name = host.strip("[]").lower().rstrip(".")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _ip(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(str(value).strip("[]"))
    except ValueError:
        return None


def _host_name(netloc: str) -> str:
    """``example.com:8000`` -> ``example.com``; ``[::1]:8000`` -> ``::1``; junk -> ``""``."""
    try:
        return urlsplit(f"//{netloc}").hostname or ""
    except ValueError:  # "[evil": an unclosed IPv6 bracket
        return ""


def _origin_netloc(origin: str) -> str:
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return ""


class AdminAccess:
    """Decides, per request, whether the admin API may serve it (see the module docs).

    Args:
        token: The admin token, or None for an API open on loopback only.
        hosts: Host names (or ``host:port``) served besides loopback ones, lowercase.
    """

    def __init__(self, token: str | None, hosts: Iterable[str] = ()) -> None:
        self.token = token.encode() if token else None
        self.hosts = frozenset(h.lower() for h in hosts)

    def _allowed_host(self, netloc: str) -> bool:
        netloc = netloc.lower()
        name = _host_name(netloc)
        return is_loopback_host(name) or netloc in self.hosts or name in self.hosts

    def check(self, scope: Scope, method: str) -> None:
        """Raise the HTTPError refusing this request, or return to let it through.

        Raises:
            HTTPError: 403 for a foreign origin or host or a non-loopback connection without
                a token, 401/403 for a missing or wrong token, 415 for a POST that is not JSON.
        """
        host = (header(scope, b"host") or b"").decode("latin-1")
        self._check_origin(scope, host)
        if self.token is None:
            self._check_network(scope, host)
        else:
            self.check_token(header(scope, b"authorization"))
        if method == "POST":
            _require_json(header(scope, b"content-type"))

    def _check_origin(self, scope: Scope, host: str) -> None:
        site = header(scope, b"sec-fetch-site")
        if site is not None and site.lower() in _BROWSER_CROSS:
            raise HTTPError(403, "the admin API refuses requests from other sites' pages")
        origin = header(scope, b"origin")
        if origin is None:
            return
        netloc = _origin_netloc(origin.decode("latin-1"))
        if not netloc or (netloc != host.lower() and netloc not in self.hosts):
            raise HTTPError(
                403,
                "the admin API refuses requests from other origins' pages "
                f"(Origin {origin.decode('latin-1')!r} is not this server)",
            )

    def _check_network(self, scope: Scope, host: str) -> None:
        server, client = scope.get("server"), scope.get("client")
        local = _ip(server[0]) if server else None
        if local is None:  # served in-process or on a Unix socket: no network peer
            return
        peer = _ip(client[0]) if client else None
        if not local.is_loopback or peer is None or not peer.is_loopback:
            raise HTTPError(
                403,
                "the admin API has no token, so it answers only on loopback (127.0.0.1, ::1); "
                "set App(admin_token=...) or FRAMEWORK_ADMIN_TOKEN to reach it from elsewhere",
            )
        if not self._allowed_host(host):
            raise HTTPError(
                403,
                f"the admin API has no token and does not answer for Host {host!r} "
                "(loopback names only, or App.admin_hosts): a guard against DNS rebinding",
            )

    def check_token(self, authorization: bytes | None) -> None:
        """Let a request bearing the admin token through.

        Raises:
            HTTPError: 401 without a bearer token, 403 with a wrong one.
        """
        assert self.token is not None
        scheme, _, given = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            raise HTTPError(
                401,
                "the admin API needs `Authorization: Bearer TOKEN` (the app's admin token)",
                {"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.strip(), self.token):
            raise HTTPError(403, "the admin token is not valid")


def _require_json(value: bytes | None) -> None:
    media = (value or b"").split(b";", 1)[0].strip().lower()
    if media == b"application/json":
        return
    raise HTTPError(
        415,
        f"admin API requests must be Content-Type: {JSON_MEDIA_TYPE} "
        f"(not {media.decode('latin-1') or 'none'}); send {{}} for no options",
    )

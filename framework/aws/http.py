"""API Gateway events through the ASGI gateway: payload 1.0 (REST) and 2.0 (HTTP API, URLs).

The event becomes one ASGI HTTP request for the same ``Gateway`` that ``framework run`` serves,
so authorizers, throttles, the cache, 422 field errors and metrics behave the same; the
gateway's answer becomes the response shape API Gateway expects.

- **1.0**: the path is ``path``; headers and the query come from ``multiValueHeaders`` and
  ``multiValueQueryStringParameters`` (API Gateway decodes query values: they are encoded
  again for the ASGI query string). The response has ``headers`` for names with one value and
  ``multiValueHeaders`` for names with several (``Set-Cookie``), as API Gateway merges them.
- **2.0**: the path is ``rawPath`` (percent-decoded for ASGI's ``path``) and the query
  ``rawQueryString``, as the client sent them; repeated headers arrive joined by commas and
  cookies in ``cookies``, which go back into one ``cookie`` header. The response's
  ``Set-Cookie`` headers become ``cookies``, and other repeated headers are joined by commas.

The client's address is ``requestContext.identity.sourceIp`` (1.0) or
``requestContext.http.sourceIp`` (2.0): what API Gateway saw, so per-client throttles count
the real client. A body is base64-encoded (``isBase64Encoded: true``) unless its content type
is text (``text/*``, JSON, XML, JavaScript, form data) and it decodes as UTF-8.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlencode

from starlette.types import ASGIApp, Message, Scope

__all__ = ["is_text", "request_scope", "respond"]

_TEXT_TYPES = (
    "application/json",
    "application/javascript",
    "application/xml",
    "application/x-www-form-urlencoded",
    "application/problem+json",
    "image/svg+xml",
)


def is_text(content_type: str) -> bool:
    """True if a body of ``content_type`` can travel as text in a Lambda response."""
    media = content_type.partition(";")[0].strip().lower()
    return (
        media.startswith("text/")
        or media in _TEXT_TYPES
        or media.endswith(("+json", "+xml"))
        or media == ""
    )


def _body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if event.get("isBase64Encoded"):
        return base64.b64decode(str(body))
    return str(body).encode("utf-8")


def _v1_headers(event: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    multi = event.get("multiValueHeaders") or {}
    single = event.get("headers") or {}
    out: list[tuple[bytes, bytes]] = []
    seen: set[str] = set()
    for name, values in multi.items():
        seen.add(name.lower())
        out += [(name.lower().encode("latin-1"), str(v).encode("latin-1")) for v in values or ()]
    for name, value in single.items():
        if name.lower() not in seen and value is not None:
            out.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
    return out


def _v1_query(event: Mapping[str, Any]) -> bytes:
    multi = event.get("multiValueQueryStringParameters")
    if multi:
        pairs = [(k, v) for k, values in multi.items() for v in values or ()]
    else:
        pairs = list((event.get("queryStringParameters") or {}).items())
    return urlencode(pairs, doseq=False).encode("ascii")


def _v2_headers(event: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    out = [
        (str(name).lower().encode("latin-1"), str(value).encode("latin-1"))
        for name, value in (event.get("headers") or {}).items()
        if value is not None
    ]
    cookies = event.get("cookies")
    if cookies:
        out = [(k, v) for k, v in out if k != b"cookie"]
        out.append((b"cookie", "; ".join(str(c) for c in cookies).encode("latin-1")))
    return out


def request_scope(event: Mapping[str, Any], version: str) -> tuple[Scope, bytes]:
    """Return the ASGI HTTP scope and the body of an API Gateway event.

    Args:
        event: The event, payload ``version`` ``"1.0"`` or ``"2.0"``.
        version: Which payload format it is.
    """
    context = event.get("requestContext") or {}
    if version == "2.0":
        http = context.get("http") or {}
        method = str(http.get("method", "GET")).upper()
        raw_path = str(event.get("rawPath") or http.get("path") or "/")
        path = unquote(raw_path)
        query = str(event.get("rawQueryString") or "").encode("latin-1")
        headers = _v2_headers(event)
        client_ip = str(http.get("sourceIp") or "")
        protocol = str(http.get("protocol") or "HTTP/1.1")
    else:
        method = str(event.get("httpMethod", "GET")).upper()
        path = str(event.get("path") or "/")  # API Gateway has decoded it
        raw_path = quote(path)
        query = _v1_query(event)
        headers = _v1_headers(event)
        client_ip = str((context.get("identity") or {}).get("sourceIp") or "")
        protocol = str(context.get("protocol") or "HTTP/1.1")
    lookup = {k: v for k, v in headers}
    scheme = lookup.get(b"x-forwarded-proto", b"https").decode("latin-1").split(",")[0].strip()
    host = lookup.get(b"host", b"").decode("latin-1") or str(context.get("domainName") or "")
    port_text = lookup.get(b"x-forwarded-port", b"").decode("latin-1").split(",")[0].strip()
    port = int(port_text) if port_text.isdigit() else (443 if scheme == "https" else 80)
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": protocol.partition("/")[2] or "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path.encode("utf-8"),
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "client": (client_ip, 0) if client_ip else None,
        "server": (host.partition(":")[0] or "lambda", port),
        "extensions": {},
        "aws.event": event,
    }
    return scope, _body(event)


async def respond(app: ASGIApp, event: Mapping[str, Any], version: str) -> dict[str, Any]:
    """Run one API Gateway event through ``app``; return the response API Gateway expects.

    Args:
        app: The ASGI application (the gateway).
        event: The API Gateway event.
        version: ``"1.0"`` or ``"2.0"``.
    """
    scope, body = request_scope(event, version)
    sent = False
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers") or ()]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    await app(scope, receive, send)
    return _response(status, headers, b"".join(chunks), version)


def _response(
    status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes, version: str
) -> dict[str, Any]:
    grouped: dict[str, list[str]] = {}
    for key, value in raw_headers:
        grouped.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    content_type = (grouped.get("content-type") or [""])[0]
    encoded = bool(grouped.get("content-encoding")) or not is_text(content_type)
    text: str | None = None
    if not encoded:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            encoded = True
    out: dict[str, Any] = {
        "statusCode": status,
        "body": text if text is not None else base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": text is None,
    }
    if version == "2.0":
        cookies = grouped.pop("set-cookie", [])
        out["headers"] = {k: ",".join(v) for k, v in grouped.items()}
        out["cookies"] = cookies
    else:
        out["headers"] = {k: v[0] for k, v in grouped.items() if len(v) == 1}
        out["multiValueHeaders"] = {k: v for k, v in grouped.items() if len(v) > 1}
    return out

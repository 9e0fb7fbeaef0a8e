"""Handler results to HTTP responses, sent as raw ASGI messages with the request id attached.

A model, dict or list becomes JSON (serialised by pydantic-core, which also handles datetimes,
UUIDs, decimals and nested models); ``None`` becomes an empty response; a str becomes
``text/plain``; bytes become ``application/octet-stream``; a starlette ``Response`` is sent as is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from framework.gateway.errors import HTTPError, ResponseAbortedError

__all__ = [
    "JSON",
    "OCTETS",
    "TEXT",
    "send_bytes",
    "send_error",
    "send_json",
    "send_result",
]

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
OCTETS = b"application/octet-stream"

_JSON_TYPES = (dict, list, BaseModel)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes | None,
    request_id: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send a complete response: ``status``, headers with ``X-Request-ID``, then ``body``.

    Args:
        send: The ASGI send callable.
        status: The HTTP status code.
        body: The body; empty for 204 and 304.
        content_type: The ``Content-Type`` value, or None for no body.
        request_id: The request's id.
        headers: Extra headers as ASGI byte pairs.
    """
    raw = [(b"x-request-id", request_id.encode())]
    if content_type is not None:
        raw.append((b"content-type", content_type))
    if status != 204 and status != 304 and status >= 200:
        raw.append((b"content-length", str(len(body)).encode()))
    raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send,
    status: int,
    data: Any,
    request_id: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send ``data`` as a JSON response with ``status``."""
    await send_bytes(send, status, to_json(data), JSON, request_id, headers)


async def send_error(send: Send, error: HTTPError, request_id: str) -> None:
    """Send ``error`` as ``{"detail": ...}`` with its status and headers (no body for 204, 304)."""
    if error.status in (204, 304):
        await send_bytes(send, error.status, b"", None, request_id, error.raw_headers())
        return
    await send_json(send, error.status, {"detail": error.detail}, request_id, error.raw_headers())


async def send_result(
    scope: Scope, receive: Receive, send: Send, result: Any, status: int, request_id: str
) -> None:
    """Send a handler's return value as the response.

    Args:
        scope: The ASGI scope.
        receive: The ASGI receive callable.
        send: The ASGI send callable.
        result: What the handler returned.
        status: The route's status code; ``None`` with 200 becomes 204 No Content.
        request_id: The request's id.

    Raises:
        ResponseAbortedError: If a returned ``Response`` failed after it started sending.
    """
    if isinstance(result, _JSON_TYPES):
        await send_bytes(send, status, to_json(result), JSON, request_id)
    elif result is None:
        await send_bytes(send, 204 if status == 200 else status, b"", None, request_id)
    elif isinstance(result, str):
        await send_bytes(send, status, result.encode(), TEXT, request_id)
    elif isinstance(result, Response):
        await _send_response(scope, receive, send, result, request_id)
    elif isinstance(result, bytes | bytearray | memoryview):
        await send_bytes(send, status, bytes(result), OCTETS, request_id)
    else:
        await send_bytes(send, status, to_json(result), JSON, request_id)


async def _send_response(
    scope: Scope, receive: Receive, send: Send, response: Response, request_id: str
) -> None:
    id_header = (b"x-request-id", request_id.encode())
    started = False

    async def send_with_id(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
            headers = list(message.get("headers", ()))  # a copy: the response may be sent again
            if all(key != b"x-request-id" for key, _ in headers):  # the handler's own id wins
                headers.append(id_header)
            message = {**message, "headers": headers}
        await send(message)

    try:
        await response(scope, receive, send_with_id)
    except Exception as exc:
        if started:
            raise ResponseAbortedError(f"response failed after it started: {exc!r}") from exc
        raise

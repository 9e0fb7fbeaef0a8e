"""What a request carries, read straight from the ASGI scope and stream: id, headers, body.

These work on the raw ASGI messages rather than a starlette ``Request`` so that a route that
never asks for the request does not pay for building one.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Iterable

from starlette.types import Message, Receive, Scope

from framework.gateway.errors import ClientDisconnectedError, HTTPError

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "JSON_MEDIA_TYPE",
    "check_json_content_type",
    "header",
    "new_request_id",
    "read_body",
    "replay",
    "request_id",
    "route_path",
]

DEFAULT_MAX_BODY_SIZE = 1_048_576
JSON_MEDIA_TYPE = "application/json"

_SANE_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")


def _id_prefix() -> str:
    """The random first 20 hex digits of this process's request ids (the uuid4 bits set)."""
    return uuid.uuid4().hex[:20]


# A request id needs to be unique, not secret: the first 80 bits are random per process (and
# drawn again in a forked child), the last 48 count up, so an id costs no system call.
_prefix = _id_prefix()
_ids = itertools.count()


def _reseed() -> None:
    global _prefix, _ids
    _prefix, _ids = _id_prefix(), itertools.count()


os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """Return a fresh request id: a uuid4 in hex (32 characters), unique in this process."""
    return f"{_prefix}{next(_ids) & 0xFFFF_FFFF_FFFF:012x}"


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """Return the request's ``X-Request-ID`` when it is a sane token, else a new id.

    A sane token is 1 to 128 characters of ``[A-Za-z0-9._-]``, so a client cannot inject
    anything into logs or response headers through it.
    """
    for key, value in headers:
        if key == b"x-request-id":
            if _SANE_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return new_request_id()


def header(scope: Scope, name: bytes) -> bytes | None:
    """Return the first value of header ``name`` (lowercase bytes), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]  # ASGI headers are bytes pairs
    return None


def route_path(scope: Scope) -> str:
    """Return the request's path below the app's ``root_path`` (where it is mounted)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return "/"
    return path[len(root) :] if path[len(root)] == "/" else path


def check_json_content_type(value: bytes | None) -> None:
    """Accept a JSON media type (``application/json``, ``application/*+json``) or none at all.

    Raises:
        HTTPError: 415 for any other media type, such as a form or plain text.
    """
    if value is None:
        return
    media = value.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    ):
        return
    raise HTTPError(
        415,
        f"the request body must be JSON (Content-Type: {JSON_MEDIA_TYPE}), "
        f"not {media.decode('latin-1') or 'empty'}",
    )


async def read_body(receive: Receive, limit: int, content_length: bytes | None) -> bytes:
    """Read the request body from the ASGI stream, refusing it once it passes ``limit`` bytes.

    The body is read chunk by chunk, so a client announcing or sending a huge body is refused
    after at most ``limit`` bytes are held, never after buffering it all.

    Args:
        receive: The ASGI receive callable.
        limit: The most bytes accepted.
        content_length: The ``Content-Length`` header, if sent, to refuse early.

    Returns:
        The body.

    Raises:
        HTTPError: 413 when the body is (or is announced to be) larger than ``limit``.
        ClientDisconnectedError: If the client went away first.
    """
    if (
        content_length is not None
        and content_length.isascii()
        and content_length.isdigit()
        and int(content_length) > limit
    ):
        raise _too_large(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnectedError
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(limit: int) -> HTTPError:
    return HTTPError(413, f"the request body is larger than the limit of {limit} bytes")


def replay(body: bytes, receive: Receive) -> Receive:
    """Return a receive callable that yields the already-read ``body``, then defers to ``receive``.

    A handler taking ``request: Request`` alongside a validated body can still call
    ``await request.body()``.
    """
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed

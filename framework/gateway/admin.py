"""The admin API under ``/_framework/``: how ``framework ... --server URL`` reaches a running app.

The CLI and the dashboard are written against exactly this contract:

| request | response |
| --- | --- |
| ``GET /_framework/health`` | ``{"status": "ok", "app": NAME}`` |
| ``GET /_framework/queues`` | ``{"queues": [QueueStats.as_dict(), ...]}``, sorted by name |
| ``POST /_framework/queues/{name}/messages`` | 201 ``{"message_id": ...}`` (or ``"message_ids"``) |
| ``GET /_framework/queues/{name}/messages?limit=N`` | ``{"messages": [MESSAGE, ...]}`` (peek) |
| ``POST /_framework/queues/{name}/messages/delete`` | ``{"deleted": N, "not_found": [ID, ...]}`` |
| ``POST /_framework/topics/{name}/messages`` | 201 ``{"message_id": ...}`` |
| ``POST /_framework/queues/{name}/redrive`` | ``{"moved": N}`` (``"not_found"`` too, by ids) |
| ``POST /_framework/queues/{name}/purge`` | ``{"purged": N}`` |
| ``GET /_framework/routes`` | ``{"routes": [ROUTE, ...], "websocket_routes": [WS_ROUTE, ...]}`` |
| ``GET /_framework/dashboard/state?since=T`` | the dashboard's snapshot (see its module) |

A ROUTE is ``{"methods": [...], "path": FULL_PATH, "handler": "module.qualname", "version": V,
"status_code": N, "auth": AUTH}`` and a WS_ROUTE ``{"path": PATH, "route": "$connect" | VALUE,
"handler": "module.qualname", "auth": AUTH}``, each in declaration order; AUTH is null or the
authorizer's class (``"JWTAuth"``, ``"CustomAuth(module.function)"``).

Message bodies are ``{"body": <any JSON>, "attributes": {...}, "delay": 0, "group_id": null,
"deduplication_id": null}`` (no ``delay`` for topics); a JSON string is sent as text, anything
else as JSON. A queue also takes ``{"bodies": [<any JSON>, ...], ...}`` instead of ``body``: one
message per item (at most 10,000), with the same options, sent as one batch; one bad body
sends none. Redrive takes ``{"to": null, "limit": null}``, or ``{"message_ids": [ID, ...]}``
to move only those (then ``limit`` must be null), or no body. Delete takes
``{"message_ids": [ID, ...]}``. Both act on the queue's visible messages only and leave the
others where they were.

Peeking has no primitive in the Backend protocol, so ``GET .../messages`` receives up to
``limit`` (default 10, at most 100) visible messages with ``wait=0`` and releases them with
``delay=0`` at once. As with the SQS console's "poll for messages", that increments each
one's receive count. A MESSAGE is ``{"message_id", "body", "body_encoding": "text" | "base64",
"content_type", "attributes", "headers", "receive_count", "sent_at", "group_id",
"deduplication_id", "dead_letter": null | {"source_queue", "receive_count", "error_type",
"error_message", "time"}}``.

Every ``POST`` must be ``Content-Type: application/json`` (send ``{}`` for no options); who
may call the API at all (the token, loopback, ``Host`` and ``Origin``) is decided by
``framework.gateway.admin_access``. Responses are always valid JSON: a stored NaN or Infinity
(which JSON lacks) is written as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.
Request bodies holding ``NaN``, ``Infinity`` or numbers past a float's range are refused with
422: they could not be sent on unchanged.

Errors: 401 (no bearer token, with ``WWW-Authenticate: Bearer``) and 403 (a wrong one) when
``app.admin_token`` is set; 403 for a request from another origin or site, for a foreign
``Host`` or a non-loopback connection when there is no token; 404 for an unknown queue or
topic; 400 for a message the queue refuses, 413 for one too large; 415 for a POST that is not
JSON; 422 for a malformed request body or query, with the reason; 503 when the app is not
running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import to_json
from starlette.types import Receive, Scope, Send

from framework.codec import find_non_finite
from framework.exceptions import (
    AppNotRunningError,
    BackendUnavailableError,
    FrameworkError,
    InvalidMessageError,
    InvalidRedriveError,
    MessageTooLargeError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.gateway.admin_access import AdminAccess
from framework.gateway.dashboard_data import message_json
from framework.gateway.errors import (
    RETRY_AFTER,
    HTTPError,
    RequestValidationError,
    field_errors,
    non_finite,
)
from framework.gateway.inputs import header, read_body
from framework.gateway.responses import JSON, send_bytes
from framework.gateway.routing import Endpoint
from framework.outgoing import (
    PublishOptions,
    SendOptions,
    build_batch_undeclared,
    build_undeclared,
    options_of,
)
from framework.registry import DEFAULT_MESSAGE_SIZE, Registry
from framework.runtime import operations
from framework.runtime.events import Events

if TYPE_CHECKING:
    from framework.runtime import Runtime

__all__ = ["ADMIN_PREFIX", "AdminTarget", "admin_routes"]

ADMIN_PREFIX = "/_framework"

# Checked in order: MessageTooLargeError is an InvalidMessageError.
_STATUS: tuple[tuple[type[FrameworkError], int], ...] = (
    (UnknownQueueError, 404),
    (UnknownTopicError, 404),
    (MessageTooLargeError, 413),
    (InvalidMessageError, 400),
    (InvalidRedriveError, 400),
    (AppNotRunningError, 503),
    (BackendUnavailableError, 503),
)


# The most bodies one ``POST .../messages`` may carry (the request's size limit applies too).
MAX_BODIES = 10_000


class TopicMessage(BaseModel):
    """The request body of ``POST /_framework/topics/{name}/messages``."""

    model_config = ConfigDict(extra="forbid")

    body: Any = Field(description="Any JSON; a string is sent as text, anything else as JSON.")
    attributes: dict[str, Any] | None = None
    group_id: str | None = None
    deduplication_id: str | None = None


class QueueMessage(TopicMessage):
    """The request body of ``POST /_framework/queues/{name}/messages``.

    ``body`` sends one message; ``bodies`` (a list) sends one message per item with the same
    options, in one batch (``App.send_batch``), and is answered with every id.
    """

    bodies: list[Any] | None = Field(
        default=None, max_length=MAX_BODIES, description="Several bodies, sent as one batch."
    )
    delay: float | None = None  # null or absent: no delay

    @model_validator(mode="before")
    @classmethod
    def _body_or_bodies(cls, data: Any) -> Any:
        # With ``bodies``, ``body`` is not needed (it stays required otherwise, so its absence
        # is reported at its own place); with both, which one was meant is unclear.
        if isinstance(data, dict) and data.get("bodies") is not None:
            if "body" in data:
                raise ValueError("pass body (one message) or bodies (a list), not both")
            return {**data, "body": None}
        return data


class Redrive(BaseModel):
    """The request body of ``POST /_framework/queues/{name}/redrive``."""

    model_config = ConfigDict(extra="forbid")

    to: str | None = None
    limit: int | None = Field(default=None, ge=0)
    message_ids: list[str] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _ids_or_limit(self) -> Redrive:
        if self.message_ids is not None and self.limit is not None:
            raise ValueError("pass message_ids or limit, not both")
        return self


class Selection(BaseModel):
    """The request body of ``POST /_framework/queues/{name}/messages/delete``."""

    model_config = ConfigDict(extra="forbid")

    message_ids: list[str] = Field(max_length=1000)


class _NoOptions(BaseModel):
    """The request body of ``POST /_framework/queues/{name}/purge``: ``{}`` or empty."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class AdminTarget:
    """What the admin operations act on: the app's description and its running runtime."""

    registry: Registry
    events: Events[Runtime]

    @property
    def runtime(self) -> Runtime:
        """The runtime running now.

        Raises:
            AppNotRunningError: If the app is not running (the API answers 503).
        """
        return self.events.current()


Operation = Callable[[AdminTarget, Scope, Receive, int], Awaitable[tuple[int, Any]]]
"""An admin operation: ``(target, scope, receive, max body size)`` to ``(status, JSON data)``."""

M = TypeVar("M", bound=BaseModel)


def admin_routes(
    target: AdminTarget, max_body_size: int, dashboard: Operation | None = None
) -> list[tuple[str, tuple[str, ...], Endpoint]]:
    """Return the admin API's routes as ``(path, methods, endpoint)``.

    Args:
        target: The app (and its runtime, once running) the operations act on.
        max_body_size: The largest request body accepted, in bytes.
        dashboard: The operation serving ``GET /_framework/dashboard/state``, if any.
    """
    ops: list[tuple[str, str, Operation]] = [
        ("GET", "/health", _health),
        ("GET", "/queues", _queues),
        ("POST", "/queues/{name}/messages", _send),
        ("GET", "/queues/{name}/messages", _peek),
        ("POST", "/queues/{name}/messages/delete", _delete),
        ("POST", "/topics/{name}/messages", _publish),
        ("POST", "/queues/{name}/redrive", _redrive),
        ("POST", "/queues/{name}/purge", _purge),
        ("GET", "/routes", _routes),
    ]
    if dashboard is not None:
        ops.append(("GET", "/dashboard/state", dashboard))
    options = target.registry.gateway
    access = AdminAccess(options.admin_token, options.admin_hosts)
    return [
        (ADMIN_PREFIX + path, (method,), _endpoint(target, access, method, op, max_body_size))
        for method, path, op in ops
    ]


def _endpoint(
    target: AdminTarget, access: AdminAccess, method: str, operation: Operation, limit: int
) -> Endpoint:
    async def endpoint(scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        access.check(scope, method)
        try:
            status, data = await operation(target, scope, receive, limit)
        except FrameworkError as exc:
            for kind, code in _STATUS:
                if isinstance(exc, kind):
                    unavailable = isinstance(exc, BackendUnavailableError)
                    retry = {"Retry-After": str(RETRY_AFTER)} if unavailable else None
                    raise HTTPError(code, str(exc), retry) from exc
            raise
        # "strings": a NaN stored by some producer is shown as "NaN", never as invalid JSON.
        await send_bytes(send, status, to_json(data, inf_nan_mode="strings"), JSON, request_id)

    return endpoint


async def _json(scope: Scope, receive: Receive, limit: int, model: type[M], *, empty: bool) -> M:
    """Read and validate the request body as ``model``; an empty body is ``{}`` if ``empty``.

    The content type was checked by ``AdminAccess`` (JSON on every POST).
    """
    raw = await read_body(receive, limit, header(scope, b"content-length"))
    try:
        if not raw.strip() and empty:
            return model()
        value = model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(field_errors(exc, "body")) from None
    where = find_non_finite(raw, value)
    if where is not None:
        raise RequestValidationError([non_finite(where)])
    return value


# --- operations ---------------------------------------------------------------------------


async def _health(
    target: AdminTarget, scope: Scope, receive: Receive, limit: int
) -> tuple[int, Any]:
    return 200, {"status": "ok", "app": target.registry.name}


async def _queues(
    target: AdminTarget, scope: Scope, receive: Receive, limit: int
) -> tuple[int, Any]:
    stats = await operations.queue_stats(target.runtime.backend)
    return 200, {"queues": [s.as_dict() for s in stats]}


async def _send(target: AdminTarget, scope: Scope, receive: Receive, limit: int) -> tuple[int, Any]:
    runtime = target.runtime
    name: str = scope["path_params"]["name"]
    m = await _json(scope, receive, limit, QueueMessage, empty=False)
    options = options_of(m.model_dump(), SendOptions)
    if m.bodies is not None:
        if name in runtime.registry.queues:
            ids = await runtime.send_batch(name, m.bodies, **options)
        else:
            messages = build_batch_undeclared(
                "queue", name, m.bodies, DEFAULT_MESSAGE_SIZE, **options
            )
            ids = await operations.send_batch(runtime.backend, name, messages)
        return 201, {"message_ids": ids}
    if name in runtime.registry.queues:
        message_id = await runtime.send(name, m.body, **options)
    else:
        message = build_undeclared("queue", name, m.body, DEFAULT_MESSAGE_SIZE, **options)
        message_id = await runtime.backend.send(name, message)
    return 201, {"message_id": message_id}


async def _publish(
    target: AdminTarget, scope: Scope, receive: Receive, limit: int
) -> tuple[int, Any]:
    runtime = target.runtime
    name: str = scope["path_params"]["name"]
    m = await _json(scope, receive, limit, TopicMessage, empty=False)
    message_id = await runtime.publish(name, m.body, **options_of(m.model_dump(), PublishOptions))
    return 201, {"message_id": message_id}


async def _known(runtime: Runtime, *names: str | None) -> None:
    """Raise UnknownQueueError for the first of ``names`` the backend does not have."""
    known = set(await runtime.backend.queues())
    for queue in names:
        if queue is not None and queue not in known:
            raise UnknownQueueError(
                f"queue {queue!r} does not exist (queues: {', '.join(sorted(known)) or 'none'})"
            )


def _query_limit(scope: Scope, default: int, most: int) -> int:
    """Read ``?limit=N`` (1 to ``most``); 422 if it is not such a number."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("limit")
    if not values:
        return default
    raw = values[0]
    # isdigit() is true for "²" and other digits int() refuses: ASCII digits only.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise RequestValidationError(
            [
                {
                    "loc": ["query", "limit"],
                    "msg": f"limit must be a whole number from 1 to {most}",
                    "type": "value_error",
                }
            ]
        )
    return int(raw)


async def _peek(target: AdminTarget, scope: Scope, receive: Receive, limit: int) -> tuple[int, Any]:
    runtime = target.runtime
    name: str = scope["path_params"]["name"]
    count = _query_limit(scope, 10, 100)
    await _known(runtime, name)
    deliveries = await operations.peek(runtime.backend, name, limit=count)
    return 200, {"messages": [message_json(d) for d in deliveries]}


async def _delete(
    target: AdminTarget, scope: Scope, receive: Receive, limit: int
) -> tuple[int, Any]:
    runtime = target.runtime
    name: str = scope["path_params"]["name"]
    chosen = await _json(scope, receive, limit, Selection, empty=False)
    await _known(runtime, name)
    deleted, missing = await operations.delete_selected(runtime.backend, name, chosen.message_ids)
    return 200, {"deleted": deleted, "not_found": missing}


async def _redrive(
    target: AdminTarget, scope: Scope, receive: Receive, limit: int
) -> tuple[int, Any]:
    runtime = target.runtime
    name: str = scope["path_params"]["name"]
    r = await _json(scope, receive, limit, Redrive, empty=True)
    await _known(runtime, name, r.to)
    if r.message_ids is not None:
        moved, missing = await operations.redrive_selected(
            runtime.backend,
            name,
            r.message_ids,
            to=r.to,
            sources=runtime.registry.dead_letter_sources(name),
        )
        return 200, {"moved": moved, "not_found": missing}
    moved = await operations.redrive(
        runtime.backend,
        name,
        to=r.to,
        limit=r.limit,
        sources=runtime.registry.dead_letter_sources(name),
    )
    return 200, {"moved": moved}


async def _purge(
    target: AdminTarget, scope: Scope, receive: Receive, limit: int
) -> tuple[int, Any]:
    name: str = scope["path_params"]["name"]
    await _json(scope, receive, limit, _NoOptions, empty=True)
    return 200, {"purged": await operations.purge(target.runtime.backend, name)}


async def _routes(
    target: AdminTarget, scope: Scope, receive: Receive, limit: int
) -> tuple[int, Any]:
    return 200, target.registry.listing()

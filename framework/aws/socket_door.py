"""Local Lambda's WebSocket front door: API Gateway's WebSocket side, played on loopback.

``framework run APP --lambda`` serves each ``app.websocket_api`` path as API Gateway would in
front of the function: a client's handshake becomes the ``$connect`` authorizer's event (when
the route has ``auth=``) and a ``CONNECT`` event, each frame a ``MESSAGE`` event on the route
its ``route_selection`` field names (else ``$default``), and the end a ``DISCONNECT`` event.
The function's answer is sent to the client (the route response), and a refused handshake
gets the answer's status.

The front door also serves API Gateway's management API for the connections it holds, at
``/@connections/{id}`` (``POST`` sends the body, ``DELETE`` closes, ``GET`` describes), and the
function's ``app.connections`` is pointed at it, so pushes from any handler reach the local
clients; an unknown id answers 410 ``GoneException``, as API Gateway does.

Like Lambda, one execution environment runs one invocation at a time: a slow handler holds up
the events of every connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from pydantic_core import to_json
from starlette.types import Receive, Scope, Send

from framework.aws.local import LambdaContext
from framework.backends.aws.management import MAX_PAYLOAD
from framework.gateway.errors import ClientDisconnectedError, HTTPError
from framework.gateway.inputs import header, read_body
from framework.gateway.sockets import deny
from framework.registry import Registry
from framework.websocket import CONNECT, DEFAULT, DISCONNECT

__all__ = ["MANAGEMENT_PREFIX", "SocketDoor"]

MANAGEMENT_PREFIX = "/@connections/"
WEBSOCKET_TIMEOUT = 29.0  # API Gateway's integration timeout for WebSocket APIs, seconds
_STAGE = "local"
Invoke = Callable[[Mapping[str, Any], LambdaContext], Awaitable[Any]]


@dataclass
class _Client:
    """One connection the front door holds."""

    id: str
    send: Send
    source_ip: str
    user_agent: str
    connected_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.time)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


def _new_id() -> str:
    # API Gateway's ids are 12 random bytes in base64 (``Ji2CfcQvIAMCJWQ=``).
    return base64.b64encode(secrets.token_bytes(10)).decode()


class SocketDoor:
    """The WebSocket side of API Gateway for a locally run Lambda handler.

    Args:
        registry: The app's declarations (its WebSocket APIs and routes).
        invoke: Runs one event in the execution environment and returns the answer.
    """

    def __init__(self, registry: Registry, invoke: Invoke) -> None:
        self.registry = registry
        self.invoke = invoke
        self.clients: dict[str, _Client] = {}

    def serves(self, path: str) -> bool:
        """True if ``path`` is one of the app's WebSocket APIs."""
        return path in self.registry.websocket_apis

    def _context(self, kind: str, route: str, client_id: str, connected_at: float) -> Any:
        now = time.time()
        return {
            "routeKey": route,
            "eventType": kind,
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTime": datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "messageDirection": "IN",
            "stage": _STAGE,
            "connectedAt": int(connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "requestId": uuid.uuid4().hex[:16],
            "domainName": "localhost",
            "connectionId": client_id,
            "apiId": "local",
        }

    def _route(self, path: str, text: str | None) -> str:
        """The route API Gateway would select: ``$request.body.FIELD``, else ``$default``."""
        field_name = self.registry.websocket_apis[path].route_selection
        declared = {r.route for r in self.registry.websocket_routes if r.path == path}
        try:
            value = json.loads(text) if text is not None else None
        except ValueError:
            return DEFAULT
        key = value.get(field_name) if isinstance(value, dict) else None
        return key if isinstance(key, str) and key in declared - {CONNECT, DISCONNECT} else DEFAULT

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one client of an app's WebSocket API, from handshake to ``DISCONNECT``."""
        if (await receive())["type"] != "websocket.connect":
            return
        path = scope["path"]
        headers: dict[str, list[str]] = {}
        for raw_name, raw_value in scope.get("headers") or ():
            headers.setdefault(raw_name.decode("latin-1"), []).append(raw_value.decode("latin-1"))
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        client_ip = (scope.get("client") or ("127.0.0.1", 0))[0]
        agent = (headers.get("user-agent") or [""])[-1]
        connected_at = time.time()
        client_id = _new_id()
        handshake: dict[str, Any] = {
            "headers": {k: v[-1] for k, v in headers.items()},
            "multiValueHeaders": headers,
            "isBase64Encoded": False,
        }
        if query:
            handshake["queryStringParameters"] = dict(query)
            multi: dict[str, list[str]] = {}
            for k, v in query:
                multi.setdefault(k, []).append(v)
            handshake["multiValueQueryStringParameters"] = multi
        context = self._context("CONNECT", CONNECT, client_id, connected_at)
        context["identity"] = {"sourceIp": client_ip, "userAgent": agent}
        guarded = any(
            r.route == CONNECT and r.auth is not None
            for r in self.registry.websocket_routes
            if r.path == path
        )
        if guarded:
            authorizer = await self._authorize(scope, send, handshake, context)
            if authorizer is None:
                return
            context["authorizer"] = authorizer
        try:
            answer = await self.invoke(
                {**handshake, "requestContext": context}, LambdaContext(WEBSOCKET_TIMEOUT)
            )
        except Exception:
            await deny(scope, send, 500, "internal server error")
            return
        status = int((answer or {}).get("statusCode", 200))
        if not 200 <= status < 300:
            await deny(scope, send, status, _detail(answer), (answer or {}).get("headers"))
            return
        await send({"type": "websocket.accept"})
        client = _Client(client_id, send, client_ip, agent, connected_at)
        self.clients[client_id] = client
        code = 1005
        try:
            code = await self._read(path, client, receive, context.get("authorizer"))
        finally:
            self.clients.pop(client_id, None)
            client.closed.set()
            with contextlib.suppress(Exception):
                gone = self._context("DISCONNECT", DISCONNECT, client_id, connected_at)
                gone.update(disconnectStatusCode=code, disconnectReason="")
                if "authorizer" in context:
                    gone["authorizer"] = context["authorizer"]
                await self.invoke({"requestContext": gone}, LambdaContext(WEBSOCKET_TIMEOUT))

    async def _authorize(
        self, scope: Scope, send: Send, handshake: Mapping[str, Any], context: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Run the ``$connect`` authorizer; the policy's context, or None once refused."""
        event_ = {
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:local:000000000000:local/{_STAGE}/$connect",
            **handshake,
            "stageVariables": {},
            "requestContext": context,
        }
        try:
            policy = await self.invoke(event_, LambdaContext(WEBSOCKET_TIMEOUT))
        except Exception as exc:
            unauthorized = str(exc) == "Unauthorized"
            await deny(scope, send, 401 if unauthorized else 500, str(exc))
            return None
        statements = (policy.get("policyDocument") or {}).get("Statement") or [{}]
        if statements[0].get("Effect") != "Allow":
            await deny(scope, send, 403, "Forbidden")
            return None
        return {"principalId": policy.get("principalId"), **(policy.get("context") or {})}

    async def _read(self, path: str, client: _Client, receive: Receive, authorizer: Any) -> int:
        """Turn each frame into a ``MESSAGE`` event; return the close code."""
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return int(message.get("code", 1005))
            if message["type"] != "websocket.receive":
                continue
            client.last_active = time.time()
            text, data = message.get("text"), message.get("bytes")
            context = self._context(
                "MESSAGE", self._route(path, text), client.id, client.connected_at
            )
            context["messageId"] = uuid.uuid4().hex[:16]
            if authorizer is not None:
                context["authorizer"] = authorizer
            event_: dict[str, Any] = {
                "requestContext": context,
                "body": text if text is not None else base64.b64encode(data or b"").decode(),
                "isBase64Encoded": text is None,
            }
            try:
                answer = await self.invoke(event_, LambdaContext(WEBSOCKET_TIMEOUT))
            except Exception:
                answer = {"statusCode": 500, "body": to_json({"message": "Internal server error"})}
            body = (answer or {}).get("body")
            if body is None or client.closed.is_set():
                continue
            with contextlib.suppress(OSError, RuntimeError):
                if (answer or {}).get("isBase64Encoded"):
                    await client.send({"type": "websocket.send", "bytes": base64.b64decode(body)})
                else:
                    await client.send({"type": "websocket.send", "text": str(body)})

    async def management(self, scope: Scope, receive: Receive, send: Send) -> None:
        """API Gateway's management API for the connections held here."""
        path = scope["path"]
        client_id = unquote(path[path.index(MANAGEMENT_PREFIX) + len(MANAGEMENT_PREFIX) :])
        try:
            body = await read_body(receive, MAX_PAYLOAD, header(scope, b"content-length"))
        except ClientDisconnectedError:
            return
        except HTTPError:
            await _reply(
                send, 413, {"message": "Message too long"}, error="PayloadTooLargeException"
            )
            return
        client = self.clients.get(client_id)
        if client is None:
            await _reply(send, 410, {"message": None}, error="GoneException")
            return
        method = scope["method"]
        if method == "GET":
            await _reply(
                send,
                200,
                {
                    "connectedAt": _iso(client.connected_at),
                    "lastActiveAt": _iso(client.last_active),
                    "identity": {"sourceIp": client.source_ip, "userAgent": client.user_agent},
                },
            )
            return
        try:
            if method == "POST":
                try:
                    frame: dict[str, Any] = {"type": "websocket.send", "text": body.decode()}
                except UnicodeDecodeError:
                    frame = {"type": "websocket.send", "bytes": body}
                await client.send(frame)
            elif method == "DELETE":
                await client.send({"type": "websocket.close", "code": 1000})
                client.closed.set()
                self.clients.pop(client_id, None)
            else:
                await _reply(send, 405, {"message": f"{method} is not allowed"})
                return
        except (OSError, RuntimeError):
            self.clients.pop(client_id, None)
            await _reply(send, 410, {"message": None}, error="GoneException")
            return
        await _reply(send, 200, {})


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _detail(answer: Any) -> str:
    try:
        return str(json.loads(answer.get("body") or "{}").get("detail", "refused"))
    except (ValueError, AttributeError):
        return "refused"


async def _reply(send: Send, status: int, body: object, *, error: str | None = None) -> None:
    data = to_json(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if error is not None:
        headers.append((b"x-amzn-errortype", error.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})

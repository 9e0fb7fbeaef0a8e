"""API Gateway's WebSocket API events through the same route code as ``framework run``.

Deployed serverless, API Gateway holds the connections and invokes the function once per
handshake, message and disconnection (Lambda proxy integration); ``requestContext`` names the
connection (``connectionId``), the route API Gateway chose (``routeKey``), the event
(``eventType``), and the API (``apiId``, ``stage``, ``domainName``). Each event runs through
the app's ``SocketAPI`` (``framework/gateway/sockets.py``):

- ``CONNECT``: the handshake (its headers and query string) passes the API's authorizer
  (an API key or JWT in a header or the query string) and its ``$connect`` handler, exactly
  as under ``framework run``; the answer's ``statusCode`` is 200 to accept, or the refusal's
  status (``Refuse(status)``, 401/403/429 from the authorizer, 500 for a failing handler) with
  ``{"detail": ...}``, which API Gateway turns into the handshake's answer.
- ``MESSAGE``: routed by the message's ``route_selection`` field (API Gateway selects the same
  route with ``$request.body.FIELD``), validated, handled; the return value, or the
  ``{"error": ...}`` message (``validation`` with the field errors, ``unknown_route``,
  ``internal``), is the answer's ``body``, which API Gateway sends to the caller on a route
  with a route response (``framework export sam`` declares one on every message route).
- ``DISCONNECT``: the ``$disconnect`` handler, once per connection (API Gateway sends it
  best-effort, as its documentation says).
- the ``$connect`` **authorizer** event (``type: REQUEST``, ``methodArn``): the same
  authorizer, answered with an IAM policy whose context carries the principal, so every later
  event of the connection has it (``requestContext.authorizer``) and handlers see
  ``conn.principal`` on each message, not only at ``$connect``. A missing credential fails
  the invocation with ``Unauthorized`` (API Gateway's 401); a wrong one is a ``Deny`` (403).

API Gateway sends the handshake's headers and query string with ``CONNECT`` only: on later
events ``conn.headers`` and ``conn.query`` are empty. It throttles messages itself (stage and
route throttling), so the per-connection ``rate`` of ``framework run`` is not applied here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from pydantic_core import to_json

from framework.aws.http import request_scope
from framework.backends.aws.management import ManagementAPI, connection_url
from framework.exceptions import ConnectionGoneError, FrameworkError
from framework.gateway.errors import HTTPError
from framework.gateway.sockets import HandshakeRefused, SocketAPI
from framework.logs import event
from framework.principal import Principal
from framework.websocket import Connection

__all__ = ["LambdaSockets", "UnauthorizedError"]

log = logging.getLogger("framework.aws")


class UnauthorizedError(FrameworkError):
    """The ``$connect`` authorizer found no credential: API Gateway answers 401.

    API Gateway reads a Lambda authorizer's failure whose message is exactly
    ``Unauthorized`` as 401, so that is this error's message.
    """

    def __init__(self) -> None:
        super().__init__("Unauthorized")


class _EventSession:
    """One ``MESSAGE`` event as ``SocketAPI.handle`` sees a connection: what it queues is the
    function's answer, and a close it asks for goes to the management API."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.in_handler = False
        self.replies: list[tuple[str | None, bytes | None]] = []
        self.closing: tuple[int, str] | None = None

    def allow(self) -> bool:
        return True  # API Gateway throttles the stage and its routes itself

    def close(self, code: int, reason: str) -> None:
        self.closing = self.closing or (code, reason)

    def enqueue(self, text: str | None, data: bytes | None, route: str) -> None:
        if self.closing is not None:
            raise ConnectionGoneError(f"connection {self.connection.id!r} is closing")
        self.replies.append((text, data))


def _principal(context: Mapping[str, Any]) -> Principal | None:
    """The principal the ``$connect`` authorizer put in the policy's context, if any."""
    found = context.get("authorizer")
    if not isinstance(found, Mapping) or not found.get("principalId"):
        return None
    claims: Any = {}
    try:
        claims = json.loads(str(found.get("claims") or "{}"))
    except ValueError:
        claims = {}
    return Principal(
        str(found["principalId"]),
        MappingProxyType(dict(claims) if isinstance(claims, dict) else {}),
        str(found.get("scheme") or "custom"),
    )


def _connected_at(context: Mapping[str, Any]) -> datetime:
    millis = context.get("connectedAt")
    if isinstance(millis, int | float) and not isinstance(millis, bool) and millis > 0:
        return datetime.fromtimestamp(millis / 1000, UTC)
    return datetime.now(UTC)


def _body(event_: Mapping[str, Any]) -> tuple[str | None, bytes | None]:
    body = event_.get("body")
    if body is None:
        return "", None
    if event_.get("isBase64Encoded"):
        return None, base64.b64decode(str(body))
    return str(body), None


def _answer(status: int, detail: str | None = None) -> dict[str, Any]:
    if detail is None:
        return {"statusCode": status}
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": to_json({"detail": detail}).decode(),
    }


class LambdaSockets:
    """Serves WebSocket API events with the app's ``SocketAPI``s.

    Args:
        apis: The gateway's WebSocket APIs, by path.
        management: ``app.connections`` on Lambda.
        path: Which API this function serves (``FRAMEWORK_WEBSOCKET_PATH``), needed only
            when the app has several.
        region: The function's region, for the API's connection URL.
    """

    def __init__(
        self,
        apis: Mapping[str, SocketAPI],
        management: ManagementAPI,
        *,
        path: str | None,
        region: str,
    ) -> None:
        self.apis = dict(apis)
        self.management = management
        self.path = path
        self.region = region

    def _api(self) -> SocketAPI:
        if self.path is not None and self.path in self.apis:
            return self.apis[self.path]
        if self.path is None and len(self.apis) == 1:
            return next(iter(self.apis.values()))
        known = ", ".join(sorted(self.apis)) or "none"
        raise FrameworkError(
            f"a WebSocket API event, and this function cannot tell which of the app's WebSocket "
            f"APIs it is for (FRAMEWORK_WEBSOCKET_PATH={self.path!r}; APIs: {known}); set "
            "FRAMEWORK_WEBSOCKET_PATH to the API's path (framework export sam does)"
        )

    def _url(self, context: Mapping[str, Any]) -> str:
        return connection_url(
            str(context.get("apiId", "")), self.region, str(context.get("stage", ""))
        )

    def _connection(self, api: SocketAPI, event_: Mapping[str, Any]) -> Connection:
        context = event_.get("requestContext") or {}
        return Connection(
            id=str(context["connectionId"]),
            path=api.spec.path,
            principal=_principal(context),
            connected_at=_connected_at(context),
        )

    async def serve(self, event_: Mapping[str, Any]) -> dict[str, Any]:
        """Serve a ``CONNECT``, ``MESSAGE`` or ``DISCONNECT`` event; return API Gateway's answer."""
        api = self._api()
        context: Mapping[str, Any] = event_.get("requestContext") or {}
        kind = str(context.get("eventType"))
        if kind == "CONNECT":
            return await self._connect(api, event_, context)
        connection = self._connection(api, event_)
        with self.management.current(api.spec.path, self._url(context), connection):
            if kind == "DISCONNECT":
                await api.disconnected(connection)
                event(
                    log,
                    logging.INFO,
                    "websocket.disconnected",
                    api=api.spec.path,
                    connection=connection.id,
                    code=context.get("disconnectStatusCode"),
                )
                return _answer(200)
            return await self._message(api, event_, connection)

    async def _connect(
        self, api: SocketAPI, event_: Mapping[str, Any], context: Mapping[str, Any]
    ) -> dict[str, Any]:
        scope = self._scope(api, event_)
        connection_id = str(context["connectionId"])
        url = self._url(context)
        with self.management.current(api.spec.path, url):
            try:
                connection = await api.admit(
                    scope,
                    connection_id,
                    connected_at=_connected_at(context),
                    principal=_principal(context),
                )
            except HandshakeRefused as exc:
                answer = _answer(exc.status, exc.detail)
                answer["headers"].update(dict(exc.headers or {}))
                return answer
        event(log, logging.INFO, "websocket.connected", api=api.spec.path, connection=connection.id)
        return _answer(200)

    def _scope(self, api: SocketAPI, event_: Mapping[str, Any]) -> dict[str, Any]:
        scope, _ = request_scope(event_, "1.0")
        scope = dict(scope)
        scope.update(type="websocket", path=api.spec.path, raw_path=api.spec.path.encode())
        scope["scheme"] = "wss" if scope.get("scheme") == "https" else "ws"
        return scope

    async def _message(
        self, api: SocketAPI, event_: Mapping[str, Any], connection: Connection
    ) -> dict[str, Any]:
        session = _EventSession(connection)
        text, data = _body(event_)
        await api.handle(session, text, data)
        if session.closing is not None:
            with contextlib.suppress(ConnectionGoneError):
                await self.management.close(connection.id, session.closing[0])
        if not session.replies:
            return _answer(200)
        reply_text, reply_data = session.replies[-1]
        if reply_data is not None:
            return {
                "statusCode": 200,
                "body": base64.b64encode(reply_data).decode(),
                "isBase64Encoded": True,
            }
        return {"statusCode": 200, "body": reply_text}

    async def authorize(self, event_: Mapping[str, Any]) -> dict[str, Any]:
        """Answer the ``$connect`` authorizer event with an IAM policy carrying the principal.

        Raises:
            UnauthorizedError: Without a credential (API Gateway answers 401).
        """
        api = self._api()
        method_arn = str(event_.get("methodArn", ""))
        handshake = self._scope(api, event_)
        try:
            api.check_origin(handshake)
        except HandshakeRefused:
            return _policy("refused", "Deny", method_arn, None)
        if api.auth is None:
            return _policy("anonymous", "Allow", method_arn, None)
        _, _, scope = api.inputs(handshake)
        try:
            principal = await api.auth.authorize(scope, api.clock())
        except HTTPError as exc:
            api.refused(exc.status, "auth")
            if exc.status == 401:
                raise UnauthorizedError() from None
            return _policy("refused", "Deny", method_arn, None)
        return _policy(principal.id, "Allow", method_arn, principal)


def _policy(
    principal_id: str, effect: str, method_arn: str, principal: Principal | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": method_arn}
            ],
        },
    }
    if principal is not None:
        # A policy's context holds strings, numbers and booleans only: the claims travel as
        # one JSON string.
        out["context"] = {
            "claims": to_json(dict(principal.claims)).decode(),
            "scheme": principal.scheme,
        }
    return out

"""``app.connections`` on Lambda: API Gateway's management API of a WebSocket API.

Deployed serverless, API Gateway holds the clients' connections and the functions only see
events; pushing, closing and describing go through the API's connection URL
``https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`` (``PostToConnection``,
``DeleteConnection``, ``GetConnection``). A connection that is gone answers 410
(``GoneException``): ``ConnectionGoneError``.

Which URL: the ``endpoints`` given (``FRAMEWORK_WEBSOCKET_ENDPOINTS``, which
``framework export sam`` sets on every function, by API path), else the one the WebSocket
event being served names (``current``). An id does not say which API it belongs to, so with
several APIs each is asked in turn (the event's own first) until one knows the connection.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from framework.exceptions import ConfigError, ConnectionGoneError, MessageTooLargeError
from framework.websocket import Connection, encode_push

from .settings import AWSSettings
from .wire import error_code

if TYPE_CHECKING:
    from aiobotocore.session import AioSession

__all__ = ["ManagementAPI", "connection_url"]

# API Gateway's largest WebSocket message (and PostToConnection payload), bytes.
MAX_PAYLOAD = 131_072

_current: contextvars.ContextVar[tuple[str, str, Connection | None] | None] = (
    contextvars.ContextVar("framework_websocket_current", default=None)
)


def connection_url(api_id: str, region: str, stage: str) -> str:
    """The connection URL of a deployed WebSocket API's stage."""
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}"


class ManagementAPI:
    """What ``app.connections`` is on Lambda: API Gateway's management API.

    Args:
        settings: The region, credentials and emulator endpoint (an ``endpoint_url`` in
            ``settings`` replaces the URLs events name: an emulator serves every API).
        endpoints: The connection URL of each WebSocket API, by its path (these win over
            the emulator's: a local front door serves its own management API).
        sizes: The largest message of each API, by path (``max_message_size``).
        session: The aiobotocore session to make clients from (default: a new one).
    """

    def __init__(
        self,
        settings: AWSSettings,
        endpoints: Mapping[str, str],
        *,
        sizes: Mapping[str, int] | None = None,
        session: AioSession | None = None,
    ) -> None:
        self.settings = settings
        self.endpoints = dict(endpoints)
        self.sizes = dict(sizes or {})
        self._session = session
        self._clients: dict[str, Any] = {}
        self._stack = contextlib.AsyncExitStack()
        self.pushes = 0

    @contextlib.contextmanager
    def current(self, path: str, url: str, connection: Connection | None = None) -> Iterator[None]:
        """Serve one WebSocket event: its API (``path``, connection ``url``) is asked first,
        and ``info`` of its own ``connection`` needs no request."""
        token = _current.set((path, url, connection))
        try:
            yield
        finally:
            _current.reset(token)

    async def aclose(self) -> None:
        """Close the clients."""
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        self._clients.clear()
        await stack.aclose()

    def _candidates(self) -> list[tuple[str, str]]:
        """The (API path, connection URL) pairs to ask, the event's own API first."""
        current = _current.get()
        emulator = self.settings.endpoint_url
        out: list[tuple[str, str]] = []
        if current is not None:
            path, url, _ = current
            out.append((path, self.endpoints.get(path) or emulator or url))
        out += [(p, u) for p, u in self.endpoints.items() if (p, u) not in out]
        if not out and emulator:  # an emulator serves every API at its one endpoint
            out = [(path, emulator) for path in list(self.sizes)[:1] or [""]]
        if not out:
            raise ConfigError(
                "app.connections on Lambda needs the WebSocket API's connection URL: outside "
                "a WebSocket event, set FRAMEWORK_WEBSOCKET_ENDPOINTS (framework export sam "
                "sets it), e.g. https://API_ID.execute-api.REGION.amazonaws.com/STAGE"
            )
        return out

    async def _client(self, endpoint: str) -> Any:
        client = self._clients.get(endpoint)
        if client is None:
            if self._session is None:
                from aiobotocore.session import AioSession  # only when a push is made

                self._session = AioSession(profile=self.settings.profile)
            options = self.settings.client_options()
            options["endpoint_url"] = endpoint
            from aiobotocore.config import AioConfig

            config = AioConfig(
                retries={"max_attempts": self.settings.max_attempts, "mode": "standard"},
                connect_timeout=5,
                read_timeout=10,
            )
            client = await self._stack.enter_async_context(
                self._session.create_client("apigatewaymanagementapi", config=config, **options)
            )
            self._clients[endpoint] = client
        return client

    async def _call(self, operation: str, connection_id: str, **kwargs: Any) -> tuple[str, Any]:
        """Call ``operation`` on each API in turn until one knows the connection."""
        from botocore.exceptions import ClientError

        for path, url in self._candidates():
            client = await self._client(url)
            try:
                return path, await getattr(client, operation)(ConnectionId=connection_id, **kwargs)
            except ClientError as exc:
                code = error_code(exc)
                if code == "GoneException":
                    continue
                if code == "PayloadTooLargeException":
                    raise MessageTooLargeError(
                        f"API Gateway refused a push to {connection_id!r} as too large: {exc}"
                    ) from exc
                raise
        raise ConnectionGoneError(f"connection {connection_id!r} is closed (API Gateway: 410)")

    async def send(self, connection_id: str, body: object) -> None:
        """Send ``body`` to the client (``PostToConnection``): a str or bytes as it is,
        anything else as JSON.

        Raises:
            ConnectionGoneError: If the connection is closed (410).
            MessageTooLargeError: Over the API's ``max_message_size`` or API Gateway's 128 KB.
        """
        text, data = encode_push(body)
        payload = data if data is not None else (text or "").encode()
        current = _current.get()
        limit = min(
            MAX_PAYLOAD, self.sizes.get(current[0], MAX_PAYLOAD) if current else MAX_PAYLOAD
        )
        if len(payload) > limit:
            raise MessageTooLargeError(
                f"a push of {len(payload)} bytes exceeds the WebSocket API's limit of {limit} "
                "bytes (max_message_size, and API Gateway's 128 KB); send less"
            )
        await self._call("post_to_connection", connection_id, Data=payload)
        self.pushes += 1

    async def close(self, connection_id: str, code: int = 1000) -> None:
        """Disconnect the client (``DeleteConnection``; API Gateway chooses the close code).

        Raises:
            ConnectionGoneError: If it is already closed (410).
        """
        await self._call("delete_connection", connection_id)

    async def info(self, connection_id: str) -> Connection:
        """Describe the connection (``GetConnection``): id, API path, when it connected, and
        its user agent as its only header; the event being served describes its own
        connection fully.

        Raises:
            ConnectionGoneError: If it is closed (410).
        """
        current = _current.get()
        if current is not None and current[2] is not None and current[2].id == connection_id:
            return current[2]
        path, found = await self._call("get_connection", connection_id)
        connected = found.get("ConnectedAt")
        identity = found.get("Identity") or {}
        agent = identity.get("UserAgent")
        return Connection(
            id=connection_id,
            path=path,
            headers={"user-agent": str(agent)} if agent else {},
            connected_at=(
                connected.astimezone(UTC) if isinstance(connected, datetime) else datetime.now(UTC)
            ),
        )

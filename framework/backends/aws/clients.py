"""The backend's aiobotocore clients, each made on its first use, once.

Making a client costs tens of milliseconds (botocore loads and parses the service's model) and
aiobotocore's import costs more (aiohttp): on a Lambda cold start that is paid before the first
answer. So the backend makes none when it connects: an HTTP-only function that sends nothing
makes no client at all, an SQS-triggered one makes SQS's when it first settles a record on SQS,
and only an app that mails makes SES's. The long-lived ``framework run`` process makes the same
clients on its first receive or declaration, and keeps them.

``LazyClient`` stands where a client would: ``await lazy.send_message(...)`` makes the client
on the first call (one per service, however many tasks ask at once) and calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .settings import AWSSettings

__all__ = ["Clients", "LazyClient"]

MAX_WAIT = 20  # SQS's longest long poll, seconds


class Clients:
    """The aiobotocore clients of one connected backend, by service name, made when asked for.

    Args:
        settings: The region, credentials, endpoint and connection settings of every client.
    """

    def __init__(self, settings: AWSSettings) -> None:
        self.settings = settings
        self._stack: contextlib.AsyncExitStack | None = contextlib.AsyncExitStack()
        self._made: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._session: Any = None
        self._config: Any = None

    @property
    def made(self) -> tuple[str, ...]:
        """The services whose client exists, in the order they were made."""
        return tuple(self._made)

    def lazy(self, service: str) -> LazyClient:
        """A stand-in for ``service``'s client that makes it on its first call."""
        return LazyClient(self, service)

    async def get(self, service: str) -> Any:
        """Return ``service``'s client, making it if it is the first ask (once, under a lock).

        Raises:
            RuntimeError: After ``aclose``.
        """
        client = self._made.get(service)
        if client is not None:
            return client
        lock = self._locks.setdefault(service, asyncio.Lock())
        async with lock:
            client = self._made.get(service)
            if client is None:
                client = await self._make(service)
        return client

    async def _make(self, service: str) -> Any:
        stack = self._stack
        if stack is None:
            raise RuntimeError("AWSBackend is not connected: use 'async with backend:'")
        if self._session is None:
            from aiobotocore.config import AioConfig  # aiohttp with it: only when needed
            from aiobotocore.session import AioSession

            settings = self.settings
            self._session = AioSession(profile=settings.profile)
            self._config = AioConfig(
                max_pool_connections=settings.max_connections,
                retries={"max_attempts": settings.max_attempts, "mode": "standard"},
                connect_timeout=5,
                read_timeout=MAX_WAIT + 10,  # longer than the longest long poll
            )
        creating = self._session.create_client(
            service, config=self._config, **self.settings.client_options()
        )
        client = await stack.enter_async_context(creating)
        if self._stack is not stack:  # closed while it was being made
            await stack.aclose()
            raise RuntimeError("AWSBackend was closed while connecting to AWS")
        self._made[service] = client
        return client

    async def aclose(self) -> None:
        """Close every client made; any later ``get`` raises."""
        stack, self._stack = self._stack, None
        self._made.clear()
        if stack is not None:
            await stack.aclose()


class LazyClient:
    """Where the backend's modules hold a client: each operation makes the client first.

    ``lazy.OPERATION(**kwargs)`` is ``await (await clients.get(service)).OPERATION(**kwargs)``;
    the wrapper of each operation is made once and kept on the instance.
    """

    def __init__(self, clients: Clients, service: str) -> None:
        self._clients = clients
        self._service = service

    def __getattr__(self, operation: str) -> Any:
        if operation.startswith("_"):
            raise AttributeError(operation)
        clients, service = self._clients, self._service

        async def call(*args: Any, **kwargs: Any) -> Any:
            client = await clients.get(service)
            return await getattr(client, operation)(*args, **kwargs)

        call.__name__ = call.__qualname__ = operation
        self.__dict__[operation] = call
        return call

    def __repr__(self) -> str:
        made = self._service in self._clients.made
        return f"<LazyClient {self._service} ({'made' if made else 'not made yet'})>"

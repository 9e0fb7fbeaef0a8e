"""The operations commands' two ways in: a running app's admin API, or the backend itself."""

from __future__ import annotations

import json
import math
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx

from framework.backends import from_url
from framework.backends.base import Backend
from framework.exceptions import (
    BackendUnavailableError,
    ConfigError,
    FrameworkError,
    InvalidMessageError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.messages import Outgoing
from framework.outgoing import SendOptions, build_batch_undeclared, build_undeclared, options_of
from framework.redact import mask_text, mask_url
from framework.runtime import operations

__all__ = ["BackendOps", "Ops", "Progress", "ServerOps", "parse_body"]


class _NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _no_constant(name: str) -> Any:
    raise _NotFinite(name)


def parse_body(text: str, what: str = "body") -> Any:
    """Read a command-line body: JSON when it parses as JSON, else the text itself.

    Python's JSON reader takes ``NaN``, ``Infinity`` and ``1e400`` (as infinity), which no
    JSON peer can read back (they would travel as ``null``): they are refused, not guessed at.

    Raises:
        InvalidMessageError: For a non-finite number, naming it.
    """
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite, parse_int=int)
    except _NotFinite as exc:
        raise InvalidMessageError(
            f"{what} {text[:60]!r} holds {exc}, which is not a finite number and cannot be "
            "sent as JSON; quote it to send it as a string"
        ) from None
    except ValueError:
        return text


Progress = Callable[[int, int], None]
"""Told ``(moved so far, total expected)``; the total is the queue's depth when it started (or
the limit), and grows with ``moved`` if more arrive meanwhile."""

# A redrive through the admin API goes in requests of this many, so the CLI can show progress.
SERVER_CHUNK = 100
# A bulk send through the admin API: at most this many bodies, and about this many bytes of
# JSON, per request (the gateway refuses request bodies over its max_body_size, 1 MiB).
SEND_CHUNK = 1_000
SEND_CHUNK_BYTES = 512 * 1024


class Ops(Protocol):
    """**Protocol**: what the operations commands need, wherever the queues live."""

    async def queues(self, names: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Return the stats of ``names`` (default: every queue known) as dicts."""

    async def send(self, queue: str, body: Any, options: Mapping[str, Any]) -> str:
        """Send a message; return its id."""

    async def send_batch(
        self, queue: str, bodies: Sequence[Any], options: Mapping[str, Any]
    ) -> list[str]:
        """Send one message per body with the same options, in batches; return their ids."""

    async def publish(self, topic: str, body: Any, options: Mapping[str, Any]) -> str:
        """Publish a message; return its id."""

    async def redrive(self, dlq: str, to: str | None, limit: int | None, progress: Progress) -> int:
        """Move dead letters back, telling ``progress(moved, total)``; return the count."""

    async def purge(self, queue: str) -> int:
        """Delete a queue's messages; return the count."""

    async def routes(self) -> dict[str, list[dict[str, Any]]]:
        """Return the served HTTP and WebSocket routes (``Registry.listing``'s form)."""


class ServerOps:
    """Operations through a running ``framework run``'s admin API under ``/_framework/``.

    Inside ``async with ops:`` every call goes through one HTTP client (one keep-alive
    connection), closed at the end; outside it, each call opens and closes its own.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def _new_client(self) -> httpx.AsyncClient:
        # Loading the CA bundle is most of a client's ~60-90 ms start: a plain http:// URL
        # never does TLS, so it gets a bare context that trusts no certificate at all
        # (verification stays on: an https:// peer could not be reached through it).
        verify: ssl.SSLContext | bool = (
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) if self.url.startswith("http://") else True
        )
        return httpx.AsyncClient(
            base_url=self.url, headers=self._headers, timeout=self._timeout, verify=verify
        )

    async def __aenter__(self) -> ServerOps:
        self._client = self._new_client()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _request(self, method: str, path: str, payload: Any) -> httpx.Response:
        # Every admin POST is JSON, even one without options.
        if payload is None and method == "POST":
            payload = {}
        if self._client is not None:
            return await self._client.request(method, f"/_framework{path}", json=payload)
        async with self._new_client() as client:
            return await client.request(method, f"/_framework{path}", json=payload)

    async def _call(self, method: str, path: str, payload: Any = None) -> Any:
        try:
            response = await self._request(method, path, payload)
        except httpx.TransportError as exc:
            raise BackendUnavailableError(
                f"cannot reach {mask_url(self.url)}: {mask_text(str(exc)) or type(exc).__name__} "
                "(is `framework run` serving there?)"
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = {"detail": response.text[:200]}
        if response.status_code == 404 and isinstance(data, dict) and "detail" in data:
            detail = str(data["detail"])
            raise (UnknownTopicError if "topic" in path.split("/")[1] else UnknownQueueError)(
                detail
            )
        if response.status_code in (401, 403):
            raise ConfigError(
                f"{mask_url(self.url)} refused the admin token ({response.status_code}): "
                "pass --token or set FRAMEWORK_ADMIN_TOKEN"
            )
        if response.status_code in (400, 413, 422):
            raise InvalidMessageError(str(data.get("detail", data)))
        if response.status_code >= 300:
            raise FrameworkError(
                f"{mask_url(self.url)} answered {response.status_code}: {mask_text(str(data))}"
            )
        return data

    async def queues(self, names: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Return the running app's queue stats (only ``names``, when given)."""
        data = await self._call("GET", "/queues")
        rows = list(data["queues"])
        if not names:
            return rows
        unknown = sorted(set(names) - {row["name"] for row in rows})
        if unknown:
            raise UnknownQueueError(
                f"queue(s) {', '.join(map(repr, unknown))} not found in the running app"
            )
        return [row for row in rows if row["name"] in names]

    async def send(self, queue: str, body: Any, options: Mapping[str, Any]) -> str:
        """Send through the running app."""
        data = await self._call("POST", f"/queues/{queue}/messages", {"body": body, **options})
        return str(data["message_id"])

    async def send_batch(
        self, queue: str, bodies: Sequence[Any], options: Mapping[str, Any]
    ) -> list[str]:
        """Send through the running app, in requests of up to 1,000 bodies (about 512 KiB).

        Each request is one batch, refused whole if one of its bodies is bad; the requests
        before a refused one stay sent.
        """
        ids: list[str] = []
        for chunk in _chunks(bodies):
            payload = {"bodies": chunk, **options}
            data = await self._call("POST", f"/queues/{queue}/messages", payload)
            ids += [str(i) for i in data["message_ids"]]
        return ids

    async def publish(self, topic: str, body: Any, options: Mapping[str, Any]) -> str:
        """Publish through the running app."""
        data = await self._call("POST", f"/topics/{topic}/messages", {"body": body, **options})
        return str(data["message_id"])

    async def redrive(self, dlq: str, to: str | None, limit: int | None, progress: Progress) -> int:
        """Redrive inside the running app, in requests of ``SERVER_CHUNK`` messages."""
        depth = next((int(q["depth"]) for q in await self.queues() if q["name"] == dlq), 0)
        total = depth if limit is None else min(limit, depth)
        moved = 0
        while True:
            chunk = SERVER_CHUNK if limit is None else min(SERVER_CHUNK, limit - moved)
            data = await self._call("POST", f"/queues/{dlq}/redrive", {"to": to, "limit": chunk})
            done = int(data["moved"])
            moved += done
            if done:
                progress(moved, max(total, moved))
            # Without a limit, what was there at the start: messages a running handler
            # dead-letters again at once (a poison body) must not keep the loop going.
            cap = limit if limit is not None else depth
            if done < chunk or moved >= cap:
                return moved

    async def purge(self, queue: str) -> int:
        """Purge inside the running app."""
        data = await self._call("POST", f"/queues/{queue}/purge")
        return int(data["purged"])

    async def routes(self) -> dict[str, list[dict[str, Any]]]:
        """Return the running app's HTTP and WebSocket routes."""
        data = await self._call("GET", "/routes")
        return {
            "routes": list(data["routes"]),
            "websocket_routes": list(data.get("websocket_routes", [])),
        }


class BackendOps:
    """Operations straight against a broker (``amqp://``, ``aws://``)."""

    def __init__(self, url: str) -> None:
        if url.startswith("memory:"):
            raise ConfigError(
                "memory:// lives inside the process that runs the app: reach it with "
                "--server http://HOST:PORT (the running `framework run`)"
            )
        if url.startswith("sqlite:"):
            from framework.backends.sqlite.settings import SQLiteSettings

            path = SQLiteSettings.from_url(url).path
            if not path.exists():
                # An operations command must not leave an empty database behind a typo.
                raise ConfigError(
                    f"no sqlite file {str(path)!r}: run `framework run APP` (or `framework "
                    "provision APP`) to create it, or pass --backend sqlite:///PATH"
                )
        self.url = url

    async def _with(self, work: Callable[[Backend], Any]) -> Any:
        backend = from_url(self.url)
        try:
            await backend.__aenter__()
        except FrameworkError:
            raise
        except Exception as exc:
            # Wrong credentials, a refused or silent port, a bad virtual host: the client
            # library's own error, in one line, with the URL it was about (password masked).
            raise BackendUnavailableError(
                f"cannot connect to {mask_url(self.url)}: {type(exc).__name__}: "
                f"{mask_text(str(exc))}"
            ) from None
        try:
            result = await work(backend)
        except BaseException as exc:
            await backend.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await backend.__aexit__(None, None, None)
        return result

    async def queues(self, names: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Return queue stats from the broker: of ``names``, or of every queue it can list.

        A RabbitMQ broker cannot list its queues over AMQP: name them (``--queue``, or the
        app whose queues they are).
        """

        async def work(backend: Backend) -> list[dict[str, Any]]:
            chosen = sorted(set(names)) if names else None
            return [s.as_dict() for s in await operations.queue_stats(backend, chosen)]

        result: list[dict[str, Any]] = await self._with(work)
        return result

    async def send(self, queue: str, body: Any, options: Mapping[str, Any]) -> str:
        """Send straight to the broker's queue."""
        message = _outgoing("queue", queue, body, options, limit=1_048_576)

        async def work(backend: Backend) -> str:
            return await backend.send(queue, message)

        return str(await self._with(work))

    async def send_batch(
        self, queue: str, bodies: Sequence[Any], options: Mapping[str, Any]
    ) -> list[str]:
        """Send straight to the broker's queue, as one batch: one bad body sends none."""
        messages = build_batch_undeclared(
            "queue", queue, bodies, 1_048_576, **options_of(options, SendOptions)
        )

        async def work(backend: Backend) -> list[str]:
            return await operations.send_batch(backend, queue, messages)

        return list(await self._with(work))

    async def publish(self, topic: str, body: Any, options: Mapping[str, Any]) -> str:
        """Publish straight to the broker's topic."""
        message = _outgoing("topic", topic, body, options, limit=262_144)

        async def work(backend: Backend) -> str:
            return await backend.publish(topic, message)

        return str(await self._with(work))

    async def redrive(self, dlq: str, to: str | None, limit: int | None, progress: Progress) -> int:
        """Redrive on the broker, reporting progress per message."""

        async def work(backend: Backend) -> int:
            depth = (await backend.stats(dlq)).depth
            total = depth if limit is None else min(limit, depth)

            def moved(count: int) -> None:
                progress(count, max(total, count))

            return await operations.redrive(backend, dlq, to=to, limit=limit, progress=moved)

        return int(await self._with(work))

    async def purge(self, queue: str) -> int:
        """Purge on the broker."""

        async def work(backend: Backend) -> int:
            return await operations.purge(backend, queue)

        return int(await self._with(work))

    async def routes(self) -> dict[str, list[dict[str, Any]]]:
        """Routes belong to an app, not a broker."""
        raise ConfigError("routes belong to an app: run `framework routes APP` or pass --server")


def _outgoing(
    kind: str, name: str, body: Any, options: Mapping[str, Any], *, limit: int
) -> Outgoing:
    """Build a message for a queue or topic from the CLI's options."""
    return build_undeclared(kind, name, body, limit, **options_of(options, SendOptions))


def _chunks(bodies: Sequence[Any]) -> list[list[Any]]:
    """Split ``bodies`` into admin API requests of ``SEND_CHUNK`` bodies or about 512 KiB."""
    chunks: list[list[Any]] = []
    chunk: list[Any] = []
    size = 0
    for body in bodies:
        length = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
        if chunk and (len(chunk) == SEND_CHUNK or size + length > SEND_CHUNK_BYTES):
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(body)
        size += length
    if chunk:
        chunks.append(chunk)
    return chunks


def routes_of(app: Any) -> dict[str, list[dict[str, Any]]]:
    """Return an app's HTTP and WebSocket routes as the admin API lists them."""
    return dict(app.registry.listing())

"""SPEC §3.8: topic subscriptions to HTTP endpoints (POSTed, retried with backoff) and addresses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from framework import App, DeclarationError
from framework.testing import TestApp


@dataclass
class Endpoint:
    """A real HTTP server on loopback that records POSTs and answers with scripted statuses."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    """An endpoint listening on a free loopback port."""
    recorder = Endpoint()
    server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    recorder.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    yield recorder
    server.close()
    await server.wait_closed()


async def test_http_endpoint_receives_the_message_as_a_post(
    backend_url: str, topic_name: str, endpoint: Endpoint
) -> None:
    """A published message is POSTed to the endpoint with its body, topic and attributes."""
    app = App("conformance")
    app.subscribe(topic_name, endpoint.url, name="hook")
    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, {"order": 1}, attributes={"kind": "created"})
        await t.drain()
        stats = await t.stats()
    assert len(endpoint.requests) == 1
    headers, body = endpoint.requests[0]
    assert json.loads(body) == {"order": 1}
    assert headers["content-type"] == "application/json"
    assert headers["x-framework-topic"] == topic_name
    assert json.loads(headers["x-framework-attributes"]) == {"kind": "created"}
    assert stats[f"{topic_name}.hook"].depth == 0
    assert stats[f"{topic_name}.hook"].in_flight == 0


async def test_failing_endpoint_is_retried_with_backoff(
    backend_url: str, topic_name: str, endpoint: Endpoint
) -> None:
    """An endpoint answering 500 is tried again after 1 s, then 2 s, until it accepts."""
    endpoint.statuses = [500, 503]
    app = App("conformance")
    app.subscribe(topic_name, endpoint.url, name="hook")
    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, "ping")
        await t.drain()
        assert len(endpoint.requests) == 1
        await t.clock.advance(1.2)
        await t.drain()
        assert len(endpoint.requests) == 2
        await t.clock.advance(1.0)
        await t.drain()
        assert len(endpoint.requests) == 2  # the second wait is 2 s
        await t.clock.advance(1.2)
        await t.drain()
        stats = await t.stats()
    assert len(endpoint.requests) == 3
    assert stats[f"{topic_name}.hook"].dead_letters == 0


async def test_endpoint_that_never_accepts_is_dead_lettered_without_blocking_others(
    backend_url: str, topic_name: str, endpoint: Endpoint
) -> None:
    """After max_receive_count failed POSTs the copy is dead-lettered; handlers still run."""
    endpoint.statuses = [500] * 10
    app = App("conformance")
    seen: list[str] = []
    app.subscribe(topic_name, endpoint.url, name="hook", max_receive_count=2)

    @app.on_topic(topic_name)
    async def local(body: str) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, "ping")
        await t.drain()
        await t.clock.advance(1.2)
        await t.drain()
        stats = await t.stats()
    assert seen == ["ping"]
    assert len(endpoint.requests) == 2
    assert stats[f"{topic_name}.hook"].dead_letters == 1


async def test_mailto_subscription_mails_the_message(backend_url: str, topic_name: str) -> None:
    """A ``mailto:`` subscription sends each message as a mail (captured in an outbox)."""
    if not backend_url.startswith(("memory:", "sqlite:")):
        pytest.skip("only the memory and sqlite backends capture outgoing mail in an outbox")
    app = App("conformance")
    app.subscribe(topic_name, "mailto:ops@shop.example")
    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, "order 7 shipped")
        await t.drain()
        outbox = t.outbox
    assert [m.to for m in outbox] == [("ops@shop.example",)]
    assert outbox[0].subject == f"{topic_name} notification"
    assert outbox[0].text is not None
    assert outbox[0].text.strip() == "order 7 shipped"


@pytest.mark.parametrize("endpoint_url", ["ftp://x.example/", "mailto:not an address", "hook"])
def test_unsupported_endpoints_are_refused_at_declaration(endpoint_url: str) -> None:
    """Endpoints other than http(s):// and a valid mailto: fail when declared."""
    app = App("conformance")
    with pytest.raises(DeclarationError, match="endpoint"):
        app.subscribe("t-refused", endpoint_url)

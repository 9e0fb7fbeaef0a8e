"""The notifications example with ``TestApp``: work posted over HTTP is pushed to its client."""

from __future__ import annotations

import pytest

from examples.notifications import app
from framework.testing import HandshakeRefusedError, TestApp


# --8<-- [start:push]
async def test_work_is_pushed_to_the_client_that_posted_it() -> None:
    """Two clients connect; the result of one's work reaches that one only."""
    async with TestApp(app) as t, t.websocket("/ws") as mine, t.websocket("/ws") as theirs:
        await mine.send_json({"action": "whoami"})
        hello = await mine.receive_json()
        assert hello["type"] == "hello"
        response = await t.http.post(
            "/work", json={"connection_id": hello["connection_id"], "text": "ping"}
        )
        assert response.status_code == 202
        await t.clock.advance(0.2)
        assert await mine.receive_json() == {"type": "result", "text": "ping", "shouted": "PING"}
        with pytest.raises(TimeoutError):
            await theirs.receive(timeout=0.1)


# --8<-- [end:push]


async def test_other_messages_get_help_and_nobody_is_refused() -> None:
    """Text the API does not route gets help; ``?name=nobody`` is refused with 403."""
    async with TestApp(app) as t:
        async with t.websocket("/ws") as ws:
            await ws.send_text("hi?")
            assert (await ws.receive_json())["type"] == "help"
        with pytest.raises(HandshakeRefusedError) as refused:
            async with t.websocket("/ws", query={"name": "nobody"}):
                pass
        assert refused.value.status == 403


async def test_work_for_a_client_that_left_is_dropped() -> None:
    """A result for a connection that has closed is dropped, not retried."""
    async with TestApp(app) as t:
        async with t.websocket("/ws") as ws:
            await ws.send_json({"action": "whoami"})
            gone = (await ws.receive_json())["connection_id"]
        await t.http.post("/work", json={"connection_id": gone, "text": "late"})
        await t.clock.advance(0.2)
        await t.drain()
        stats = await t.stats()
        assert stats["work"].depth == 0
        assert stats["work-dlq"].depth == 0


async def test_the_page_is_served() -> None:
    """``GET /`` serves the page that opens the WebSocket."""
    async with TestApp(app) as t:
        response = await t.http.get("/")
    assert response.status_code == 200
    assert "new WebSocket" in response.text

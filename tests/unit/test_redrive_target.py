"""A dead-letter queue cannot be redriven into itself: refused before any message is touched."""

from __future__ import annotations

import pytest

from framework import App, Context, InvalidRedriveError
from framework.runtime import operations
from framework.testing import TestApp


def failing_app() -> App:
    app = App("redrive-target")

    @app.on_queue("orders", max_receive_count=1, retry_delay=0)
    async def orders(body: str, ctx: Context) -> None:
        raise RuntimeError("down")

    return app


async def test_redrive_into_itself_is_refused_and_leaves_the_messages() -> None:
    """``redrive(dlq, to=dlq)`` raises, and the dead letters keep their receive counts."""
    app = failing_app()
    async with TestApp(app) as t:
        await app.send("orders", "a")
        await t.drain()
        before = (await t.stats())["orders-dlq"]
        with pytest.raises(InvalidRedriveError, match="cannot redrive 'orders-dlq' to itself"):
            await app.redrive("orders-dlq", to="orders-dlq")
        with pytest.raises(InvalidRedriveError):
            await operations.redrive_selected(t.backend, "orders-dlq", ["any"], to="orders-dlq")
        after = (await t.stats())["orders-dlq"]
        [message] = await operations.peek(t.backend, "orders-dlq")
    assert before.depth == after.depth == 1
    assert message.receive_count == 1  # the refused redrives never received it: peek is first


async def test_admin_api_answers_400_for_a_redrive_into_itself() -> None:
    """Through the admin API the same refusal is a 400 with the reason."""
    app = failing_app()
    async with TestApp(app) as t:
        response = await t.http.post(
            "/_framework/queues/orders-dlq/redrive", json={"to": "orders-dlq"}
        )
    assert response.status_code == 400
    assert "to itself" in response.text

"""The admin API (what the dashboard and ``framework --server`` use) on ``sqlite://``, as on
every backend: queue stats, a send through it, dead letters peeked and redriven."""

from __future__ import annotations

import json
from pathlib import Path

from framework import App, Context
from framework.testing import TestApp


async def test_admin_api_lists_sends_and_redrives_on_the_file(tmp_path: Path) -> None:
    """GET queues, POST a message that fails into the DLQ, peek it, redrive it, see it handled."""
    app = App("ops")
    seen: list[tuple[str, int]] = []
    healed = False

    @app.on_queue("orders", max_receive_count=1, visibility_timeout=2)
    async def process(body: dict[str, str], ctx: Context) -> None:
        seen.append((body["id"], ctx.message.receive_count))
        if not healed:
            raise ValueError("not yet")

    async with TestApp(app, backend=f"sqlite:///{tmp_path / 'ops.db'}") as t:
        r = await t.http.post("/_framework/queues/orders/messages", json={"body": {"id": "1"}})
        assert r.status_code == 201
        await t.drain()
        queues = {q["name"]: q for q in (await t.http.get("/_framework/queues")).json()["queues"]}
        assert queues["orders"]["dead_letters"] == 1
        assert queues["orders-dlq"]["depth"] == 1
        peeked = (await t.http.get("/_framework/queues/orders-dlq/messages")).json()["messages"]
        assert [json.loads(m["body"]) for m in peeked] == [{"id": "1"}]
        healed = True
        r = await t.http.post("/_framework/queues/orders-dlq/redrive", json={})
        assert r.json()["moved"] == 1
        await t.drain()
        stats = await t.stats()
    assert seen == [("1", 1), ("1", 1)]  # the redriven message starts counting again
    assert (stats["orders"].depth, stats["orders"].dead_letters) == (0, 0)

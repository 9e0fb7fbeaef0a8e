"""The admin endpoints behind the dashboard's dead-letter panel: peek, redrive and delete by id."""

from __future__ import annotations

from typing import Any

import pytest

from framework.exceptions import UnknownQueueError
from framework.messages import DLQ_SOURCE, Outgoing
from framework.runtime import operations
from framework.testing import TestApp

from .shop import Job, make_app


async def fill_dlq(t: TestApp, *ids: str) -> list[str]:
    """Put one dead letter per id in jobs-dlq (as the worker would); return their message ids."""
    for job_id in ids:
        await t.app.send("jobs", Job(id=job_id, fail=True))
        await t.drain()
        await t.drain()
    messages = (await t.http.get("/_framework/queues/jobs-dlq/messages?limit=100")).json()
    by_job = {m["body"]: m["message_id"] for m in messages["messages"]}
    return [by_job[Job(id=i, fail=True).model_dump_json()] for i in ids]


async def test_peek_shows_a_dead_letter_with_its_reason_and_leaves_it() -> None:
    """GET .../messages returns body, attributes and the dead-letter reason; the message stays."""
    app, _, _ = make_app()
    async with TestApp(app) as t:
        await app.send("jobs", Job(id="bad", fail=True), attributes={"tenant": "acme"})
        await t.drain()
        await t.drain()
        first = (await t.http.get("/_framework/queues/jobs-dlq/messages")).json()["messages"]
        again = (await t.http.get("/_framework/queues/jobs-dlq/messages")).json()["messages"]
        stats = (await t.stats())["jobs-dlq"]
    (message,) = first
    assert message["body"] == Job(id="bad", fail=True).model_dump_json()
    assert message["body_encoding"] == "text"
    assert message["content_type"] == "application/json"
    assert message["attributes"] == {"tenant": "acme"}
    reason = message["dead_letter"]
    assert reason["source_queue"] == "jobs"
    assert reason["receive_count"] == 2
    assert reason["error_type"] == "ValueError"
    assert reason["error_message"] == "job bad cannot be done"
    assert reason["time"]
    assert "dead-letter-source-queue" not in message["headers"]
    # Peeking is a receive: the count goes up by one each time, as in the SQS console.
    assert again[0]["receive_count"] == message["receive_count"] + 1
    assert (stats.depth, stats.in_flight) == (1, 0)


async def test_peek_limit_and_bytes_body() -> None:
    """?limit=N returns at most N, oldest first; a body that is not UTF-8 comes as base64."""
    app, _, _ = make_app()
    async with TestApp(app, workers=False) as t:
        for n in range(12):
            await app.send("parked", f"m{n}")
        await t.backend.send("parked", Outgoing(body=b"\xff\xfe"))
        some = (await t.http.get("/_framework/queues/parked/messages?limit=3")).json()
        every = (await t.http.get("/_framework/queues/parked/messages?limit=100")).json()
    assert [m["body"] for m in some["messages"]] == ["m0", "m1", "m2"]
    assert len(every["messages"]) == 13
    raw = every["messages"][-1]
    assert (raw["body"], raw["body_encoding"], raw["dead_letter"]) == ("//4=", "base64", None)


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x"])
async def test_peek_limit_out_of_range_is_422(query: str) -> None:
    """A limit that is not 1 to 100 is a 422 located at query.limit."""
    app, _, _ = make_app()
    async with TestApp(app) as t:
        r = await t.http.get(f"/_framework/queues/parked/messages?{query}")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/_framework/queues/nope/messages", None),
        ("POST", "/_framework/queues/nope/messages/delete", {"message_ids": ["a"]}),
        ("POST", "/_framework/queues/nope/redrive", {"message_ids": ["a"]}),
    ],
)
async def test_unknown_queue_is_404(method: str, path: str, body: Any) -> None:
    """Peek, delete and redrive by id on a queue that does not exist give 404 naming it."""
    app, _, _ = make_app()
    async with TestApp(app) as t:
        r = await t.http.request(method, path, json=body)
    assert r.status_code == 404
    assert "'nope'" in r.json()["detail"]


async def test_redrive_of_selected_ids_moves_only_those_and_the_handler_gets_them() -> None:
    """Redrive with message_ids moves the chosen dead letters; the others stay, none is lost."""
    app, seen, healed = make_app()
    async with TestApp(app) as t:
        a, b, c = await fill_dlq(t, "a", "b", "c")
        healed.update({"a", "c"})
        r = await t.http.post(
            "/_framework/queues/jobs-dlq/redrive", json={"message_ids": [a, c, "missing"]}
        )
        await t.drain()
        left = (await t.http.get("/_framework/queues/jobs-dlq/messages")).json()["messages"]
    assert r.status_code == 200
    assert r.json() == {"moved": 2, "not_found": ["missing"]}
    assert sorted(s[1] for s in seen if s[0] == "jobs") == ["a", "c"]
    assert [m["message_id"] for m in left] == [b]


async def test_redrive_by_ids_and_limit_together_is_422() -> None:
    """message_ids and limit exclude each other."""
    app, _, _ = make_app()
    async with TestApp(app) as t:
        r = await t.http.post(
            "/_framework/queues/jobs-dlq/redrive", json={"message_ids": ["a"], "limit": 1}
        )
    assert r.status_code == 422


async def test_delete_of_selected_ids_removes_only_those() -> None:
    """POST .../messages/delete removes the chosen messages and reports ids it did not find."""
    app, _, _ = make_app()
    async with TestApp(app) as t:
        a, b = await fill_dlq(t, "a", "b")
        r = await t.http.post(
            "/_framework/queues/jobs-dlq/messages/delete", json={"message_ids": [b, "zzz"]}
        )
        left = (await t.http.get("/_framework/queues/jobs-dlq/messages")).json()["messages"]
    assert r.json() == {"deleted": 1, "not_found": ["zzz"]}
    assert [m["message_id"] for m in left] == [a]


async def test_redrive_selected_neither_loses_nor_duplicates() -> None:
    """Of 25 messages (three receive batches), the 7 chosen move once; the 18 others stay once."""
    app, _, _ = make_app()
    async with TestApp(app, workers=False) as t:
        ids = [await app.send("jobs-dlq", {"n": n}) for n in range(25)]
        chosen = ids[3:25:3]
        moved, missing = await operations.redrive_selected(
            t.backend, "jobs-dlq", chosen, to="parked"
        )
        stats = await t.stats()
        parked = await operations.peek(t.backend, "parked", limit=100)
        left = await operations.peek(t.backend, "jobs-dlq", limit=100)
    assert (moved, missing) == (len(chosen), [])
    assert sorted(d.message_id for d in parked) == sorted(chosen)
    assert sorted(d.message_id for d in left) == sorted(set(ids) - set(chosen))
    assert (stats["jobs-dlq"].in_flight, stats["parked"].depth) == (0, len(chosen))


async def test_redrive_selected_to_a_missing_queue_releases_everything() -> None:
    """A move that fails (its source queue is gone) leaves that message and the rest in place."""
    app, _, _ = make_app()
    async with TestApp(app, workers=False) as t:
        ids = [await app.send("jobs-dlq", {"n": n}) for n in range(2)]
        lost = await t.backend.send("jobs-dlq", Outgoing(body=b"{}", headers={DLQ_SOURCE: "gone"}))
        with pytest.raises(UnknownQueueError, match="'gone'"):
            await operations.redrive_selected(
                t.backend, "jobs-dlq", [ids[0], lost], sources=["jobs"]
            )
        stats = await t.stats()
    assert (stats["jobs-dlq"].depth, stats["jobs-dlq"].in_flight) == (2, 0)
    assert stats["jobs"].depth == 1  # the one moved before the failure

"""Local Lambda mode on moto: event source mappings, the HTTP front door, retries and redrive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from framework import App, Context
from framework.aws.emulator import LocalLambda
from tests.aws_lambda.conftest import SQS
from tests.aws_lambda.test_sqs import order_app
from tests.cli.conftest import framework

ROOT = Path(__file__).resolve().parents[2]


async def eventually(check: Callable[[], bool], within: float = 15.0) -> None:
    """Wait until ``check()`` (run in a thread: it may call boto3) is true."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_failing_order_is_retried_dead_lettered_and_redriven(
    aws_url: str, sqs: SQS, prefix: str
) -> None:
    """Receive counts 1, 2, 3, the dead letter with its reason, then redrive brings it back."""
    seen: list[tuple[str, int]] = []
    app = order_app(prefix, seen, retry_delay=0)
    dlq = f"{prefix}-orders-dlq"
    async with LocalLambda(app, aws_url) as local:
        transport = httpx.ASGITransport(app=local.front_door)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            accepted = await client.post("/orders", json={"id": "bad", "total": -1})
            assert accepted.status_code == 202
            assert (await client.post("/orders", json={"id": "ok", "total": 1})).status_code == 202
            invalid = await client.post("/orders", json={"id": "x", "total": "lots"})
            assert invalid.status_code == 422
            assert "total" in invalid.text
        await eventually(lambda: sqs.counts(dlq)[0] == 1)
        assert [c for i, c in seen if i == "bad"] == [1, 2, 3]
        assert ("ok", 1) in seen
        assert sqs.counts(f"{prefix}-orders") == (0, 0)  # the handled one was deleted
        result = await asyncio.to_thread(framework, "redrive", dlq, "--backend", aws_url, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        await eventually(lambda: [c for i, c in seen if i == "bad"] == [1, 2, 3, 1, 2, 3])
        await eventually(lambda: sqs.counts(dlq)[0] == 1)
    (dead,) = sqs.receive(dlq)
    attributes = dead["MessageAttributes"]["x-framework"]["StringValue"]
    assert "ValueError" in attributes
    assert "negative total" in attributes


async def test_poison_body_is_dead_lettered_at_once(aws_url: str, sqs: SQS, prefix: str) -> None:
    """A body the handler cannot take goes to the dead-letter queue on its first receive."""
    seen: list[tuple[str, int]] = []
    app = order_app(prefix, seen)
    async with LocalLambda(app, aws_url) as local:
        await asyncio.to_thread(sqs.send, f"{prefix}-orders", "not json")
        await eventually(lambda: sqs.counts(f"{prefix}-orders-dlq")[0] == 1)
        assert seen == []
        assert local.invocations >= 1


async def test_front_door_answers_what_the_gateway_answers(aws_url: str, prefix: str) -> None:
    """Unknown routes are 404 and responses keep their headers, through API Gateway's shape."""
    seen: list[tuple[str, int]] = []
    app = order_app(prefix, seen)
    async with LocalLambda(app, aws_url) as local:
        transport = httpx.ASGITransport(app=local.front_door)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            missing = await client.get("/nowhere")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/json"
            assert "x-request-id" in missing.headers
            docs = await client.get("/openapi.json")
            assert docs.status_code == 200
            assert "/orders" in docs.json()["paths"]


async def test_fifo_groups_keep_their_order_through_a_retry(
    aws_url: str, sqs: SQS, prefix: str
) -> None:
    """On a FIFO queue the mapping's batches keep each group in order: a record that fails
    once is retried before the rest of its group, and the other group is not held up."""
    app = App(f"lambda-{prefix}")
    seen: list[tuple[str, int]] = []
    queue = f"{prefix}-jobs.fifo"

    @app.on_queue(queue, retry_delay=0, max_receive_count=3)
    async def job(body: str, ctx: Context) -> None:
        seen.append((body, ctx.message.receive_count))
        if body == "a-2" and ctx.message.receive_count == 1:
            raise RuntimeError("first try fails")

    async with LocalLambda(app, aws_url) as local:
        sent = [("a", "a-1"), ("b", "b-1"), ("a", "a-2"), ("b", "b-2"), ("a", "a-3")]
        for n, (group, body) in enumerate(sent):
            await asyncio.to_thread(
                sqs.send, queue, body, MessageGroupId=group, MessageDeduplicationId=str(n)
            )
        await eventually(lambda: len(seen) == 6 and sqs.counts(queue) == (0, 0))
        assert local.deleted == 5
    group_a = [s for s in seen if s[0].startswith("a")]
    assert [body for body, _ in group_a] == ["a-1", "a-2", "a-2", "a-3"]
    assert [count for body, count in group_a if body == "a-2"] == [1, 2]
    # a-3 ran once: on its first receive, or its second if it came in a-2's first batch and
    # was listed, unrun, behind a-2's failure (SQS counted that receive too).
    assert group_a[3][1] in (1, 2)
    assert [s for s in seen if s[0].startswith("b")] == [("b-1", 1), ("b-2", 1)]


def test_local_mode_refuses_a_backend_without_sqs() -> None:
    """memory:// has no event source mappings to emulate: a clear error says so."""
    from framework.exceptions import ConfigError

    with pytest.raises(ConfigError, match="needs an aws:// backend"):
        LocalLambda(App("x"), "memory://")


def _unused(_: Any) -> None: ...

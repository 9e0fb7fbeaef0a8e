"""SQS batches through lambda_handler on moto: receive counts, retries, dead letters, FIFO."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from framework import App, Context
from framework.aws.local import LambdaContext
from framework.backends.aws import AWSBackend
from framework.backends.aws.wire import decode
from tests.aws_lambda.conftest import SQS
from tests.aws_lambda.shapes import http_event

DEAD = "dead-letter-error-type"


class Order(BaseModel):
    id: str
    total: float


def order_app(prefix: str, seen: list[tuple[str, int]], **options: Any) -> App:
    app = App(f"lambda-{prefix}")
    queue = f"{prefix}-orders"

    @app.route("/orders", methods=["POST"], status_code=202)
    async def create(order: Order) -> dict[str, str]:
        await app.send(queue, order)
        return {"accepted": order.id}

    @app.on_queue(queue, **{"visibility_timeout": 5, "max_receive_count": 3, **options})
    async def process(order: Order, ctx: Context) -> None:
        seen.append((order.id, ctx.message.receive_count))
        if order.total < 0:
            raise ValueError(f"order {order.id} has a negative total")
        if order.id.startswith("slow"):
            await asyncio.sleep(30)

    return app


def post(handler: Any, order: dict[str, Any]) -> None:
    event = http_event(
        "POST", "/orders", body=json.dumps(order), headers={"content-type": "application/json"}
    )
    assert handler(event, LambdaContext())["statusCode"] == 202


def failures(answer: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in answer["batchItemFailures"]]


def dead_letters(sqs: SQS, queue: str) -> list[Any]:
    now = datetime.now(UTC)
    return [decode(queue, m, now=now) for m in sqs.receive(queue)]


def test_successful_records_are_not_listed_and_not_deleted_by_us(
    start: Any, sqs: SQS, prefix: str
) -> None:
    """Handled records are absent from batchItemFailures; deleting them is Lambda's part."""
    seen: list[tuple[str, int]] = []
    handler = start(order_app(prefix, seen))
    for n in range(3):
        post(handler, {"id": f"o-{n}", "total": n})
    event = sqs.event(f"{prefix}-orders")
    assert len(event["Records"]) == 3
    assert all(r["attributes"]["ApproximateReceiveCount"] == "1" for r in event["Records"])
    answer = handler(event, LambdaContext())
    assert answer == {"batchItemFailures": []}
    assert sorted(seen) == [("o-0", 1), ("o-1", 1), ("o-2", 1)]
    assert sqs.counts(f"{prefix}-orders") == (0, 3)  # still in flight: Lambda deletes them


def test_failure_is_retried_with_receive_counts_then_dead_lettered_with_reason(
    start: Any, sqs: SQS, prefix: str
) -> None:
    """Receive counts 1, 2 fail and are listed (visible after retry_delay); 3 goes to the DLQ."""
    seen: list[tuple[str, int]] = []
    handler = start(order_app(prefix, seen, retry_delay=0))
    post(handler, {"id": "bad", "total": -1})
    listed: list[list[str]] = []
    for _ in range(3):
        event = sqs.event(f"{prefix}-orders")
        assert len(event["Records"]) == 1  # visible again at once: retry_delay=0
        listed.append(failures(handler(event, LambdaContext())))
        ids = [r["messageId"] for r in event["Records"]]
        assert listed[-1] in ([], ids)
    assert [count for _, count in seen] == [1, 2, 3]
    assert [len(x) for x in listed] == [1, 1, 0]  # the dead-lettered one is not listed
    (dead,) = dead_letters(sqs, f"{prefix}-orders-dlq")
    assert dead.headers[DEAD] == "ValueError"
    assert dead.headers["dead-letter-source-queue"] == f"{prefix}-orders"
    assert dead.headers["dead-letter-receive-count"] == "3"
    assert "negative total" in dead.headers["dead-letter-error-message"]
    assert json.loads(dead.body) == {"id": "bad", "total": -1.0}


def test_failed_record_waits_for_the_retry_delay(start: Any, sqs: SQS, prefix: str) -> None:
    """A failure changes the record's visibility to retry_delay: not visible before it."""
    seen: list[tuple[str, int]] = []
    handler = start(order_app(prefix, seen, retry_delay=60))
    post(handler, {"id": "bad", "total": -1})
    event = sqs.event(f"{prefix}-orders", visibility=1)
    assert len(failures(handler(event, LambdaContext()))) == 1
    time.sleep(1.2)  # the receive's own 1 s visibility has passed; the retry delay has not
    assert sqs.counts(f"{prefix}-orders") == (0, 1)


def test_poison_body_goes_to_the_dead_letter_queue_at_once(
    start: Any, sqs: SQS, prefix: str
) -> None:
    """A body that fails validation is dead-lettered on its first receive and not listed."""
    seen: list[tuple[str, int]] = []
    handler = start(order_app(prefix, seen))
    sqs.send(f"{prefix}-orders", '{"id": "p"}')
    answer = handler(sqs.event(f"{prefix}-orders"), LambdaContext())
    assert answer == {"batchItemFailures": []}
    assert seen == []
    (dead,) = dead_letters(sqs, f"{prefix}-orders-dlq")
    assert dead.headers["dead-letter-receive-count"] == "1"
    assert dead.body == b'{"id": "p"}'


def test_deadline_is_cut_to_the_invocations_remaining_time(
    start: Any, sqs: SQS, prefix: str
) -> None:
    """A handler still running when the invocation runs out is cancelled and its record listed."""
    seen: list[tuple[str, int]] = []
    handler = start(order_app(prefix, seen, visibility_timeout=30, retry_delay=0))
    post(handler, {"id": "slow-1", "total": 1})
    post(handler, {"id": "fast", "total": 1})
    event = sqs.event(f"{prefix}-orders")
    slow = next(r["messageId"] for r in event["Records"] if "slow" in r["body"])
    began = time.monotonic()
    answer = handler(event, LambdaContext(timeout=1.0))
    assert time.monotonic() - began < 1.0
    assert failures(answer) == [slow]


def test_records_run_concurrently_up_to_the_handlers_concurrency(
    start: Any, sqs: SQS, prefix: str
) -> None:
    """At most ``concurrency`` handlers of a batch run at once, and more than one does."""
    app = App(f"lambda-{prefix}")
    running = peak = 0

    @app.on_queue(f"{prefix}-work", concurrency=3)
    async def work(body: str) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    handler = start(app)
    for n in range(8):
        sqs.send(f"{prefix}-work", f"job-{n}")
    records: list[Any] = []
    while len(records) < 8:
        records += sqs.event(f"{prefix}-work")["Records"]
    assert handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    assert peak == 3


def test_fifo_groups_run_in_order_and_a_failure_lists_the_rest_of_its_group(
    start: Any, sqs: SQS, prefix: str
) -> None:
    """After a failure in a FIFO group, its later records are listed; other groups go on."""
    app = App(f"lambda-{prefix}")
    seen: list[str] = []
    queue = f"{prefix}-jobs.fifo"

    @app.on_queue(queue, retry_delay=0)
    async def job(body: str, ctx: Context) -> None:
        seen.append(body)
        await asyncio.sleep(0.01)
        if body == "a-bad":
            raise RuntimeError("boom")

    handler = start(app)
    for n, (group, body) in enumerate(
        [("a", "a-1"), ("b", "b-1"), ("a", "a-bad"), ("b", "b-2"), ("a", "a-3")]
    ):
        sqs.send(queue, body, MessageGroupId=group, MessageDeduplicationId=str(n))
    records: list[Any] = []
    while len(records) < 5:
        batch = sqs.event(queue)["Records"]
        assert batch, "moto returned no more records"
        records += batch
    assert records[0]["attributes"]["MessageGroupId"] in ("a", "b")
    assert all(isinstance(r["attributes"]["SequenceNumber"], str) for r in records)
    answer = handler({"Records": records}, LambdaContext())
    by_body = {r["body"]: r["messageId"] for r in records}
    assert sorted(failures(answer)) == sorted([by_body["a-bad"], by_body["a-3"]])
    assert [b for b in seen if b.startswith("a")] == ["a-1", "a-bad"]
    assert [b for b in seen if b.startswith("b")] == ["b-1", "b-2"]
    # The failed head and the rest of its group are visible again: the next batch has them.
    sqs.delete_succeeded(queue, records, answer)  # what Lambda does with the answer
    again = sqs.event(queue)["Records"]
    assert [r["body"] for r in again][:2] == ["a-bad", "a-3"]


def test_extend_visibility_is_capped_by_the_invocations_remaining_time(
    start: Any, sqs: SQS, prefix: str
) -> None:
    """ctx.extend_visibility(600) in a 2.5 s invocation grants what the invocation has left
    (less the second to settle), so the handler is cancelled and listed before Lambda would
    kill the function."""
    app = App(f"lambda-{prefix}")
    granted: list[float] = []
    queue = f"{prefix}-long"

    @app.on_queue(queue, visibility_timeout=30, retry_delay=0)
    async def long(body: str, ctx: Context) -> None:
        await ctx.extend_visibility(600)
        granted.append(ctx.remaining)
        await asyncio.sleep(30)

    handler = start(app)
    sqs.send(queue, "work")
    event = sqs.event(queue)
    started = time.monotonic()
    answer = handler(event, LambdaContext(timeout=2.5))
    took = time.monotonic() - started
    assert failures(answer) == [event["Records"][0]["messageId"]]
    assert took < 2.5  # answered before the function's timeout
    (left,) = granted
    assert 0 < left <= 1.5  # 2.5 s less the settle margin, not 600 s


def test_a_cold_start_makes_only_the_aws_clients_the_invocations_use(
    start: Any, sqs: SQS, prefix: str
) -> None:
    """An HTTP request that sends nothing and a batch that succeeds make no AWS client; the
    first failure makes SQS's (to change the record's visibility) and no other."""
    app = App(f"lambda-{prefix}")

    @app.route("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.on_queue(f"{prefix}-orders", max_receive_count=3, retry_delay=0)
    async def process(order: Order) -> None:
        if order.total < 0:
            raise ValueError("negative")

    handler = start(app)
    assert handler(http_event("GET", "/hello"), LambdaContext())["statusCode"] == 200

    def made() -> tuple[str, ...]:
        backend = handler.backend
        assert isinstance(backend, AWSBackend)
        return backend.clients_made

    assert made() == ()
    sqs.send(f"{prefix}-orders", json.dumps({"id": "ok", "total": 1}))
    assert handler(sqs.event(f"{prefix}-orders"), LambdaContext()) == {"batchItemFailures": []}
    assert made() == ()
    sqs.send(f"{prefix}-orders", json.dumps({"id": "bad", "total": -1}))
    event = sqs.event(f"{prefix}-orders")
    assert len(failures(handler(event, LambdaContext()))) == 1
    assert made() == ("sqs",)


def test_a_short_extension_keeps_the_record_invisible_until_the_invocation_ends(
    start: Any, sqs: SQS, prefix: str
) -> None:
    """Lambda deletes a handled record when the invocation returns: a record that extended
    its visibility by 1 s and succeeded stays invisible while a slower record of the same
    batch still runs, so no other invocation gets it meanwhile."""
    app = App(f"lambda-{prefix}")
    queue = f"{prefix}-mixed"

    @app.on_queue(queue, visibility_timeout=30, concurrency=2)
    async def handle(body: str, ctx: Context) -> None:
        if body == "quick":
            await ctx.extend_visibility(1)
        else:
            await asyncio.sleep(3)

    handler = start(app)
    sqs.send(queue, "quick")
    sqs.send(queue, "slow")
    event = sqs.event(queue)
    while len(event["Records"]) < 2:
        more = sqs.event(queue)
        event["Records"] += more["Records"]
    answer = handler(event, LambdaContext(timeout=10))
    assert answer == {"batchItemFailures": []}
    assert sqs.counts(queue) == (0, 2)  # both in flight for Lambda to delete

"""SPEC §3.8 fan-out: a copy per matching subscription, each with its own queue, retries and DLQ."""

from __future__ import annotations

from typing import Any

import pytest

from framework import App, Context
from framework.testing import TestApp


async def test_publish_delivers_a_copy_to_every_subscription(
    backend_url: str, topic_name: str
) -> None:
    """Every subscription of a topic receives its own copy of a published message, once."""
    app = App("conformance")
    seen: list[tuple[str, str]] = []

    @app.on_topic(topic_name)
    async def billing(body: str) -> None:
        seen.append(("billing", body))

    @app.on_topic(topic_name)
    async def shipping(body: str) -> None:
        seen.append(("shipping", body))

    @app.on_topic(topic_name, name="audit")
    async def record(body: str) -> None:
        seen.append(("audit", body))

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, "order-1")
        await t.drain()
    assert sorted(seen) == [("audit", "order-1"), ("billing", "order-1"), ("shipping", "order-1")]


async def test_subscription_queue_is_named_topic_dot_subscription(
    backend_url: str, topic_name: str
) -> None:
    """A subscription's queue is ``TOPIC.SUBSCRIPTION``, the name defaulting to the function's."""
    app = App("conformance")
    queues: list[str] = []

    @app.on_topic(topic_name)
    async def billing(body: str, ctx: Context) -> None:
        queues.append(ctx.message.queue)

    @app.on_topic(topic_name, name="audit")
    async def record(body: str, ctx: Context) -> None:
        queues.append(ctx.message.queue)

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, "hello")
        await t.drain()
        stats = await t.stats()
    assert sorted(queues) == [f"{topic_name}.audit", f"{topic_name}.billing"]
    assert {f"{topic_name}.billing-dlq", f"{topic_name}.audit-dlq"} <= set(stats)


async def test_published_attributes_reach_every_subscriber(
    backend_url: str, topic_name: str
) -> None:
    """Each subscriber gets the body and the attributes as published."""
    app = App("conformance")
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    @app.on_topic(topic_name)
    async def first(body: dict[str, Any], ctx: Context) -> None:
        seen.append((body, dict(ctx.message.attributes)))

    @app.on_topic(topic_name)
    async def second(body: dict[str, Any], ctx: Context) -> None:
        seen.append((body, dict(ctx.message.attributes)))

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, {"id": "A-1"}, attributes={"type": "created", "n": 2})
        await t.drain()
    assert seen == [({"id": "A-1"}, {"type": "created", "n": 2})] * 2


async def test_filter_policy_on_attributes_chooses_subscriptions(
    backend_url: str, topic_name: str
) -> None:
    """Only subscriptions whose attribute policy matches (or that have none) get a message."""
    app = App("conformance")
    seen: list[tuple[str, str]] = []

    @app.on_topic(topic_name, filter_policy={"type": ["created"]})
    async def created(body: str) -> None:
        seen.append(("created", body))

    @app.on_topic(topic_name, filter_policy={"type": ["deleted"]})
    async def deleted(body: str) -> None:
        seen.append(("deleted", body))

    @app.on_topic(topic_name)
    async def everything(body: str) -> None:
        seen.append(("everything", body))

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, "a", attributes={"type": "created"})
        await app.publish(topic_name, "b", attributes={"type": "updated"})
        await app.publish(topic_name, "c")
        await t.drain()
    assert sorted(seen) == [
        ("created", "a"),
        ("everything", "a"),
        ("everything", "b"),
        ("everything", "c"),
    ]


async def test_filter_policy_string_operators(backend_url: str, topic_name: str) -> None:
    """``prefix``, ``suffix``, ``equals-ignore-case`` and ``anything-but`` match as on SNS."""
    app = App("conformance")
    seen: list[tuple[str, str]] = []

    @app.on_topic(topic_name, filter_policy={"region": [{"prefix": "eu-"}]})
    async def europe(body: str) -> None:
        seen.append(("europe", body))

    @app.on_topic(topic_name, filter_policy={"file": [{"suffix": ".png"}]})
    async def images(body: str) -> None:
        seen.append(("images", body))

    @app.on_topic(topic_name, filter_policy={"tier": [{"equals-ignore-case": "gold"}]})
    async def gold(body: str) -> None:
        seen.append(("gold", body))

    @app.on_topic(topic_name, filter_policy={"region": [{"anything-but": ["us-east-1"]}]})
    async def not_virginia(body: str) -> None:
        seen.append(("not_virginia", body))

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, "1", attributes={"region": "eu-west-1", "tier": "GOLD"})
        await app.publish(topic_name, "2", attributes={"region": "us-east-1", "file": "a.png"})
        await app.publish(topic_name, "3", attributes={"file": "a.png.txt", "tier": "silver"})
        await t.drain()
    assert sorted(seen) == [
        ("europe", "1"),
        ("gold", "1"),
        ("images", "2"),
        ("not_virginia", "1"),
    ]


async def test_filter_policy_numbers_exists_and_or(backend_url: str, topic_name: str) -> None:
    """Exact numbers, ``numeric`` ranges, ``exists`` and ``$or`` match as on SNS."""
    app = App("conformance")
    seen: list[tuple[str, str]] = []

    @app.on_topic(topic_name, filter_policy={"price": [{"numeric": [">=", 10, "<", 100]}]})
    async def mid_price(body: str) -> None:
        seen.append(("mid_price", body))

    @app.on_topic(topic_name, filter_policy={"qty": [3]})
    async def three(body: str) -> None:
        seen.append(("three", body))

    @app.on_topic(topic_name, filter_policy={"coupon": [{"exists": False}]})
    async def no_coupon(body: str) -> None:
        seen.append(("no_coupon", body))

    @app.on_topic(
        topic_name, filter_policy={"$or": [{"qty": [{"numeric": [">", 100]}]}, {"vip": ["yes"]}]}
    )
    async def big_or_vip(body: str) -> None:
        seen.append(("big_or_vip", body))

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, "1", attributes={"price": 10, "qty": 3, "coupon": "X"})
        await app.publish(topic_name, "2", attributes={"price": 100, "qty": 101})
        await app.publish(topic_name, "3", attributes={"price": 99.5, "vip": "yes", "coupon": "Y"})
        await app.publish(topic_name, "4", attributes={"qty": "3", "coupon": "Z"})
        await t.drain()
    assert sorted(seen) == [
        ("big_or_vip", "2"),
        ("big_or_vip", "3"),
        ("mid_price", "1"),
        ("mid_price", "3"),
        ("no_coupon", "2"),
        ("three", "1"),
    ]


async def test_filter_policy_on_the_message_body(backend_url: str, topic_name: str) -> None:
    """With ``filter_policy_scope="MessageBody"`` the policy matches the nested JSON body."""
    app = App("conformance")
    seen: list[tuple[str, str]] = []

    @app.on_topic(
        topic_name,
        filter_policy={"order": {"status": ["paid"], "total": [{"numeric": [">", 100]}]}},
        filter_policy_scope="MessageBody",
    )
    async def big_paid(body: dict[str, Any]) -> None:
        seen.append(("big_paid", body["id"]))

    @app.on_topic(topic_name, filter_policy={"type": ["paid"]})
    async def by_attribute(body: Any) -> None:
        seen.append(("by_attribute", str(body)))

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, {"id": "1", "order": {"status": "paid", "total": 150}})
        await app.publish(topic_name, {"id": "2", "order": {"status": "paid", "total": 50}})
        await app.publish(topic_name, {"id": "3", "order": {"status": "open", "total": 150}})
        await app.publish(topic_name, "not json", attributes={"type": "paid"})
        await t.drain()
    assert sorted(seen) == [("big_paid", "1"), ("by_attribute", "not json")]


@pytest.mark.moto_gap(
    "moto's exists: true matches a body key set to null (AWS: the key needs a non-null, "
    "non-empty value)"
)
async def test_exists_true_needs_a_value_in_the_body(backend_url: str, topic_name: str) -> None:
    """AWS's key matching: a body key that is null or "" does not exist for ``exists: true``."""
    app = App("conformance")
    seen: list[str] = []

    @app.on_topic(
        topic_name, filter_policy={"coupon": [{"exists": True}]}, filter_policy_scope="MessageBody"
    )
    async def with_coupon(body: dict[str, Any]) -> None:
        seen.append(body["id"])

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, {"id": "null", "coupon": None})
        await app.publish(topic_name, {"id": "empty", "coupon": ""})
        await app.publish(topic_name, {"id": "set", "coupon": "X"})
        await t.drain()
    assert seen == ["set"]


async def test_failing_subscriber_neither_blocks_nor_duplicates_another(
    backend_url: str, topic_name: str
) -> None:
    """One subscriber failing until its DLQ does not delay, repeat or dead-letter another's copy."""
    app = App("conformance")
    broken: list[int] = []
    healthy: list[tuple[str, int]] = []

    @app.on_topic(topic_name, visibility_timeout=1, retry_delay=1, max_receive_count=2)
    async def flaky(body: str, ctx: Context) -> None:
        broken.append(ctx.message.receive_count)
        raise RuntimeError("down")

    @app.on_topic(topic_name, visibility_timeout=1, retry_delay=1, max_receive_count=2)
    async def steady(body: str, ctx: Context) -> None:
        healthy.append((body, ctx.message.receive_count))

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, "hello")
        await t.drain()
        first = list(healthy)
        for _ in range(3):
            await t.clock.advance(1.5)
            await t.drain()
        stats = await t.stats()
    assert first == [("hello", 1)]
    assert healthy == [("hello", 1)]
    assert broken == [1, 2]
    assert stats[f"{topic_name}.flaky"].dead_letters == 1
    assert stats[f"{topic_name}.steady"].dead_letters == 0


async def test_subscriptions_retry_independently(backend_url: str, topic_name: str) -> None:
    """Each subscription keeps its own receive count: one's retry is not another's redelivery."""
    app = App("conformance")
    seen: list[tuple[str, int]] = []

    @app.on_topic(topic_name, visibility_timeout=1, retry_delay=1, max_receive_count=3)
    async def once_flaky(body: str, ctx: Context) -> None:
        seen.append(("once_flaky", ctx.message.receive_count))
        if ctx.message.receive_count == 1:
            raise RuntimeError("transient")

    @app.on_topic(topic_name, visibility_timeout=1, retry_delay=1, max_receive_count=3)
    async def steady(body: str, ctx: Context) -> None:
        seen.append(("steady", ctx.message.receive_count))

    async with TestApp(app, backend=backend_url) as t:
        await app.publish(topic_name, "hello")
        await t.drain()
        await t.clock.advance(1.5)
        await t.drain()
    assert sorted(seen) == [("once_flaky", 1), ("once_flaky", 2), ("steady", 1)]


@pytest.mark.moto_gap(
    "a deduplication id is free again once its message is deleted (AWS keeps it for five "
    "minutes): when a subscriber deletes n=9 before its duplicate is published, the "
    "duplicate is delivered",
    strict=False,
)
async def test_fifo_topic_keeps_group_order_in_every_subscription(
    backend_url: str, topic_name: str
) -> None:
    """Messages published to a FIFO topic reach each subscription in order within their group."""
    app = App("conformance")
    topic = f"{topic_name}.fifo"
    seen: dict[str, list[int]] = {"first": [], "second": []}

    @app.on_topic(topic, visibility_timeout=1, concurrency=10)
    async def first(body: dict[str, int]) -> None:
        seen["first"].append(body["n"])

    @app.on_topic(topic, visibility_timeout=1, concurrency=10)
    async def second(body: dict[str, int]) -> None:
        seen["second"].append(body["n"])

    async with TestApp(app, backend=backend_url) as t:
        for n in range(10):
            await app.publish(topic, {"n": n}, group_id="g", deduplication_id=str(n))
        await app.publish(topic, {"n": 9}, group_id="g", deduplication_id="9")
        await t.drain()
    assert seen == {"first": list(range(10)), "second": list(range(10))}

"""Tests for framework.app: decorators validate at import time and record specs."""

from __future__ import annotations

import pytest

from framework import App, AppNotRunningError, DeclarationError, Email, InvalidFilterPolicyError
from framework.registry import SubscriptionSpec


def test_decorators_return_the_function_unchanged() -> None:
    """Decorated handlers stay plain functions, callable directly in tests."""
    app = App("shop")

    async def handler(body: str) -> None: ...

    assert app.on_queue("jobs")(handler) is handler
    assert app.on_topic("events")(handler) is handler
    assert app.route("/x")(handler) is handler


def test_on_queue_records_a_consumer_with_its_options() -> None:
    """``@app.on_queue`` records the queue with its options and its dead-letter queue."""
    app = App("shop")

    @app.on_queue("jobs", visibility_timeout=5, max_receive_count=2)
    async def handler(body: str) -> None: ...

    consumer = app.registry.consumers["jobs"]
    assert consumer.handler is handler
    assert consumer.queue.visibility_timeout == 5
    assert consumer.queue.max_receive_count == 2
    assert "jobs-dlq" in app.registry.queues


def test_bad_queue_option_fails_when_the_decorator_is_applied() -> None:
    """A bad option raises at decoration (import time), naming the handler and the option."""
    app = App("shop")
    with pytest.raises(DeclarationError, match=r"\.work: queue 'jobs': visibility_timeout=-1"):

        @app.on_queue("jobs", visibility_timeout=-1)
        async def work(body: str) -> None: ...

    assert app.registry.consumers == {}


def test_second_handler_on_a_queue_fails_naming_both() -> None:
    """Two ``@app.on_queue`` handlers for one queue fail at import, naming both."""
    app = App("shop")

    @app.on_queue("jobs")
    async def one(body: str) -> None: ...

    with pytest.raises(DeclarationError) as info:

        @app.on_queue("jobs")
        async def two(body: str) -> None: ...

    assert "one" in str(info.value)
    assert "two" in str(info.value)


def test_route_path_must_start_with_a_slash() -> None:
    """A route path without a leading '/' is refused."""
    app = App("shop")
    with pytest.raises(DeclarationError, match="'orders': the path must start with '/'"):
        app.route("orders")


def test_unknown_http_method_is_refused_by_name() -> None:
    """A method that is not an HTTP method is refused, naming it."""
    app = App("shop")
    with pytest.raises(DeclarationError, match=r"unknown method.*FETCH"):
        app.route("/orders", methods=["GET", "fetch"])


def test_methods_are_case_insensitive() -> None:
    """Lower-case methods are accepted and recorded upper-case."""
    app = App("shop")

    @app.route("/orders", methods=["post"])
    async def create(body: dict[str, str]) -> None: ...

    assert app.registry.routes[0].methods == ("POST",)


@pytest.mark.parametrize("version", ["", "v1/beta"])
def test_route_version_must_be_one_path_segment(version: str) -> None:
    """An empty version or one with '/' is refused."""
    app = App("shop")
    with pytest.raises(DeclarationError, match="must be one path segment"):
        app.route("/orders", version=version)


def test_versioned_route_is_served_under_the_version() -> None:
    """``version="v2"`` prefixes the served path with ``/v2``."""
    app = App("shop")

    @app.route("/orders", version="v2")
    async def orders() -> None: ...

    assert app.registry.routes[0].full_path == "/v2/orders"


def test_same_path_and_method_twice_is_refused() -> None:
    """Two handlers for the same method and path are refused, naming the first."""
    app = App("shop")

    @app.route("/orders")
    async def first() -> None: ...

    with pytest.raises(DeclarationError, match=r"GET /orders is already served by .*first"):

        @app.route("/orders")
        async def second() -> None: ...


def test_same_path_in_two_versions_is_accepted() -> None:
    """The same path under two versions is served side by side."""
    app = App("shop")

    @app.route("/orders", version="v1")
    async def v1() -> None: ...

    @app.route("/orders", version="v2")
    async def v2() -> None: ...

    assert [r.full_path for r in app.registry.routes] == ["/v1/orders", "/v2/orders"]


@pytest.mark.parametrize(
    "recipients",
    [
        "support@shop.example",
        [],
        [""],
        ["a b@shop.example"],
        ["a@shop.example, b@shop.example"],
        ["<a@shop.example>"],
        ["a@shop.example\r\nRCPT TO:<x@evil>"],
    ],
)
def test_bad_on_email_recipients_are_refused(recipients: object) -> None:
    """Recipients must be a non-empty list of plain address, domain or subdomain conditions."""
    app = App("shop")
    with pytest.raises(DeclarationError, match="on_email: recipient"):
        app.on_email(recipients)  # type: ignore[arg-type]


def test_on_email_records_a_rule_and_a_queue() -> None:
    """``@app.on_email`` records a receipt rule and a queue named after the function."""
    app = App("shop")

    @app.on_email(["support@shop.example", ".shop.example"])
    async def support(mail: Email) -> None: ...

    (rule,) = app.registry.email_rules
    assert rule.recipients == ("support@shop.example", ".shop.example")
    assert rule.queue.name == "email-support"
    assert app.registry.consumers["email-support"].kind == "email"


def test_invalid_filter_policy_names_the_handler() -> None:
    """An invalid filter policy fails at import with the handler's name and the policy error."""
    app = App("shop")
    with pytest.raises(
        InvalidFilterPolicyError, match=r"test_app_declarations\..*notify: "
    ) as info:

        @app.on_topic("events", filter_policy={"type": [{"prefix": 5}]})
        async def notify(body: str) -> None: ...

    assert "prefix" in str(info.value)
    assert app.registry.subscriptions == []


def test_invalid_filter_policy_scope_is_refused() -> None:
    """A scope other than MessageAttributes or MessageBody is refused."""
    app = App("shop")
    with pytest.raises(DeclarationError, match="filter_policy_scope must be"):
        app.on_topic("events", filter_policy_scope="Body")


def test_on_topic_declares_topic_subscription_and_its_queue() -> None:
    """A topic handler gets a subscription named after it and a queue ``TOPIC.NAME``."""
    app = App("shop")

    @app.on_topic("events", filter_policy={"type": ["created"]})
    async def audit(body: str) -> None: ...

    assert "events" in app.registry.topics
    (subscription,) = app.registry.subscriptions
    assert subscription.name == "audit"
    assert subscription.filter_policy == {"type": ["created"]}
    assert subscription.queue is not None
    assert subscription.queue.name == SubscriptionSpec.queue_name("events", "audit")
    assert app.registry.consumers["events.audit"].kind == "topic"


def test_fifo_topic_subscriptions_get_fifo_queues() -> None:
    """A subscription of a FIFO topic gets a FIFO queue ``TOPIC.NAME.fifo``."""
    app = App("shop")

    @app.on_topic("events.fifo")
    async def audit(body: str) -> None: ...

    queue = app.registry.subscriptions[0].queue
    assert queue is not None
    assert queue.name == "events.audit.fifo"
    assert queue.fifo


def test_two_subscriptions_with_the_same_name_are_refused() -> None:
    """Two handlers of one topic with the same function name need ``name=``."""
    app = App("shop")

    @app.on_topic("events")
    async def audit(body: str) -> None: ...

    with pytest.raises(DeclarationError, match="already has a subscription named 'audit'"):
        app.on_topic("events")(audit)


def test_topic_fifo_name_rules_are_enforced() -> None:
    """A FIFO topic must end in ``.fifo`` and a standard one must not."""
    app = App("shop")
    with pytest.raises(DeclarationError, match=r"end in '\.fifo'"):
        app.topic("events", fifo=True)
    with pytest.raises(DeclarationError, match=r"end in '\.fifo'"):
        app.topic("events.fifo", fifo=False)


def test_unknown_topic_option_is_refused_by_name() -> None:
    """An unknown topic option is refused, naming it."""
    app = App("shop")
    with pytest.raises(DeclarationError, match=r"unknown option.*retention"):
        app.topic("events", retention=60)


async def test_send_before_running_raises_with_a_hint() -> None:
    """``app.send`` on an app that is not running says how to start it."""
    app = App("shop")
    app.queue("jobs")
    with pytest.raises(AppNotRunningError, match=r"'shop' is not running.*TestApp\(app\)"):
        await app.send("jobs", "hello")


async def test_publish_before_running_raises() -> None:
    """``app.publish`` on an app that is not running raises AppNotRunningError."""
    app = App("shop")
    app.topic("events")
    with pytest.raises(AppNotRunningError, match="framework run"):
        await app.publish("events", {"a": 1})

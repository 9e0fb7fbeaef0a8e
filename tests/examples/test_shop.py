"""The shop example, driven end to end on the memory backend with ``TestApp``."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from examples import shop
from framework import App
from framework.testing import TestApp

ORDER = {"id": "1", "total": 9.5, "email": "a@b.example"}
BAD_ORDER = {"id": "2", "total": -1, "email": "a@b.example"}


@pytest.fixture(autouse=True)
def empty_shop() -> Iterator[None]:
    """Empty the shop's module state before and after each test."""
    state = (shop.STATUS, shop.AUDIT, shop.SUPPORT)
    for part in state:
        part.clear()
    yield
    for part in state:
        part.clear()


# --8<-- [start:fixtures]
@pytest.fixture
def framework_app() -> App:
    """The app the plugin's ``framework_test_app`` fixture runs."""
    return shop.app


@pytest.fixture
def t(framework_test_app: TestApp) -> TestApp:
    """The shop running in-process on the test backend (memory:// unless told otherwise)."""
    return framework_test_app


# --8<-- [end:fixtures]
# --8<-- [start:happy-path]
async def test_order_is_accepted_processed_and_notified(t: TestApp) -> None:
    """A posted order is queued, processed, fanned out to both subscribers and mailed to ops."""
    response = await t.http.post("/orders", json=ORDER)
    assert response.status_code == 202
    assert response.json() == {"accepted": "1"}

    await t.drain()

    status = await t.http.get("/orders/1")
    assert status.json() == {"id": "1", "status": "notified"}
    assert shop.AUDIT == [("1", "created")]
    [mail] = t.outbox
    assert mail.to == ("ops@shop.example",)
    assert mail.subject == "order 1"
    assert mail.text is not None
    assert "a@b.example" in mail.text
    assert "9.50" in mail.text


# --8<-- [end:happy-path]
async def test_status_is_accepted_until_the_queue_is_drained(t: TestApp) -> None:
    """The route answers before the queue handler runs, and the status says so."""
    await t.http.post("/orders", json=ORDER)
    assert (await t.http.get("/orders/1")).json()["status"] == "accepted"
    await t.drain()
    assert (await t.http.get("/orders/1")).json()["status"] == "notified"


async def test_unknown_order_is_404(t: TestApp) -> None:
    """Asking for an order that was never posted is a 404, not a 500."""
    response = await t.http.get("/orders/nope")
    assert response.status_code == 404


async def test_invalid_order_is_422_with_field_errors(t: TestApp) -> None:
    """A bad body is refused at the gateway with one error per field, and never queued."""
    response = await t.http.post("/orders", json={"id": "3", "total": "lots"})
    assert response.status_code == 422
    fields = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert fields == {("body", "total"), ("body", "email")}
    assert (await t.stats())["orders"].depth == 0
    assert shop.STATUS == {}


async def test_filter_policy_keeps_other_events_from_notify(t: TestApp) -> None:
    """An event whose type is not "created" reaches audit (no filter) but not notify."""
    await shop.app.publish("order-events", ORDER, attributes={"type": "cancelled"})
    await t.drain()
    assert shop.AUDIT == [("1", "cancelled")]
    assert t.outbox == []


# --8<-- [start:dead-letters]
async def test_failing_order_is_dead_lettered_after_three_receives_and_redriven(
    t: TestApp,
) -> None:
    """A negative total fails three times, 30 s apart, into orders-dlq; redrive brings it back."""
    await t.http.post("/orders", json=BAD_ORDER)
    await t.drain()  # receive 1 fails
    for _ in range(2):  # receives 2 and 3, each after the 30 s retry delay
        orders = (await t.stats())["orders"]
        # Waiting out its retry delay, the message is in flight (not visible), as on SQS.
        assert (orders.in_flight, orders.dead_letters) == (1, 0)
        await t.clock.advance(30)
        await t.drain()

    stats = await t.stats()
    assert stats["orders"].dead_letters == 1
    assert stats["orders-dlq"].depth == 1
    orders = stats["orders"]
    assert (orders.depth, orders.in_flight, orders.delayed) == (0, 0, 0)
    assert (await t.http.get("/orders/2")).json()["status"] == "accepted"
    assert t.outbox == []

    assert await shop.app.redrive("orders-dlq") == 1
    assert (await t.stats())["orders-dlq"].depth == 0

    # Back on orders with its receive count reset, it gets three full tries again.
    await t.drain()
    for _ in range(2):
        assert (await t.stats())["orders"].dead_letters == 0
        await t.clock.advance(30)
        await t.drain()
    assert (await t.stats())["orders"].dead_letters == 1


# --8<-- [end:dead-letters]
async def test_support_mail_reaches_the_support_handler(t: TestApp) -> None:
    """Mail sent to support@shop.example through the SMTP receiver reaches the handler parsed."""
    await t.send_email(
        to="support@shop.example",
        from_="customer@example.org",
        subject="where is my order?",
        text="Order 1, please.",
    )
    await t.drain()

    [mail] = shop.SUPPORT
    assert mail.from_ == "customer@example.org"
    assert mail.to == ("support@shop.example",)
    assert mail.subject == "where is my order?"
    assert mail.text is not None
    assert mail.text.strip() == "Order 1, please."


async def test_mail_to_other_addresses_is_refused(t: TestApp) -> None:
    """No receipt rule matches sales@shop.example, so the receiver refuses it at RCPT."""
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await t.send_email(to="sales@shop.example", subject="hello", text="hi")
    await t.drain()
    assert shop.SUPPORT == []

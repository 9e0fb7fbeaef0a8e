"""A small shop: HTTP in, a queue, a topic with two subscribers, mail out and mail in.

Run it on the memory backend (HTTP on http://127.0.0.1:8000):

    framework run examples.shop:app

An order with a negative total fails three times and lands in ``orders-dlq``; bring it back with
``framework redrive orders-dlq --server http://127.0.0.1:8000``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.responses import JSONResponse

from framework import App, Context, Email

app = App("shop", mail_from="shop@shop.example")

# The shop's "database": order id -> status ("accepted", "processed", "notified"). A real shop
# would use a database; module state keeps the example to one file, and only one process.
STATUS: dict[str, str] = {}
AUDIT: list[tuple[str, str]] = []  # (order id, event type) as the audit subscriber saw them
SUPPORT: list[Email] = []  # mail received for support@shop.example


# --8<-- [start:model]
class Order(BaseModel):
    id: str
    total: float
    email: str


# --8<-- [end:model]
# --8<-- [start:routes]
@app.route("/orders", methods=["POST"], status_code=202)
async def create_order(order: Order) -> dict[str, str]:
    """Accept an order and queue it; an invalid body gets a 422 with field errors."""
    STATUS[order.id] = "accepted"
    await app.send("orders", order)
    return {"accepted": order.id}


@app.route("/orders/{order_id}")
async def get_order(order_id: str) -> Any:
    """Return an order's status, or 404."""
    if order_id not in STATUS:
        return JSONResponse({"detail": f"no order {order_id!r}"}, status_code=404)
    return {"id": order_id, "status": STATUS[order_id]}


# --8<-- [end:routes]
# --8<-- [start:process]
@app.on_queue("orders", visibility_timeout=30, max_receive_count=3)
async def process(order: Order, ctx: Context) -> None:
    """Process an order, then announce it; a failure is retried, then dead-lettered."""
    ctx.logger.info("order.processing", extra={"fields": {"order": order.id}})
    if order.total < 0:
        # Retried after 30 s (the visibility timeout); the third failure moves it to orders-dlq.
        raise ValueError(f"order {order.id} has a negative total")
    STATUS[order.id] = "processed"
    await app.publish("order-events", order, attributes={"type": "created"})


# --8<-- [end:process]
# --8<-- [start:subscribers]
@app.on_topic("order-events", filter_policy={"type": ["created"]})
async def notify(order: Order, ctx: Context) -> None:
    """Tell operations about every new order (only "created" events reach this subscriber)."""
    await app.mail.send(
        to="ops@shop.example",
        subject=f"order {order.id}",
        text=f"Order {order.id} from {order.email}: {order.total:.2f}",
    )
    STATUS[order.id] = "notified"


@app.on_topic("order-events")
async def audit(order: Order, ctx: Context) -> None:
    """Record every event on the topic: no filter policy, so it gets them all."""
    AUDIT.append((order.id, str(ctx.message.attributes.get("type", ""))))


# --8<-- [end:subscribers]
# --8<-- [start:support]
@app.on_email(recipients=["support@shop.example"])
async def support(mail: Email, ctx: Context) -> None:
    """Keep mail sent to support; it arrives through a queue, with retries like any other."""
    ctx.logger.info("support.mail", extra={"fields": {"from": mail.from_, "subject": mail.subject}})
    SUPPORT.append(mail)


# --8<-- [end:support]

"""The framework side of ``bench/lambda.py``: an app's module as its users write it for Lambda.

Lambda's Python runtime imports this module once per execution environment and calls
``bench.lambda_app.handler(event, context)`` for each invocation. The app has one HTTP route
(``POST /orders``, an ``Order`` body) and one queue handler (``Order`` bodies), as
``bench/lambda_bare.py`` does by hand.
"""

from __future__ import annotations

from bench.orders import Order
from framework import App
from framework.aws import lambda_handler

__all__ = ["QUEUE", "app", "handler"]

QUEUE = "bench-lambda-orders"

app = App("bench-lambda")


@app.route("/orders", methods=["POST"], status_code=201)
async def create(order: Order) -> dict[str, object]:
    """Validate the order (the gateway does it) and answer with its id and amount."""
    return {"id": order.id, "amount": order.amount}


@app.on_queue(QUEUE)
async def consume(order: Order) -> None:
    """Validate the order (the dispatcher does it); nothing else."""


handler = lambda_handler(app)

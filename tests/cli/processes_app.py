"""The app the `framework run --processes` tests run: pids, orders, a crash at import.

``PROCESSES_QUEUE`` names the orders' queue (default ``orders``): on a shared broker each test
uses a fresh name. ``PROCESSES_MAIL=0`` leaves out the mail rule (and its queue).
"""

from __future__ import annotations

import os

import anyio
from pydantic import BaseModel

from framework import App, Email

if os.environ.get("PROCESSES_CRASH") and os.environ.get("FRAMEWORK_PROCESS"):
    raise RuntimeError("this child fails at import on purpose")

app = App("processes")
QUEUE = os.environ.get("PROCESSES_QUEUE", "orders")


class Order(BaseModel):
    id: str
    seconds: float = 0.0


@app.route("/pid")
async def pid() -> dict[str, int]:
    """Say which process answered."""
    return {"pid": os.getpid()}


@app.route("/orders", methods=["POST"], status_code=202)
async def submit(order: Order) -> dict[str, str]:
    """Queue an order."""
    await app.send(QUEUE, order)
    return {"accepted": order.id}


@app.on_queue(QUEUE, visibility_timeout=1, max_receive_count=100, retry_delay=0.05)
async def handle(order: Order) -> None:
    """Take ``seconds``, then write the order's id and this pid to $PROCESSES_LOG."""
    if order.seconds:
        await anyio.sleep(order.seconds)
    _handled(order.id)


if os.environ.get("PROCESSES_MAIL", "1") != "0":

    @app.on_email(["orders@shop.example"])
    async def mail(message: Email) -> None:
        """Write the mail's subject and this pid to $PROCESSES_LOG."""
        _handled(message.subject)


def _handled(what: str) -> None:
    """One O_APPEND write: whole lines even with several processes writing at once."""
    fd = os.open(os.environ["PROCESSES_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{what} {os.getpid()}\n".encode())
    finally:
        os.close(fd)

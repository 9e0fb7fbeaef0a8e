"""The benchmarks' message (a pydantic model of about 1 KiB of JSON) and their counter.

Imported by the bench modules as ``from bench.orders import ...``: run them from the repository
root as ``python -m bench.NAME`` (``python -m bench`` runs them all).
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

__all__ = ["MESSAGE_BYTES", "Counter", "Order", "make_order", "make_orders", "note_for"]

MESSAGE_BYTES = 1024


class Order(BaseModel):
    """A few small fields and a note that brings the encoded order to about 1 KiB."""

    id: int
    customer: str
    amount: float
    tags: list[str]
    note: str


def make_order(index: int, note: str) -> Order:
    """Return order number ``index`` with ``note``."""
    return Order(
        id=index,
        customer=f"customer-{index % 1000}",
        amount=index * 0.25,
        tags=["bench", "orders"],
        note=note,
    )


def note_for(size: int) -> str:
    """Return a note that makes an encoded order about ``size`` bytes long."""
    overhead = len(make_order(10_000, "").model_dump_json().encode())
    return "x" * max(0, size - overhead)


def make_orders(count: int, size: int = MESSAGE_BYTES) -> list[Order]:
    """Build ``count`` orders up front, so model construction stays outside the timed region."""
    note = note_for(size)
    return [make_order(i, note) for i in range(count)]


class Counter:
    """Counts handled messages and wakes the timer when all of them are in."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.handled = 0
        self.done = asyncio.Event()

    def count(self, order: Order) -> None:
        """Count ``order`` as handled."""
        self.handled += 1
        if self.handled == self.total:
            self.done.set()

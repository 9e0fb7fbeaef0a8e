"""A process that receives from a SQLite queue and reports when: ``python listener.py URL QUEUE``.

It prints ``ready``, then for every message one line ``<body> <CLOCK_MONOTONIC ns>`` at the
moment its receive returned, until killed.
"""

from __future__ import annotations

import asyncio
import sys
import time

from framework.backends.sqlite import SQLiteBackend


async def main(url: str, queue: str) -> None:
    """Receive forever, printing each body with the time it arrived."""
    async with SQLiteBackend.from_url(url) as backend:
        print("ready", flush=True)  # noqa: T201
        while True:
            for delivery in await backend.receive(queue, limit=10, wait=20):
                print(delivery.body.decode(), time.monotonic_ns(), flush=True)  # noqa: T201
                await backend.ack(delivery)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

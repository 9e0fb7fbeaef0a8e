"""Deleting what tests declared on the shared RabbitMQ broker, also when a test failed.

The backends delete what they declared when they disconnect (``delete_on_exit``), but not
when the connection was lost at that moment or the test died before: leftover quorum queues
exhaust the broker's file handles (about 3 each; 927 on this machine's broker), after which
it accepts connections and completes no handshake. So the suite also sweeps by name: every
queue and exchange whose name starts with a name a fixture handed out in this session.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

__all__ = ["delete_named", "listed", "sweep"]

RABBITMQCTL_TIMEOUT = 30


def listed(kind: str) -> list[str] | None:
    """The names of the broker's queues or exchanges (``kind``), or None without rabbitmqctl."""
    if shutil.which("rabbitmqctl") is None:
        return None
    try:
        out = subprocess.run(
            ["rabbitmqctl", "-q", f"list_{kind}", "name"],
            capture_output=True,
            text=True,
            check=True,
            timeout=RABBITMQCTL_TIMEOUT,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in out.splitlines() if line.strip() and line != "name"]


async def delete_named(url: str, queues: list[str], exchanges: list[str]) -> None:
    """Delete ``queues`` and ``exchanges`` (missing ones are fine) on a connection of its own."""
    if not queues and not exchanges:
        return
    import aio_pika

    base = url.split("?", 1)[0]
    async with asyncio.timeout(30):
        connection = await aio_pika.connect(base, timeout=10)
        async with connection:
            channel = await connection.channel()
            for name in queues:
                await channel.queue_delete(name)
            for name in exchanges:
                await channel.exchange_delete(name)


def sweep(url: str, prefixes: set[str]) -> tuple[list[str], list[str]]:
    """Delete every queue and exchange whose name starts with one of ``prefixes``.

    Returns:
        The queues and exchanges deleted.
    """
    if not prefixes:
        return [], []
    queues = [q for q in listed("queues") or [] if q.startswith(tuple(prefixes))]
    exchanges = [e for e in listed("exchanges") or [] if e.startswith(tuple(prefixes))]
    asyncio.run(delete_named(url, queues, exchanges))
    return queues, exchanges

"""A mail of many short lines does not hold the event loop: DATA takes turns with other work.

aiosmtpd reads DATA one line per ``readuntil``; a line already buffered is returned without
yielding, so before the receiver's reader took turns, a 700 KB mail of 40,000 lines held
HTTP, other mail and every handler for a third of a second.
"""

from __future__ import annotations

import asyncio

from framework.smtp.config import SMTPConfig
from framework.smtp.receiver import _Connection, _TakingTurnsReader

LINES = 10_000


async def others_ran_while_reading(reader: asyncio.StreamReader) -> int:
    """Read ``LINES`` buffered lines; return how often another task ran meanwhile."""
    reader.feed_data(b"".join(b"line %d\r\n" % i for i in range(LINES)))
    turns = 0
    done = False

    async def other() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await asyncio.sleep(0)  # the other task starts
    turns = 0
    for _ in range(LINES):
        await reader.readuntil(b"\r\n")
    done = True
    await task
    return turns


async def test_buffered_lines_let_other_tasks_run() -> None:
    turns = await others_ran_while_reading(_TakingTurnsReader())
    assert turns >= LINES // _TakingTurnsReader.TURN - 1


async def test_a_plain_stream_reader_would_not() -> None:
    """The check above can fail: asyncio's reader returns buffered lines without yielding."""
    assert await others_ran_while_reading(asyncio.StreamReader()) <= 1


async def test_the_receivers_connections_read_with_it() -> None:
    class Handler:
        scan_observers = ()
        counts = None

    connection = _Connection(Handler(), config=SMTPConfig())  # type: ignore[arg-type]
    assert isinstance(connection._stream_reader, _TakingTurnsReader)

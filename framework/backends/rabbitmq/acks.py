"""Acknowledgements of one consumer channel, sent together once per turn of the event loop.

``message.ack()`` costs a frame of its own per delivery: a future, a hop through the
connection's write queue and writer task, and a ``send`` system call. A consumer's channel
settles many deliveries per turn of the loop (a batch of fast handlers), so ``ChannelAcks``
collects the delivery tags settled during a turn and writes them as one payload at its end:
one ``basic.ack`` with ``multiple=True`` for the settled prefix of the channel's outstanding
deliveries, and one plain ``basic.ack`` for each settled tag past the first one still held.

``multiple=True`` acknowledges *every* unacknowledged tag up to the one it names, so it is used
only for a prefix whose every tag is settled: acknowledged here, or rejected (``done``) by a
frame already queued. Tags are tracked in delivery order; if one ever arrives out of order, the
channel falls back to plain acknowledgements. Frames leave in the order they were made (a
backlog behind a full write queue keeps its order), so a plain ``basic.ack`` always reaches the
broker before a later ``multiple`` one that covers the same tag.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import cast

import aiormq
from aiormq.abc import AbstractChannel

from .publishing import FrameWriter

__all__ = ["ChannelAcks", "ack_frame"]

# A basic.ack method frame: type 1, channel, payload size 13, class 60, method 80, the
# delivery tag, the ``multiple`` bit, the frame end. Packed here rather than by pamqp (a tenth
# of its time; tests/backends/rabbitmq compares the two).
_ACK = struct.Struct(">BHIHHQBB")


def ack_frame(channel: int, tag: int, *, multiple: bool) -> bytes:
    """The encoded basic.ack frame of ``tag`` on channel number ``channel``."""
    return _ACK.pack(1, channel, 13, 60, 80, tag, multiple, 0xCE)


class ChannelAcks:
    """The outstanding deliveries of one (aiormq) channel and the acks due at this turn's end."""

    __slots__ = (
        "_done",
        "_last",
        "_ordered",
        "_outstanding",
        "_scheduled",
        "_settled",
        "_writer",
        "channel",
    )

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        # The connection's frame queue, which aiormq's own basic_ack writes to as well.
        self._writer = FrameWriter(cast(aiormq.Channel, channel).write_queue)
        self._outstanding: deque[int] = deque()  # delivered and not yet passed by a prefix
        self._done: set[int] = set()  # outstanding, settled by another frame (reject, plain ack)
        self._settled: list[int] = []  # acknowledged since the last flush
        self._last = 0
        self._ordered = True
        self._scheduled = False

    def delivered(self, tag: int) -> None:
        """A delivery with ``tag`` arrived on the channel (in the consumer callback)."""
        if tag <= self._last:
            self._ordered = False  # not expected from AMQP: never use ``multiple`` again
        self._last = tag
        self._outstanding.append(tag)

    def ack(self, tag: int) -> None:
        """Acknowledge ``tag`` at the end of this turn of the loop."""
        self._settled.append(tag)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def done(self, tag: int) -> None:
        """``tag`` was settled by a frame already queued (a reject): a prefix may pass it."""
        if self._ordered:
            self._done.add(tag)

    def flush(self) -> None:
        """Write the acknowledgements collected so far, as one payload."""
        self._scheduled = False
        if not self._settled:
            return
        if self.channel.is_closed:  # the broker has put every unacked delivery back
            self._settled.clear()
            return
        acks = set(self._settled)
        self._settled.clear()
        number = self.channel.number
        frames: list[bytes] = []
        if self._ordered:
            outstanding, done, upto = self._outstanding, self._done, 0
            while outstanding:
                tag = outstanding[0]
                if tag in acks:
                    acks.discard(tag)
                    upto = tag
                elif tag in done:
                    done.discard(tag)
                else:
                    break
                outstanding.popleft()
            if upto:
                frames.append(ack_frame(number, upto, multiple=True))
            if acks:
                self._done.update(acks)
        if acks:
            frames += [ack_frame(number, tag, multiple=False) for tag in sorted(acks)]
        self._writer.write(b"".join(frames))

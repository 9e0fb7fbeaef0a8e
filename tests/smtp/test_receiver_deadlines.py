"""Slow clients and password guessers are cut off: per-command, DATA and session deadlines, and
a bounded number of failed AUTH attempts per connection, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from framework import App, Email
from framework.exceptions import ConfigError
from framework.smtp.config import SMTPConfig
from framework.testing import TestApp


def smtp_app(config: SMTPConfig) -> App:
    app = App("deadlines")

    @app.on_email(["support@shop.example"])
    async def support(message: Email) -> None: ...

    app.smtp = config
    return app


class Client:
    """A raw SMTP client that can send slowly, byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        assert (await client.reply()).startswith(b"220")
        return client

    async def reply(self) -> bytes:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 5)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def drip(self, data: bytes, gap: float) -> None:
        for byte in data:
            if self.reader.at_eof() or self.writer.is_closing():
                raise ConnectionError("closed by the server")
            self.writer.write(bytes([byte]))
            await self.writer.drain()
            await asyncio.sleep(gap)

    async def until_closed(self) -> bytes:
        """Everything the server still sends before it closes the connection."""
        try:
            return await asyncio.wait_for(self.reader.read(), 5)
        except ConnectionError:
            # Our own late write hit the closed socket (EPIPE): what the server sent before
            # closing is still buffered, and the reader would not return it any more.
            return bytes(self.reader._buffer)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.writer.close()


async def test_client_sending_valid_commands_is_cut_off_at_the_session_deadline() -> None:
    """A client that drips NOOPs, each within the per-command deadline, gets 421 at the session's.

    aiosmtpd's timer restarts at every valid command, so before the session deadline such a
    client held the connection for as long as it kept dripping.
    """
    app = smtp_app(SMTPConfig(timeout=0.4, session_timeout=0.8))
    async with TestApp(app) as t:
        assert t.receiver is not None
        client = await Client.connect(t.receiver.port)
        started = time.monotonic()

        async def noops() -> None:
            while time.monotonic() - started < 3:
                await client.drip(b"NOOP\r\n", 0.02)  # ~0.12 s per command
                assert (await client.reply()).startswith(b"250")

        with pytest.raises(ConnectionError):
            await noops()
        elapsed = time.monotonic() - started
        rest = await client.until_closed()
        client.close()
    assert 0.6 < elapsed < 1.5
    assert b"421 4.4.2 Session time limit exceeded" in rest


async def test_a_command_dripped_byte_by_byte_is_cut_off_at_the_per_command_deadline() -> None:
    """Bytes do not restart the per-command timer: a line too slow to finish gets 421."""
    app = smtp_app(SMTPConfig(timeout=0.3))
    async with TestApp(app) as t:
        assert t.receiver is not None
        client = await Client.connect(t.receiver.port)
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            await client.drip(b"HELO " + b"x" * 100 + b"\r\n", 0.02)
        elapsed = time.monotonic() - started
        rest = await client.until_closed()
        client.close()
    assert 0.25 < elapsed < 1.0
    assert rest.startswith(b"421 4.4.2 Timeout")


async def test_data_dripped_steadily_is_cut_off_at_the_data_deadline() -> None:
    """However steady, a DATA transfer longer than ``data_timeout`` is cut off."""
    app = smtp_app(SMTPConfig(timeout=5, data_timeout=0.4))
    async with TestApp(app) as t:
        assert t.receiver is not None
        client = await Client.connect(t.receiver.port)
        assert (await client.command(b"HELO client.example")).startswith(b"250")
        assert (await client.command(b"MAIL FROM:<a@example.org>")).startswith(b"250")
        assert (await client.command(b"RCPT TO:<support@shop.example>")).startswith(b"250")
        assert (await client.command(b"DATA")).startswith(b"354")
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            await client.drip(b"X-Line: y\r\n" * 100, 0.005)
        elapsed = time.monotonic() - started
        rest = await client.until_closed()
        client.close()
    assert 0.3 < elapsed < 1.5
    assert b"421 4.4.2" in rest


async def test_data_within_its_deadline_then_commands_get_the_per_command_deadline() -> None:
    """After a DATA that finished in time, the connection goes on under the normal timer."""
    app = smtp_app(SMTPConfig(timeout=5, data_timeout=0.5))
    async with TestApp(app) as t:
        assert t.receiver is not None
        client = await Client.connect(t.receiver.port)
        for line in (
            b"HELO c.example",
            b"MAIL FROM:<a@example.org>",
            b"RCPT TO:<support@shop.example>",
        ):
            assert (await client.command(line)).startswith(b"250")
        assert (await client.command(b"DATA")).startswith(b"354")
        assert (await client.command(b"Subject: hi\r\n\r\nbody\r\n.")).startswith(b"250")
        await asyncio.sleep(0.7)  # past the DATA deadline: the per-command one applies now
        assert (await client.command(b"NOOP")).startswith(b"250")
        assert (await client.command(b"QUIT")).startswith(b"221")
        client.close()


def plain(user: str, password: str) -> bytes:
    return b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode())


async def test_auth_failures_are_bounded_per_connection() -> None:
    """The third wrong password gets 535 and then 421, and the connection is closed."""
    config = SMTPConfig(auth={"alice": "s3cret"}, auth_require_tls=False, max_auth_failures=3)
    app = smtp_app(config)
    async with TestApp(app) as t:
        assert t.receiver is not None
        client = await Client.connect(t.receiver.port)
        assert (await client.command(b"EHLO c.example")).startswith(b"250")
        assert (await client.command(plain("alice", "guess1"))).startswith(b"535")
        assert (await client.command(plain("alice", "guess2"))).startswith(b"535")
        third = await client.command(plain("alice", "guess3"))
        assert third.startswith(b"535")
        rest = third.partition(b"\r\n")[2] + await client.until_closed()
        client.close()
        # A fresh connection may try again, and the right password still works.
        again = await Client.connect(t.receiver.port)
        assert (await again.command(b"EHLO c.example")).startswith(b"250")
        assert (await again.command(plain("alice", "guess"))).startswith(b"535")
        assert (await again.command(plain("alice", "s3cret"))).startswith(b"235")
        again.close()
    assert rest.startswith(b"421 4.7.0 Too many failed authentication attempts")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("timeout", 0),
        ("data_timeout", -1),
        ("session_timeout", float("inf")),
        ("max_auth_failures", 0),
    ],
)
def test_deadlines_and_auth_limit_are_validated(option: str, value: float) -> None:
    """Zero, negative or infinite deadlines, and no AUTH attempts, are configuration errors."""
    with pytest.raises(ConfigError, match=option):
        SMTPConfig(**{option: value})  # type: ignore[arg-type]

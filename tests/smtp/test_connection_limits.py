"""How many connections the receiver holds at once: in all, and per peer address.

Real clients over loopback: raw sockets to read the first reply (the greeting or the 421), and
smtplib for a STARTTLS session, which must still count as one connection.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from framework import App, Email
from framework.exceptions import ConfigError
from framework.smtp.config import SMTPConfig
from framework.testing import TestApp

from .conftest import client_tls, in_thread


def limited_app(config: SMTPConfig) -> App:
    app = App("connection-limits", smtp=config)

    @app.on_email(["support@shop.example"])
    async def support(message: Email) -> None:
        pass

    return app


@asynccontextmanager
async def clients(port: int, count: int) -> AsyncIterator[list[bytes]]:
    """Open ``count`` connections one after another; yield each one's first reply line."""
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    replies: list[bytes] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            opened.append((reader, writer))
            replies.append(await asyncio.wait_for(reader.readline(), 5))
        yield replies
    finally:
        for _, writer in opened:
            writer.close()
        for _, writer in opened:
            await writer.wait_closed()


async def until_counted(t: TestApp, total: int) -> None:
    """Wait until the receiver has seen ``total`` connections open (closes are asynchronous)."""
    assert t.receiver is not None
    for _ in range(200):
        counts = t.receiver._handler.counts  # type: ignore[union-attr]
        if counts.total == total:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the receiver counts {counts.total} open, not {total}")


async def test_connections_past_the_per_address_limit_get_421_until_one_closes() -> None:
    """The third connection from one address (not exempt) is told 421 4.7.0 and closed; once
    one of the others ends, the address may connect again."""
    app = limited_app(SMTPConfig(max_connections_per_ip=2, limit_exempt=()))
    async with TestApp(app) as t:
        assert t.receiver is not None
        port = t.receiver.port
        async with clients(port, 2) as first:
            assert all(reply.startswith(b"220 ") for reply in first)
            async with clients(port, 1) as [third]:
                assert third.startswith(b"421 4.7.0")
        await until_counted(t, 0)
        async with clients(port, 2) as again:
            assert all(reply.startswith(b"220 ") for reply in again)


async def test_the_total_limit_holds_for_exempt_addresses_too() -> None:
    """Loopback is exempt from the per-address limit by default, not from max_connections."""
    app = limited_app(SMTPConfig(max_connections=3, max_connections_per_ip=1))
    async with TestApp(app) as t:
        assert t.receiver is not None
        async with clients(t.receiver.port, 4) as replies:
            assert [r[:3] for r in replies] == [b"220", b"220", b"220", b"421"]


async def test_loopback_is_exempt_from_the_per_address_limit_by_default() -> None:
    """With the defaults, more connections than max_connections_per_ip from loopback are fine."""
    config = SMTPConfig()
    app = limited_app(config)
    async with TestApp(app) as t:
        assert t.receiver is not None
        async with clients(t.receiver.port, config.max_connections_per_ip + 5) as replies:
            assert all(reply.startswith(b"220 ") for reply in replies)


async def test_a_starttls_session_counts_once(tls_files: tuple[Path, Path]) -> None:
    """STARTTLS makes the connection anew inside aiosmtpd; it is still one connection, and
    its end frees its place."""
    cert, key = tls_files
    config = SMTPConfig(tls_cert=cert, tls_key=key, max_connections_per_ip=1, limit_exempt=())
    app = limited_app(config)
    async with TestApp(app) as t:
        assert t.receiver is not None

        def upgrade(client: smtplib.SMTP) -> int:
            client.starttls(context=client_tls(cert))
            return int(client.noop()[0])

        assert await in_thread(t.receiver.port, upgrade) == 250
        await until_counted(t, 0)
        assert await in_thread(t.receiver.port, upgrade) == 250


def test_per_address_keys_group_ipv6_by_its_64_and_skip_exempt_ranges() -> None:
    config = SMTPConfig(limit_exempt=["10.0.0.0/8"])
    assert config.limit_key("192.0.2.7") == "192.0.2.7"
    assert config.limit_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert config.limit_key("2001:db8:1:2::5") == config.limit_key("2001:db8:1:2:ffff::1")
    assert config.limit_key("2001:db8:1:2::5") == "2001:db8:1:2::/64"
    assert config.limit_key("2001:db8:1:3::5") != config.limit_key("2001:db8:1:2::5")
    assert config.limit_key("10.1.2.3") is None
    assert config.limit_key("/run/smtp.sock") is None
    assert SMTPConfig().limit_key("127.0.0.1") is None
    assert SMTPConfig().limit_key("::1") is None


@pytest.mark.parametrize("name", ["max_connections", "max_connections_per_ip"])
def test_limits_below_one_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be at least 1"):
        SMTPConfig(**{name: 0})  # type: ignore[arg-type]


def test_a_bad_exempt_range_is_refused_naming_the_option() -> None:
    with pytest.raises(ConfigError, match="limit_exempt: 'nope' is not an IP address"):
        SMTPConfig(limit_exempt=["nope"])

"""The client behind proxies: X-Forwarded-For is read only from trusted peers, from the right."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from framework import App, DeclarationError
from framework.gateway import Gateway, Throttle, TrustedProxies
from tests.gateway.helpers import FakeClock

# --8<-- [start:proxies]
app = App("behind-a-proxy", trusted_proxies=["10.0.0.0/8", "2001:db8:ffff::/48"])


@app.route("/search", throttle=Throttle(rate=1, burst=1, per="client"))
async def search(request: Request) -> dict[str, Any]:
    """One search per second per client, the client as the proxy saw it."""
    assert request.client is not None
    return {"client": request.client.host}


# --8<-- [end:proxies]


def peer(ip: str, gateway: Gateway | None = None) -> httpx.AsyncClient:
    """A client whose socket peer is ``ip``."""
    transport = httpx.ASGITransport(
        app=gateway or Gateway(app.registry, app.events, clock=FakeClock()), client=(ip, 4711)
    )
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def seen(ip: str, forwarded: str | list[str] | None) -> str:
    """Return the client address the handler sees for a request from ``ip``."""
    values = [forwarded] if isinstance(forwarded, str) else forwarded or []
    headers = [(b"X-Forwarded-For", value.encode("latin-1")) for value in values]
    async with peer(ip) as c:
        answer = await c.get("/search", headers=headers)
    assert answer.status_code == 200, answer.text
    client: str = answer.json()["client"]
    return client


async def test_trusted_proxy_forwards_the_client() -> None:
    """From a trusted proxy, the address it appended is the client."""
    assert await seen("10.0.0.7", "198.51.100.4") == "198.51.100.4"


async def test_untrusted_peer_cannot_spoof_its_address() -> None:
    """A client connecting directly keeps its own address, whatever X-Forwarded-For says."""
    assert await seen("203.0.113.9", "198.51.100.4") == "203.0.113.9"
    assert await seen("203.0.113.9", "10.0.0.1") == "203.0.113.9"


async def test_spoofed_hops_left_of_the_real_client_are_ignored() -> None:
    """A client prepending fake hops is found by its rightmost untrusted address."""
    assert await seen("10.0.0.7", "1.1.1.1, 8.8.8.8, 198.51.100.4") == "198.51.100.4"


async def test_chains_of_trusted_proxies_are_walked() -> None:
    """Hops in trusted ranges are skipped, however many, across repeated headers."""
    chain = ["6.6.6.6, 198.51.100.4", "10.1.1.1", "10.2.2.2"]
    assert await seen("10.0.0.7", chain) == "198.51.100.4"


async def test_every_hop_trusted_gives_the_leftmost() -> None:
    """When every hop is a trusted proxy, the first of them is the client."""
    assert await seen("10.0.0.7", "10.9.9.9, 10.1.1.1") == "10.9.9.9"


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("198.51.100.4, unknown", "10.0.0.7"),  # the proxy could not tell: trust stops there
        ("garbage", "10.0.0.7"),
        ("", "10.0.0.7"),
        ("198.51.100.4,,", "10.0.0.7"),
        ("unknown, 198.51.100.4", "198.51.100.4"),  # garbage left of the client is never read
        ("198.51.100.4:5555", "198.51.100.4"),
        ("[2001:db8::1]:5555", "2001:db8::1"),
        ("::ffff:198.51.100.4", "198.51.100.4"),
        ("198.51.100.4\u00e9", "10.0.0.7"),
    ],
)
async def test_malformed_hops_never_name_a_client(forwarded: str, client: str) -> None:
    """A hop that is not an address ends the walk at the last trusted proxy."""
    assert await seen("10.0.0.7", forwarded) == client


async def test_ipv6_proxy_range_is_trusted() -> None:
    """A trusted IPv6 range works like an IPv4 one."""
    assert await seen("2001:db8:ffff::2", "198.51.100.4") == "198.51.100.4"


async def test_throttle_counts_the_forwarded_client_not_the_proxy() -> None:
    """Two clients behind one proxy have their own buckets; a spoof does not buy a new one."""
    gateway = Gateway(app.registry, app.events, clock=FakeClock())
    async with peer("10.0.0.7", gateway) as proxy:

        async def status(forwarded: str) -> int:
            answer = await proxy.get("/search", headers={"X-Forwarded-For": forwarded})
            return answer.status_code

        codes = [
            await status("198.51.100.4"),
            await status("198.51.100.4"),
            await status("198.51.100.5"),
            await status("9.9.9.9, 198.51.100.4"),  # spoofed hop in front of the real client
        ]
    assert codes == [200, 429, 200, 429]


async def test_without_trusted_proxies_the_header_is_ignored() -> None:
    """By default X-Forwarded-For is never believed, even from a private address."""
    plain = App("plain")

    @plain.route("/who")
    async def who(request: Request) -> str:
        assert request.client is not None
        return request.client.host

    transport = httpx.ASGITransport(
        app=Gateway(plain.registry, plain.events), client=("10.0.0.7", 1)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        answer = await c.get("/who", headers={"X-Forwarded-For": "198.51.100.4"})
    assert answer.text == "10.0.0.7"


async def test_error_log_names_the_forwarded_client(caplog: pytest.LogCaptureFixture) -> None:
    """The gateway's error log carries the real client, not the proxy."""
    failing = App("failing", trusted_proxies=["10.0.0.0/8"])

    @failing.route("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(
        app=Gateway(failing.registry, failing.events), client=("10.0.0.7", 1)
    )
    with caplog.at_level(logging.ERROR, logger="framework.gateway"):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            answer = await c.get("/boom", headers={"X-Forwarded-For": "198.51.100.4"})
    assert answer.status_code == 500
    assert [r.fields["client"] for r in caplog.records] == ["198.51.100.4"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("ranges", ["10.0.0.0/8", ["10.0.0.0/33"], ["proxy.internal"]])
def test_bad_proxy_ranges_fail_when_the_app_is_made(ranges: Any) -> None:
    """A range that is not a CIDR (or one string instead of a list) fails at import."""
    with pytest.raises(DeclarationError, match="trusted_proxies"):
        App("bad", trusted_proxies=ranges)


def test_client_of_a_peer_without_address_is_the_peer() -> None:
    """A peer that is not an IP address (a Unix socket's) is never a trusted proxy."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client("", [b"198.51.100.4"]) == ""
    assert proxies.client("/run/app.sock", [b"198.51.100.4"]) == "/run/app.sock"

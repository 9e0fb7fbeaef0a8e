"""The client's address behind reverse proxies: ``X-Forwarded-For``, read only from trusted peers.

``X-Forwarded-For`` is written by whoever sends the request, so the gateway believes it only as
far as the proxies it was told to trust. It reads the header from the right, where the nearest
proxy appended the address it saw, skipping every hop in a trusted range: the first address that
is not a trusted proxy is the client. An address further left was written by the client itself
and is never believed. A request whose socket peer is not a trusted proxy keeps that peer as its
client, whatever its headers say.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.types import Scope

from framework.exceptions import DeclarationError

__all__ = ["TrustedProxies", "parse_address"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(value: str) -> Address | None:
    """Return the IP address in ``value``, or None when it holds none.

    Accepts a bare address (``192.0.2.1``, ``2001:db8::1``) and the forms some proxies write
    with a port (``192.0.2.1:4711``, ``[2001:db8::1]:4711``). An IPv4-mapped IPv6 address
    (``::ffff:192.0.2.1``, as dual-stack sockets report IPv4 peers) is returned as IPv4.
    """
    text = value.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The reverse proxies whose ``X-Forwarded-For`` the gateway believes.

    Args:
        ranges: CIDR ranges (``"10.0.0.0/8"``, ``"2001:db8::/32"``; one address is a range
            of one) of the proxies in front of the gateway. List the proxies only, not the
            networks clients connect from: a hop in a trusted range is skipped as a proxy.

    Raises:
        DeclarationError: For a range that is not an IP address or CIDR range, or a single
            string where a list is expected.
    """

    __slots__ = ("networks",)

    def __init__(self, ranges: Sequence[str]) -> None:
        if isinstance(ranges, str):
            raise DeclarationError(
                f"trusted_proxies must be a list of CIDR ranges, not one string ({ranges!r})"
            )
        networks: list[Network] = []
        for cidr in ranges:
            try:
                networks.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
            except ValueError:
                raise DeclarationError(
                    f"trusted_proxies: {cidr!r} is not an IP address or CIDR range "
                    "(like '10.0.0.0/8' or '2001:db8::/32')"
                ) from None
        self.networks = tuple(networks)

    def trusts(self, address: Address) -> bool:
        """True if ``address`` is in one of the trusted ranges."""
        return any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: Iterable[bytes]) -> str:
        """Return the client's address for a request from socket ``peer``.

        Args:
            peer: The socket peer's address, as the ASGI server reports it.
            forwarded_for: The values of every ``X-Forwarded-For`` header, in order.

        Returns:
            ``peer`` unless it is a trusted proxy; else the rightmost forwarded address that is
            not a trusted proxy, or, when every hop is trusted, the leftmost one. A hop that is
            not an address (``unknown``, an obfuscated name) ends the walk: the last trusted
            proxy before it is the best-known client.
        """
        address = parse_address(peer)
        if address is None or not self.trusts(address):
            return peer
        hops = b",".join(forwarded_for).decode("latin-1").split(",")
        client = address
        for hop in reversed(hops):
            found = parse_address(hop)
            if found is None:
                break
            client = found
            if not self.trusts(found):
                break
        return str(client)

    def resolve(self, scope: Scope) -> None:
        """Set the scope's ``client`` to the real client, for throttles, logs and handlers.

        The port becomes 0 when the client was read from ``X-Forwarded-For``, as uvicorn's proxy
        support does, since the client's own port is not forwarded.
        """
        peer = scope.get("client")
        if not peer:
            return
        forwarded = [v for k, v in scope["headers"] if k.lower() == b"x-forwarded-for"]
        if not forwarded:
            return
        client = self.client(str(peer[0]), forwarded)
        if client != peer[0]:
            scope["client"] = (client, 0)

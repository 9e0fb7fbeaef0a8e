"""DNS blocklists (RFC 5782): a client whose address a zone lists is refused at connect."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from framework.exceptions import ConfigError
from framework.smtp.scanners._dns import Resolver, _dns, current_resolver

if TYPE_CHECKING:
    from framework.smtp.parsing import Envelope

__all__ = ["DNSBL", "dnsbl"]


class DNSBL:
    """A connect-time check: which of ``zones`` lists a client's address (see ``dnsbl``)."""

    __name__ = "dnsbl"
    checks: tuple[str, ...] = ()

    def __init__(self, zones: Sequence[str], *, resolver: Resolver | None, timeout: float) -> None:
        if isinstance(zones, str) or not zones:
            raise ConfigError("dnsbl(zones) takes a list of zones, like ['zen.spamhaus.org']")
        dns = _dns()
        self.zones = tuple(dns.name.from_text(zone) for zone in zones)
        self.resolver = resolver
        self.timeout = timeout

    async def __call__(self, raw: bytes, envelope: Envelope) -> Mapping[str, str]:
        """No verdict at DATA: the receiver asks ``listed`` when the client connects."""
        return {}

    def __repr__(self) -> str:
        return f"dnsbl({[z.to_text(omit_final_dot=True) for z in self.zones]})"

    async def listed(self, address: str) -> str | None:
        """The first zone listing ``address`` (an IPv4 or IPv6 address), else None.

        A zone lists an address when ``<reversed address>.<zone>`` has an A record in
        127.0.0.0/8 (RFC 5782 2.1); an answer outside it is a zone's error, not a listing.

        Raises:
            TimeoutError: When the lookups took longer than the timeout.
            dns.exception.DNSException: When a lookup failed (SERVFAIL, no server answered).
        """
        dns = _dns()
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return None  # a Unix-socket peer has no address to look up
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        reverse = dns.reversename.from_address(str(ip))
        origin = (
            dns.reversename.ipv4_reverse_domain
            if ip.version == 4
            else dns.reversename.ipv6_reverse_domain
        )
        labels = reverse.relativize(origin)
        resolver = (self.resolver or current_resolver()).asyncio()
        found: dict[int, bool] = {}

        async def ask(index: int, zone: Any) -> None:
            try:
                answer = await resolver.resolve(labels.concatenate(zone), "A")
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                found[index] = False
                return
            found[index] = any(ipaddress.ip_address(r.address) in _LISTED for r in answer)

        with anyio.fail_after(self.timeout):
            async with anyio.create_task_group() as group:
                for index, zone in enumerate(self.zones):
                    group.start_soon(ask, index, zone)
        for index, zone in enumerate(self.zones):
            if found.get(index):
                return str(zone.to_text(omit_final_dot=True))
        return None


_LISTED = ipaddress.ip_network("127.0.0.0/8")


def dnsbl(zones: Sequence[str], *, resolver: Resolver | None = None, timeout: float = 5.0) -> DNSBL:
    """Refuse clients listed by any of ``zones`` (DNS blocklists) when they connect.

    Given in ``SMTPConfig(scanners=[...])``, it runs when a client connects, before the
    greeting: a listed client gets ``554 5.7.1`` and is disconnected; the zone that listed it is
    logged (``mail.connection_refused``), never told to the client. When the lookups fail or
    time out the client gets ``421 4.7.0`` (try again later): a mail is never accepted because
    a blocklist could not be asked. The zones are asked at the same time.

    Args:
        zones: Blocklist zones, like ``["zen.spamhaus.org"]``.
        resolver: The DNS resolver (default: the receiver's, from ``SMTPConfig.dns_*``).
        timeout: Seconds for all the zones' answers.

    Raises:
        ConfigError: For an empty list or one string instead of a list.
    """
    return DNSBL(zones, resolver=resolver, timeout=timeout)

"""One resolver setting for every DNS-based check (SPF, DKIM, DMARC, DNSBL), on dnspython.

The receiver makes its ``SMTPConfig``'s resolver the current one while it scans a mail or checks
a client, so a test points every check at a DNS server on loopback by setting ``dns_servers``
and ``dns_port`` once. The protocol libraries (pyspf, dkimpy, authheaders) take a lookup
function or call a module-level one; the adapters here give each of them this resolver.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from framework.exceptions import ConfigError, MissingDependencyError

__all__ = ["Resolver", "current_resolver", "using"]

DEFAULT_TIMEOUT = 5.0


def _dns() -> Any:
    try:
        import dns.asyncresolver
        import dns.resolver
    except ImportError:
        raise MissingDependencyError(
            "the mail checks need dnspython: pip install 'framework[mail-security]'"
        ) from None
    return dns


@dataclass(frozen=True, slots=True)
class Resolver:
    """Where DNS questions go, and how long each may take.

    Args:
        nameservers: Server addresses (empty: the system's, from ``/etc/resolv.conf``).
        port: Their port.
        timeout: Seconds for one lookup, retries included (dnspython's ``lifetime``).
    """

    nameservers: Sequence[str] = ()
    port: int = 53
    timeout: float = DEFAULT_TIMEOUT
    _sync: Any = field(init=False, repr=False, compare=False, default=None)
    _async: Any = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if isinstance(self.nameservers, str):
            raise ConfigError("the resolver's nameservers must be a list of addresses")
        object.__setattr__(self, "nameservers", tuple(self.nameservers))
        if not 0 < self.port < 65536:
            raise ConfigError(f"the resolver's port {self.port} is not a port (1-65535)")
        if self.timeout <= 0:
            raise ConfigError(f"the resolver's timeout must be positive, not {self.timeout}")

    def _configure(self, resolver: Any) -> Any:
        if self.nameservers:
            resolver.nameservers = list(self.nameservers)
        resolver.port = self.port
        resolver.timeout = self.timeout
        resolver.lifetime = self.timeout
        return resolver

    def blocking(self) -> Any:
        """A ``dns.resolver.Resolver`` (for libraries that block: run them in a thread)."""
        if self._sync is None:
            made = self._configure(_dns().resolver.Resolver(configure=not self.nameservers))
            object.__setattr__(self, "_sync", made)
        return self._sync

    def asyncio(self) -> Any:
        """A ``dns.asyncresolver.Resolver``, for lookups on the event loop."""
        if self._async is None:
            made = self._configure(_dns().asyncresolver.Resolver(configure=not self.nameservers))
            object.__setattr__(self, "_async", made)
        return self._async

    def txt(self, name: str) -> list[bytes]:
        """The TXT records at ``name``, each one's strings joined; [] for none (blocking).

        Raises:
            dns.exception.DNSException: When the lookup itself fails (a timeout, SERVFAIL).
        """
        dns = _dns()
        try:
            answer = self.blocking().resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return [b"".join(rdata.strings) for rdata in answer]


_current: ContextVar[Resolver | None] = ContextVar("framework_resolver", default=None)
_SYSTEM = Resolver()


def current_resolver() -> Resolver:
    """The resolver of the receiver scanning in this task, else the system's."""
    return _current.get() or _SYSTEM


@contextmanager
def using(resolver: Resolver) -> Iterator[None]:
    """Make ``resolver`` the current one inside the block (and the threads it starts)."""
    token = _current.set(resolver)
    try:
        yield
    finally:
        _current.reset(token)


# --- pyspf: its lookups go through the module-level ``spf.DNSLookup`` ------------------------


def _spf_lookup(name: str, qtype: str, strict: bool = True, timeout: float = 30) -> list[Any]:
    """pyspf's ``DNSLookup``, on the current resolver: ``[((name, type), value), ...]``.

    The answer's shape is pyspf's own ``DNSLookup_dnspython``'s; only the resolver differs.
    """
    import spf

    dns = _dns()
    resolver = _current.get()
    if resolver is None:  # not called by our scanner: pyspf's own behaviour
        return list(_original_spf_lookup(name, qtype, strict, timeout))
    found: list[Any] = []
    try:
        answer = resolver.blocking().resolve(name, qtype, lifetime=min(timeout, resolver.timeout))
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        return found
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise spf.TempError(f"DNS {exc}") from None
    for rdata in answer:
        if qtype in ("A", "AAAA"):
            found.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            found.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif qtype == "PTR":
            found.append(((name, qtype), rdata.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            found.append(((name, qtype), rdata.strings))
    return found


_original_spf_lookup: Any = None


def install_spf_lookup() -> Any:
    """Route pyspf's lookups through ``_spf_lookup`` (once); return the ``spf`` module.

    Outside our scanners (no current resolver) pyspf behaves exactly as before.

    Raises:
        MissingDependencyError: If pyspf is not installed.
    """
    global _original_spf_lookup
    try:
        import spf
    except ImportError:
        raise MissingDependencyError(
            "SPF checks need pyspf: pip install 'framework[mail-security]'"
        ) from None
    if _original_spf_lookup is None:
        _original_spf_lookup = spf.DNSLookup
        spf.DNSLookup = _spf_lookup
    return spf

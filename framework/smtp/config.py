"""How the SMTP receiver and the outbound relay are configured: ``SMTPConfig``, ``RelayConfig``.

Both are plain frozen values given to ``App(..., smtp=..., mail_relay=...)`` and checked when
they are built, so a bad CIDR range or a missing certificate fails at import, not on the first
connection. Secrets (relay password, AUTH credentials) are kept out of ``repr``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from framework.exceptions import ConfigError
from framework.smtp.scanners._dns import DEFAULT_TIMEOUT as DEFAULT_DNS_TIMEOUT
from framework.smtp.scanners._dns import Resolver
from framework.smtp.scanners._dnsbl import DNSBL
from framework.smtp.scanning import Scanner, Verdicts, check_actions, first_action

__all__ = [
    "DEFAULT_LINE_LENGTH",
    "DEFAULT_MAX_RECIPIENTS",
    "DEFAULT_MAX_SIZE",
    "FILE_KEYS",
    "Authenticator",
    "DKIMSigning",
    "RelayConfig",
    "SMTPConfig",
    "SMTPTable",
]

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
# RFC 5321 4.5.3.1.8 asks servers to accept at least 100 recipients per message.
DEFAULT_MAX_RECIPIENTS = 100
# RFC 5321 4.5.3.1.6: 998 octets of text + CRLF, plus one for the transparent dot.
DEFAULT_LINE_LENGTH = 1001

Authenticator = Callable[[str, str], bool]
"""Decides ``(username, password) -> accepted``; called on the event loop, so keep it quick."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(name: str, ranges: Sequence[str]) -> tuple[Network, ...]:
    if isinstance(ranges, str):
        raise ConfigError(f"SMTPConfig.{name} must be a list of CIDR ranges, not one string")
    networks = []
    for cidr in ranges:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ConfigError(
                f"SMTPConfig.{name}: {cidr!r} is not an IP address or CIDR range "
                "(like '192.0.2.0/24' or '2001:db8::/32')"
            ) from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class SMTPConfig:
    """The SMTP receiver's limits, IP rules, TLS and AUTH.

    IP rules are checked when a client connects, before the greeting: a refused peer gets
    ``554 5.7.1`` and the connection is closed. Precedence: ``block`` wins over ``allow``; when
    ``allow`` is not empty, any address outside it is refused too; with neither, everyone may
    connect (receipt rules still refuse unknown recipients, so this is never an open relay).

    Args:
        max_size: The largest message in bytes, advertised with ``SIZE`` (552 above it).
        max_recipients: Recipients per message; the next ``RCPT`` gets ``452 4.5.3``.
        max_line_length: The longest line of a command or of the message, in bytes with CRLF
            (``500`` above it, as aiosmtpd answers; RFC 5321 asks for at least 1001).
        allow: CIDR ranges that may connect (empty: any address not blocked).
        block: CIDR ranges that may never connect.
        hostname: The name in the greeting and EHLO answer (default: this host's FQDN).
        tls_cert: A PEM certificate file; with ``tls_key``, offers STARTTLS.
        tls_key: The certificate's PEM private key file.
        require_tls: Refuse mail transactions until the client has issued STARTTLS.
        auth: ``{username: password}`` or a callable ``(username, password) -> bool``; offers
            ``AUTH PLAIN LOGIN`` (only after STARTTLS unless ``auth_require_tls`` is False).
        auth_required: Refuse mail from clients that have not authenticated (530).
        auth_require_tls: Offer AUTH only over TLS, so passwords never cross in clear text.
        timeout: Seconds a client has for each command: from one command to the end of the
            next valid command line (aiosmtpd's timer, reset by a whole valid command, never
            by a byte; a line dripped byte by byte is cut off when it runs out).
        data_timeout: Seconds for the whole message after ``DATA``, from the command to the
            final dot, however steadily the bytes arrive.
        session_timeout: Seconds a connection may last in all: then ``421 4.4.2`` and close,
            so a client that keeps sending valid commands (``NOOP``) cannot hold it forever.
        max_auth_failures: Failed ``AUTH`` attempts (wrong credentials) one connection may
            make; the last gets ``535`` then ``421 4.7.0`` and the connection is closed.
        max_connections: Connections open at once, from anyone; the next is answered
            ``421 4.7.0`` instead of the greeting and closed, until one ends.
        max_connections_per_ip: Connections open at once from one address (an IPv6 peer
            counts by its /64, which one host may hold whole); the next gets ``421 4.7.0``.
        limit_exempt: CIDR ranges ``max_connections_per_ip`` does not apply to (default
            loopback: a local relay or test client); ``max_connections`` still does.
        scanners: Async callables run on each mail at DATA, in order, giving verdicts
            (``spam``, ``virus``, ``spf``, ``dkim``, ``dmarc``); the shipped ones are in
            ``framework.smtp.scanners`` (a ``dnsbl(...)`` among them runs at connect instead).
        reject_on: ``{check: [verdict, ...]}``: refuse a mail with such a verdict with
            ``550 5.7.1`` (its sender is told; nothing is delivered). ``dmarc_policy`` takes
            policies instead: ``{"dmarc_policy": ["reject"]}`` honours the sender's DMARC.
        drop_on: ``{check: [verdict, ...]}``: accept such a mail with 250 but deliver it
            nowhere (the sender is not told, as SES's stop action on a verdict).
        dns_servers: The DNS servers every DNS-based check asks (SPF, DKIM, DMARC, DNSBL);
            empty: the system's (``/etc/resolv.conf``).
        dns_port: Their port.
        dns_timeout: Seconds for one DNS lookup.
    """

    max_size: int = DEFAULT_MAX_SIZE
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    max_line_length: int = DEFAULT_LINE_LENGTH
    allow: Sequence[str] = ()
    block: Sequence[str] = ()
    hostname: str | None = None
    tls_cert: str | Path | None = None
    tls_key: str | Path | None = None
    require_tls: bool = False
    auth: Mapping[str, str] | Authenticator | None = field(default=None, repr=False)
    auth_required: bool = False
    auth_require_tls: bool = True
    timeout: float = 300.0
    data_timeout: float = 600.0
    session_timeout: float = 1800.0
    max_auth_failures: int = 3
    max_connections: int = 1000
    max_connections_per_ip: int = 50
    limit_exempt: Sequence[str] = ("127.0.0.0/8", "::1/128")
    scanners: Sequence[Scanner] = ()
    reject_on: Mapping[str, Sequence[str]] = field(default_factory=dict)
    drop_on: Mapping[str, Sequence[str]] = field(default_factory=dict)
    dns_servers: Sequence[str] = ()
    dns_port: int = 53
    dns_timeout: float = DEFAULT_DNS_TIMEOUT
    allowed: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    blocked: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    exempt: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    rejecting: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    dropping: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    resolver: Resolver = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ConfigError(f"SMTPConfig.max_size must be at least 1 byte, not {self.max_size}")
        if self.max_recipients < 1:
            raise ConfigError(
                f"SMTPConfig.max_recipients must be at least 1, not {self.max_recipients}"
            )
        if self.max_line_length < 80:
            raise ConfigError(
                f"SMTPConfig.max_line_length must be at least 80 bytes (RFC 5321 asks for 1001), "
                f"not {self.max_line_length}"
            )
        for name in ("timeout", "data_timeout", "session_timeout"):
            seconds = getattr(self, name)
            if not seconds > 0 or seconds == float("inf"):
                raise ConfigError(f"SMTPConfig.{name} must be a positive number of seconds")
        if self.max_auth_failures < 1:
            raise ConfigError(
                f"SMTPConfig.max_auth_failures must be at least 1, not {self.max_auth_failures}"
            )
        for name in ("max_connections", "max_connections_per_ip"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"SMTPConfig.{name} must be at least 1, not {getattr(self, name)}"
                )
        try:
            resolver = Resolver(tuple(self.dns_servers), self.dns_port, self.dns_timeout)
        except ConfigError as exc:
            raise ConfigError(f"SMTPConfig.dns_*: {exc}") from None
        object.__setattr__(self, "resolver", resolver)
        object.__setattr__(self, "allowed", _networks("allow", self.allow))
        object.__setattr__(self, "blocked", _networks("block", self.block))
        object.__setattr__(self, "exempt", _networks("limit_exempt", self.limit_exempt))
        try:
            object.__setattr__(self, "rejecting", check_actions("reject_on", self.reject_on))
            object.__setattr__(self, "dropping", check_actions("drop_on", self.drop_on))
        except ValueError as exc:
            raise ConfigError(f"SMTPConfig.{exc}") from None
        if (self.reject_on or self.drop_on) and not self.scanners:
            raise ConfigError(
                "SMTPConfig.reject_on and drop_on act on verdicts: give scanners=[...] too"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("SMTPConfig: STARTTLS needs both tls_cert and tls_key")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"SMTPConfig.{name}: no file at {path}")
        if self.require_tls and self.tls_cert is None:
            raise ConfigError("SMTPConfig.require_tls needs tls_cert and tls_key")
        if self.auth_required and self.auth is None:
            raise ConfigError("SMTPConfig.auth_required needs auth={user: password} or a callable")
        if self.auth is not None and self.auth_require_tls and self.tls_cert is None:
            raise ConfigError(
                "SMTPConfig.auth is offered only after STARTTLS: give tls_cert and tls_key, "
                "or auth_require_tls=False on a trusted network"
            )

    def action_on(self, verdicts: Verdicts) -> tuple[str, str] | None:
        """``("reject"|"drop", "check=VERDICT")`` for the first verdict acted on, else None."""
        return first_action(self.rejecting, self.dropping, verdicts)

    @property
    def blocklists(self) -> tuple[DNSBL, ...]:
        """The ``dnsbl(...)`` checks among ``scanners``: they run when a client connects."""
        return tuple(s for s in self.scanners if isinstance(s, DNSBL))

    @property
    def content_scanners(self) -> tuple[Scanner, ...]:
        """The ``scanners`` run on each mail at DATA (all but the blocklists), in order."""
        return tuple(s for s in self.scanners if not isinstance(s, DNSBL))

    def allows(self, address: str) -> bool:
        """True if a peer at ``address`` may connect: not blocked, and allowed if a list exists."""
        ip = _ip(address)
        if ip is None:
            # A peer without an IP address (a Unix socket) has no range to match: only an
            # unrestricted receiver accepts it.
            return not self.allowed and not self.blocked
        if any(ip in net for net in self.blocked):
            return False
        return not self.allowed or any(ip in net for net in self.allowed)

    def limit_key(self, address: str) -> str | None:
        """What ``max_connections_per_ip`` counts a peer at ``address`` under (its address, an
        IPv6 one's /64), or None for a peer exempt from it (``limit_exempt``, no IP address)."""
        ip = _ip(address)
        if ip is None or any(ip in net for net in self.exempt):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's IP address ('::ffff:192.0.2.1' as the IPv4 one it is), or None if not one."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # the IPv4 peer on a dual-stack socket
    return ip


FILE_KEYS: dict[str, tuple[type, ...]] = {
    "max_size": (int,),
    "max_recipients": (int,),
    "max_line_length": (int,),
    "allow": (list,),
    "block": (list,),
    "hostname": (str,),
    "tls_cert": (str,),
    "tls_key": (str,),
    "require_tls": (bool,),
    "timeout": (int, float),
    "data_timeout": (int, float),
    "session_timeout": (int, float),
    "max_connections": (int,),
    "max_connections_per_ip": (int,),
    "limit_exempt": (list,),
    "max_auth_failures": (int,),
    "dns_servers": (list,),
    "dns_port": (int,),
    "dns_timeout": (int, float),
}
"""The ``SMTPConfig`` options ``[tool.framework.smtp]`` may set, and the TOML types they take."""

_TOML_NAMES = {int: "integer", float: "float", str: "string", list: "array", bool: "boolean"}
# Secrets and callables have no place in a committed file: these stay in code.
_CODE_ONLY = ("auth", "auth_required", "auth_require_tls", "scanners", "reject_on", "drop_on")


@dataclass(frozen=True, slots=True)
class SMTPTable:
    """A ``[tool.framework.smtp]`` table whose keys and types were checked, not yet built.

    Building is kept apart from reading so that commands which never receive mail (``framework
    queues``, ``redrive``) do not fail on a certificate that only the server has.

    Attributes:
        values: The ``SMTPConfig`` keyword arguments, relative paths resolved.
        where: The table's name and file, for errors.
    """

    values: Mapping[str, object]
    where: str

    @classmethod
    def read(
        cls, table: Mapping[str, object], *, where: str, base: Path | None = None
    ) -> SMTPTable:
        """Check a table's keys and value types.

        Args:
            table: The table's keys and values, as TOML read them.
            where: The table's name and file, for errors.
            base: The folder relative ``tls_cert`` and ``tls_key`` paths start from (the
                pyproject's own); None leaves them as they are.

        Raises:
            ConfigError: For an unknown key, naming it and the keys allowed; for a key that
                only code may set (AUTH, scanners and their actions); for a value of the wrong
                TOML type.
        """
        values: dict[str, object] = {}
        for key, value in table.items():
            if key in _CODE_ONLY:
                raise ConfigError(
                    f"{where}: {key} cannot be set in pyproject.toml (credentials and callables "
                    f"stay in code): pass App(smtp=SMTPConfig({key}=...)), which replaces the "
                    "table"
                )
            if key not in FILE_KEYS:
                raise ConfigError(
                    f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(FILE_KEYS))})"
                )
            types = FILE_KEYS[key]
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                names = " or ".join(_TOML_NAMES[t] for t in types)
                raise ConfigError(f"{where}: {key} must be a TOML {names}, not {value!r}")
            if isinstance(value, list) and not all(isinstance(v, str) for v in value):
                what = "addresses" if key == "dns_servers" else "CIDR strings"
                raise ConfigError(f"{where}: {key} must be an array of {what}, not {value!r}")
            if key in ("tls_cert", "tls_key") and base is not None:
                value = base / str(value)
            values[key] = value
        return cls(values, where)

    def build(self) -> SMTPConfig:
        """Return the ``SMTPConfig``: the table's values over its defaults.

        Raises:
            ConfigError: For a value ``SMTPConfig`` refuses (a bad CIDR range, a missing
                certificate file), prefixed with the table's name.
        """
        try:
            return SMTPConfig(**self.values)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f"{self.where}: {exc}") from None


DKIM_HEADERS = (
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
)


@dataclass(frozen=True, slots=True)
class DKIMSigning:
    """How ``app.mail.send`` DKIM-signs mail it hands to an SMTP relay (dkimpy, RFC 6376).

    The private key is read from ``key_file`` or the environment variable ``key_env`` each
    time a mail is signed; it is never kept on this object, shown in ``repr`` or logged.
    Publish the public half as a TXT record at ``<selector>._domainkey.<domain>``. On AWS, SES
    signs the mail it sends (Easy DKIM) and this setting is not used.

    Args:
        domain: The signing domain (``d=``): the From domain, for DMARC alignment.
        selector: The key's selector (``s=``).
        key_file: A PEM RSA private key file (``rsa-sha256``; 2048 bits or more).
        key_env: An environment variable holding the PEM private key instead.
        headers: The header fields signed (those present in each mail).

    Raises:
        ConfigError: Unless exactly one of ``key_file`` and ``key_env`` is given and exists.
    """

    domain: str
    selector: str
    key_file: str | Path | None = None
    key_env: str | None = None
    headers: Sequence[str] = DKIM_HEADERS

    def __post_init__(self) -> None:
        if (self.key_file is None) == (self.key_env is None):
            raise ConfigError("DKIMSigning needs key_file=... or key_env=..., exactly one")
        if self.key_file is not None and not Path(self.key_file).is_file():
            raise ConfigError(f"DKIMSigning.key_file: no file at {self.key_file}")
        if self.key_env is not None and not os.environ.get(self.key_env):
            raise ConfigError(
                f"DKIMSigning.key_env: the environment variable {self.key_env} is unset"
            )
        if not self.domain or not self.selector:
            raise ConfigError("DKIMSigning needs a domain and a selector")

    def _key(self) -> bytes:
        if self.key_file is not None:
            return Path(self.key_file).read_bytes()
        value = os.environ.get(self.key_env or "")
        if not value:
            raise ConfigError(
                f"DKIMSigning.key_env: the environment variable {self.key_env} is unset"
            )
        return value.encode()

    def sign(self, message: bytes) -> bytes:
        """Return ``message`` (CRLF line endings) with its ``DKIM-Signature`` header first.

        Blocking (it reads the key): call it from a worker thread.

        Raises:
            ConfigError: When the key cannot be read or used (the key itself is not shown).
        """
        try:
            import dkim
        except ImportError:
            raise ConfigError(
                "DKIM signing needs dkimpy: pip install 'framework[mail-security]'"
            ) from None
        present = {
            line.split(b":", 1)[0].strip().lower()
            for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if line[:1] not in (b" ", b"\t") and b":" in line
        }
        include = [h.encode() for h in self.headers if h.lower().encode() in present]
        key = self._key()
        try:
            signature: bytes = dkim.sign(
                message,
                self.selector.encode(),
                self.domain.encode(),
                key,
                include_headers=include,
                canonicalize=(b"relaxed", b"relaxed"),
            )
        except Exception as exc:
            # dkimpy's messages never quote the key; its type is enough to act on.
            raise ConfigError(
                f"DKIM signing for {self.domain} failed: {type(exc).__name__}"
            ) from None
        return signature + message


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """An SMTP relay that ``app.mail.send`` hands mail to, through aiosmtplib.

    Args:
        host: The relay's host name or address.
        port: Its port (587 for submission with STARTTLS, 465 for implicit TLS, 25).
        username: The login, if the relay wants AUTH.
        password: The password (never shown in ``repr`` or logs).
        tls: ``"starttls"`` (upgrade after connecting; required), ``"tls"`` (implicit TLS from
            the first byte) or ``"none"`` (plain text: loopback and trusted networks only).
        timeout: Seconds for connecting and for each command.
        ca_file: A PEM bundle to verify the relay's certificate (default: the system's).
        verify: Verify the relay's certificate and host name.
        dkim: DKIM-sign each mail before handing it over (``DKIMSigning``); None: unsigned.
    """

    host: str
    port: int = 587
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: str = "starttls"
    timeout: float = 30.0
    ca_file: str | None = None
    verify: bool = True
    dkim: DKIMSigning | None = None

    def __post_init__(self) -> None:
        if self.tls not in ("starttls", "tls", "none"):
            raise ConfigError(
                f"RelayConfig.tls must be 'starttls', 'tls' or 'none', not {self.tls!r}"
            )
        if not 0 < self.port < 65536:
            raise ConfigError(f"RelayConfig.port {self.port} is not a TCP port (1-65535)")
        if (self.username is None) != (self.password is None):
            raise ConfigError("RelayConfig needs both username and password, or neither")

    @classmethod
    def from_url(cls, url: str) -> RelayConfig:
        """Read a relay from ``smtp://``, ``smtp+starttls://`` or ``smtps://user:pass@host:port``.

        ``smtp://`` is plain text, ``smtp+starttls://`` upgrades with STARTTLS and ``smtps://``
        is implicit TLS. Query options: ``timeout`` (seconds), ``ca_file``, ``verify=false``.

        Raises:
            ConfigError: For another scheme or a malformed URL.
        """
        parts = urlsplit(url)
        schemes = {"smtp": ("none", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}
        if parts.scheme not in schemes or not parts.hostname:
            raise ConfigError(
                "a mail relay URL looks like smtp+starttls://user:password@host:587 "
                "(schemes: smtp, smtp+starttls, smtps)"
            )
        tls, default_port = schemes[parts.scheme]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            port = parts.port or default_port
            timeout = float(query.get("timeout", 30.0))
        except ValueError:
            raise ConfigError("the mail relay URL has a bad port or timeout") from None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=tls,
            timeout=timeout,
            ca_file=query.get("ca_file"),
            verify=query.get("verify", "true").lower() not in ("0", "false", "no"),
        )

    @classmethod
    def from_env(cls, name: str = "FRAMEWORK_MAIL_RELAY") -> RelayConfig | None:
        """Read a relay URL from the environment variable ``name``; None if it is unset."""
        url = os.environ.get(name)
        return cls.from_url(url) if url else None

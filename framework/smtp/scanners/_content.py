"""Content scanners: viruses by ClamAV's clamd (clamdpy), spam by SpamAssassin's spamd (aiospamc).

Both daemons run beside the app (see the docs' "Inbound mail security" page). clamdpy speaks
clamd's ``INSTREAM`` over a blocking socket, so it runs in a worker thread; aiospamc speaks
spamd's protocol on the event loop.
"""

from __future__ import annotations

import io
import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from framework.exceptions import ConfigError, MissingDependencyError
from framework.logs import event
from framework.smtp.scanners._base import BuiltinScanner, in_thread
from framework.smtp.scanning import Findings, Verdict

if TYPE_CHECKING:
    from framework.smtp.parsing import Envelope

__all__ = ["clamav", "parse_address", "spamassassin"]

log = logging.getLogger("framework.smtp")

# clamd's own default StreamMaxLength; a longer mail is refused by clamd anyway.
CLAMD_MAX_SIZE = 25 * 1024 * 1024
# spamc's default: SpamAssassin is slow on big mail, and spam is small.
SPAMD_MAX_SIZE = 512 * 1024


def parse_address(address: str | Path, default_port: int) -> tuple[str, int] | Path:
    """Read ``host:port``, ``tcp://host:port``, ``unix:/path`` or ``/path`` (a Unix socket).

    Raises:
        ConfigError: For anything else.
    """
    if isinstance(address, Path):
        return address
    text = address.strip()
    if text.startswith("unix:"):
        return Path(text.removeprefix("unix:").removeprefix("//"))
    if text.startswith("/"):
        return Path(text)
    text = text.removeprefix("tcp://")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{address!r} is not a daemon address (host:port, tcp://host:port, unix:/path)"
        )
    return host, int(port)


def _closing(base: Any, family: int, target: Any) -> Any:
    """``base`` (a clamdpy client) whose connection attempts close their socket on failure
    (clamdpy's leave it open until garbage collection)."""

    class Closing(base):  # type: ignore[misc]
        def _acquire_socket(self) -> socket.socket:
            from clamdpy.exceptions import ConnectionError as ClamdConnectionError

            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(target)
            except OSError as exc:
                sock.close()
                raise ClamdConnectionError(f"cannot connect to clamd at {target}: {exc}") from None
            return sock

    return Closing


def clamav(
    address: str | Path = "127.0.0.1:3310",
    *,
    timeout: float = 30.0,
    max_size: int = CLAMD_MAX_SIZE,
) -> BuiltinScanner:
    """A scanner giving the ``virus`` verdict from ClamAV's daemon, clamd (``INSTREAM``).

    ``PASS`` when clamd finds nothing, ``FAIL`` when it finds something (the signature's name
    is logged as ``mail.virus_found``), ``PROCESSING_FAILED`` when clamd cannot be reached,
    answers an error, times out, or the mail is over ``max_size`` (it was not scanned).

    Args:
        address: clamd's ``TCPSocket`` (``host:port``) or ``LocalSocket`` (``unix:/path``).
        timeout: Seconds for the whole scan.
        max_size: The largest mail sent to clamd; keep it at most clamd's ``StreamMaxLength``.

    Raises:
        ConfigError: For a malformed address.
        MissingDependencyError: If clamdpy is not installed.
    """
    try:
        import clamdpy
    except ImportError:
        raise MissingDependencyError(
            "ClamAV scanning needs clamdpy: pip install 'framework[mail-security]'"
        ) from None
    where = parse_address(address, 3310)
    client: Any
    if isinstance(where, Path):
        client = _closing(clamdpy.ClamdUnixSocket, socket.AF_UNIX, str(where))(
            where, timeout=timeout, max_chunk_size=64 * 1024
        )
    else:
        client = _closing(
            clamdpy.ClamdNetworkSocket,
            socket.AF_INET6 if ":" in where[0] else socket.AF_INET,
            where,
        )(where[0], where[1], timeout=timeout, max_chunk_size=64 * 1024)

    async def check(raw: bytes, envelope: Envelope) -> Mapping[str, Verdict]:
        if len(raw) > max_size:
            event(log, logging.WARNING, "mail.scan_too_large", scanner="clamav", size=len(raw))
            return {"virus": Verdict.PROCESSING_FAILED}
        found = await in_thread(lambda: client.instream(io.BytesIO(raw)), timeout)
        if found.status == "FOUND":
            event(log, logging.INFO, "mail.virus_found", virus=found.reason, peer=envelope.peer)
            findings = Findings.current()
            if findings is not None:
                findings.details["virus"] = str(found.reason)
            return {"virus": Verdict.FAIL}
        if found.status == "OK":
            return {"virus": Verdict.PASS}
        raise RuntimeError(f"clamd: {found.reason}")

    return BuiltinScanner("clamav", ("virus",), check)


def spamassassin(
    address: str | Path = "127.0.0.1:783",
    *,
    timeout: float = 30.0,
    max_size: int = SPAMD_MAX_SIZE,
) -> BuiltinScanner:
    """A scanner giving the ``spam`` verdict from SpamAssassin's daemon, spamd (``CHECK``).

    ``FAIL`` when spamd's score reaches its ``required_score``, ``PASS`` below it, ``GRAY``
    for a mail over ``max_size`` (not sent, as spamc does), ``PROCESSING_FAILED`` when spamd
    cannot be reached, answers an error or times out. The score is logged.

    Args:
        address: spamd's ``host:port`` (``--listen``) or Unix socket (``unix:/path``).
        timeout: Seconds for the whole check.
        max_size: The largest mail sent to spamd.

    Raises:
        ConfigError: For a malformed address.
        MissingDependencyError: If aiospamc is not installed.
    """
    try:
        import aiospamc
    except ImportError:
        raise MissingDependencyError(
            "SpamAssassin scanning needs aiospamc: pip install 'framework[mail-security]'"
        ) from None
    where = parse_address(address, 783)
    target: dict[str, Any] = (
        {"socket_path": where} if isinstance(where, Path) else {"host": where[0], "port": where[1]}
    )
    limit = aiospamc.Timeout(total=timeout, connection=timeout, response=timeout)

    async def check(raw: bytes, envelope: Envelope) -> Mapping[str, Verdict]:
        if len(raw) > max_size:
            return {"spam": Verdict.GRAY}
        with anyio.fail_after(timeout):
            response = await aiospamc.check(raw, timeout=limit, **target)
        spam = response.headers["Spam"]
        event(log, logging.DEBUG, "mail.spam_score", score=spam.score, threshold=spam.threshold)
        findings = Findings.current()
        if findings is not None:
            findings.details["spam"] = f"score={spam.score} required={spam.threshold}"
        return {"spam": Verdict.FAIL if spam.value else Verdict.PASS}

    return BuiltinScanner("spamassassin", ("spam",), check)

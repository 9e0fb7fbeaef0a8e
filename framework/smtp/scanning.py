"""Scanning received mail, as SES does: verdicts that reach the handler, and actions on them.

A scanner is an async callable ``(raw, envelope) -> {check: verdict}`` for any of the checks
``spam``, ``virus``, ``spf``, ``dkim`` and ``dmarc``. The receiver runs the configured scanners
at ``DATA``, before the mail is enqueued: it can then reject the mail (``550 5.7.1``) or drop it
(``250`` but never delivered) on a verdict, and otherwise stores the verdicts beside the mail on
the queue, so the handler reads them as ``mail.verdicts``. DKIM verification ships here, on
dkimpy (``pip install 'framework[dkim]'``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from functools import partial
from typing import Any

import anyio

from framework.exceptions import MissingDependencyError
from framework.logs import event

__all__ = [
    "CHECKS",
    "Envelope",
    "Scanner",
    "Verdict",
    "Verdicts",
    "dkim_scanner",
    "first_action",
    "scan",
]

log = logging.getLogger("framework.smtp")


class Verdict(StrEnum):
    """A check's outcome, named as SES names them."""

    PASS = "PASS"
    FAIL = "FAIL"
    GRAY = "GRAY"  # could not decide (for DKIM: the mail is not signed)
    PROCESSING_FAILED = "PROCESSING_FAILED"  # the check itself failed: a timeout, a crash
    DISABLED = "DISABLED"  # no scanner gave this check a verdict


CHECKS = ("spam", "virus", "spf", "dkim", "dmarc")

Scanner = Callable[["bytes", "Envelope"], Awaitable[Mapping[str, "Verdict | str"]]]
"""An async callable ``(raw mail, envelope) -> {check: verdict}`` for some of ``CHECKS``."""


@dataclass(frozen=True, slots=True)
class Verdicts:
    """The verdict of each check on one received mail (``DISABLED`` where nothing scanned)."""

    spam: Verdict = Verdict.DISABLED
    virus: Verdict = Verdict.DISABLED
    spf: Verdict = Verdict.DISABLED
    dkim: Verdict = Verdict.DISABLED
    dmarc: Verdict = Verdict.DISABLED

    def to_header(self) -> str:
        """Render as ``spam=PASS;virus=PASS;...``, to travel beside the mail on its queue."""
        return ";".join(f"{f.name}={getattr(self, f.name).value}" for f in fields(self))

    @classmethod
    def from_header(cls, value: str) -> Verdicts:
        """Read ``to_header``'s form back; anything unreadable stays ``DISABLED``."""
        found: dict[str, Verdict] = {}
        for item in value.split(";"):
            name, _, verdict = item.partition("=")
            if name in CHECKS and verdict in Verdict.__members__:
                found[name] = Verdict(verdict)
        return cls(**found)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP transaction: who it said the mail was from and to, the peer's address, and the
    verdicts of the receiver's scanners (all ``DISABLED`` when none is configured)."""

    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    peer: str = ""
    verdicts: Verdicts = field(default_factory=Verdicts)


def check_actions(where: str, actions: Mapping[str, Any]) -> dict[str, frozenset[Verdict]]:
    """Validate ``{check: [verdict, ...]}``; return it with verdicts as ``Verdict`` sets.

    Raises:
        ValueError: For an unknown check or verdict, naming the known ones.
    """
    checked: dict[str, frozenset[Verdict]] = {}
    for check, verdicts in actions.items():
        if check not in CHECKS:
            raise ValueError(f"{where}: unknown check {check!r} (checks: {', '.join(CHECKS)})")
        values = [verdicts] if isinstance(verdicts, str) else list(verdicts)
        unknown = [v for v in values if v not in Verdict.__members__]
        if unknown:
            raise ValueError(
                f"{where}[{check!r}]: unknown verdict(s) {unknown} "
                f"(verdicts: {', '.join(Verdict.__members__)})"
            )
        checked[check] = frozenset(Verdict(v) for v in values)
    return checked


def first_action(
    rejecting: Mapping[str, frozenset[Verdict]],
    dropping: Mapping[str, frozenset[Verdict]],
    verdicts: Verdicts,
) -> tuple[str, str] | None:
    """``("reject"|"drop", "check=VERDICT")`` for the first verdict acted on, else None.

    Rejecting wins over dropping: a sender who can be told should be.
    """
    for action, table in (("reject", rejecting), ("drop", dropping)):
        for check, acted_on in table.items():
            verdict: Verdict = getattr(verdicts, check)
            if verdict in acted_on:
                return action, f"{check}={verdict.value}"
    return None


async def scan(scanners: tuple[Scanner, ...], raw: bytes, envelope: Envelope) -> Verdicts:
    """Run ``scanners`` in order on one mail; a later scanner's verdict on a check wins.

    A scanner that raises, or answers with something that is not a verdict, never loses the
    mail: the checks it answered for become ``PROCESSING_FAILED`` and the others stay as they are.
    """
    verdicts = Verdicts()
    for scanner in scanners:
        name = getattr(scanner, "__name__", type(scanner).__name__)
        try:
            found = dict(await scanner(raw, envelope))
        except Exception as exc:
            event(log, logging.WARNING, "mail.scan_failed", scanner=name, error=repr(exc))
            continue
        update: dict[str, Verdict] = {}
        for check, verdict in found.items():
            if check not in CHECKS:
                event(log, logging.WARNING, "mail.scan_unknown_check", scanner=name, check=check)
                continue
            valid = isinstance(verdict, str) and verdict in Verdict.__members__
            update[check] = Verdict(verdict) if valid else Verdict.PROCESSING_FAILED
        verdicts = replace(verdicts, **update)
    return verdicts


def _is_signed(raw: bytes) -> bool:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
    return head.startswith(b"dkim-signature:") or b"\ndkim-signature:" in head


def dkim_scanner(
    *, dnsfunc: Callable[..., bytes | None] | None = None, timeout: float = 5.0
) -> Scanner:
    """A scanner giving the ``dkim`` verdict of the mail's first DKIM signature (dkimpy).

    ``GRAY`` for a mail without a signature, ``PASS`` when it verifies, ``FAIL`` when it does
    not (a bad signature, a missing or malformed key), ``PROCESSING_FAILED`` when the key lookup
    itself raised. Verification runs in a worker thread, since dkimpy's DNS lookups block.

    Args:
        dnsfunc: Looks up a TXT record: ``(name: bytes, timeout=...) -> bytes | None``
            (default: dkimpy's, through dnspython). Tests pass a function returning a key.
        timeout: Seconds for each DNS lookup.

    Raises:
        MissingDependencyError: If dkimpy is not installed.
    """
    try:
        import dkim
        import dkim.dnsplug
    except ImportError:
        raise MissingDependencyError(
            "DKIM verification needs dkimpy: pip install 'framework[dkim]'"
        ) from None
    lookup = dnsfunc or dkim.dnsplug.get_txt
    dkim_log = logging.getLogger("framework.smtp.dkim")

    def verify(raw: bytes) -> Verdict:
        failures: list[BaseException] = []

        def guarded(name: bytes, timeout: float = timeout) -> bytes | None:
            try:
                return lookup(name, timeout=timeout)
            except Exception as exc:
                failures.append(exc)
                raise

        try:
            ok = dkim.verify(raw, logger=dkim_log, dnsfunc=guarded, timeout=timeout)
        except Exception:
            return Verdict.PROCESSING_FAILED
        if failures:
            return Verdict.PROCESSING_FAILED
        return Verdict.PASS if ok else Verdict.FAIL

    async def dkim_check(raw: bytes, envelope: Envelope) -> Mapping[str, Verdict]:
        if not _is_signed(raw):
            return {"dkim": Verdict.GRAY}
        return {"dkim": await anyio.to_thread.run_sync(partial(verify, raw))}

    return dkim_check

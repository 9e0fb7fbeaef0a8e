"""Scanning received mail, as SES does: verdicts that reach the handler, and actions on them.

A scanner is an async callable ``(raw, envelope) -> {check: verdict}`` for any of the checks
``spam``, ``virus``, ``spf``, ``dkim`` and ``dmarc``. The receiver runs the configured scanners
at ``DATA``, before the mail is enqueued: it can then reject the mail (``550 5.7.1``) or drop it
(``250`` but never delivered) on a verdict, and otherwise stores the verdicts beside the mail on
the queue, so the handler reads them as ``mail.verdicts``. The scanners that ship (SPF, DKIM,
DMARC, ClamAV, SpamAssassin, DNSBL) are in ``framework.smtp.scanners``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from framework.logs import event

__all__ = [
    "ACTION_KEYS",
    "CHECKS",
    "DMARC_POLICIES",
    "Envelope",
    "Findings",
    "ScanEvent",
    "ScanObserver",
    "Scanner",
    "Verdict",
    "Verdicts",
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
DMARC_POLICIES = ("none", "quarantine", "reject")
"""The sending domain's DMARC policy, as SES's ``dmarcPolicy`` names it (set on a DMARC FAIL)."""
ACTION_KEYS = (*CHECKS, "dmarc_policy")
"""What ``reject_on`` / ``drop_on`` may act on: each check's verdict, and the DMARC policy."""

Scanner = Callable[["bytes", "Envelope"], Awaitable[Mapping[str, "Verdict | str"]]]
"""An async callable ``(raw mail, envelope) -> {check: verdict}`` for some of ``CHECKS``.

A scanner may also answer ``dmarc_policy`` (``none``, ``quarantine``, ``reject``). One with a
``checks`` attribute (a tuple of check names, as the shipped scanners have) that raises gives
those checks ``PROCESSING_FAILED``: a scanner that is down never lets a mail through unscanned.
"""


@dataclass(frozen=True, slots=True)
class Verdicts:
    """The verdict of each check on one received mail (``DISABLED`` where nothing scanned).

    ``dmarc_policy`` is the sending domain's DMARC policy (``none``, ``quarantine`` or
    ``reject``) when the mail failed DMARC, as SES's ``dmarcPolicy``; None otherwise.
    """

    spam: Verdict = Verdict.DISABLED
    virus: Verdict = Verdict.DISABLED
    spf: Verdict = Verdict.DISABLED
    dkim: Verdict = Verdict.DISABLED
    dmarc: Verdict = Verdict.DISABLED
    dmarc_policy: str | None = None

    def to_header(self) -> str:
        """Render as ``spam=PASS;virus=PASS;...``, to travel beside the mail on its queue."""
        items = [f"{name}={getattr(self, name).value}" for name in CHECKS]
        if self.dmarc_policy is not None:
            items.append(f"dmarc_policy={self.dmarc_policy}")
        return ";".join(items)

    @classmethod
    def from_header(cls, value: str) -> Verdicts:
        """Read ``to_header``'s form back; anything unreadable stays ``DISABLED``."""
        found: dict[str, Any] = {}
        for item in value.split(";"):
            name, _, verdict = item.partition("=")
            if name in CHECKS and verdict in Verdict.__members__:
                found[name] = Verdict(verdict)
            elif name == "dmarc_policy" and verdict in DMARC_POLICIES:
                found[name] = verdict
        return cls(**found)


# Headers carrying the SMTP envelope beside the raw mail on the queue.
MAIL_FROM = "mail-from"
RCPT_TO = "mail-rcpt-to"
PEER = "mail-peer"
VERDICTS = "mail-verdicts"


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP transaction: who it said the mail was from and to, the peer's address, and the
    verdicts of the receiver's scanners (all ``DISABLED`` when none is configured)."""

    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    peer: str = ""
    verdicts: Verdicts = field(default_factory=Verdicts)


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """One mail scanner's run on one mail (or a DNSBL check on one client): how long, and
    whether it failed (raised or timed out, so its checks became ``PROCESSING_FAILED``)."""

    scanner: str
    seconds: float
    failed: bool = False


ScanObserver = Callable[[ScanEvent], None]
"""Told each ``ScanEvent`` (the events hub's list: the gateway's ``/metrics`` subscribes)."""


@dataclass(slots=True)
class Findings:
    """What the scanners of one mail found beyond verdicts, shared by them while it is scanned.

    The shipped scanners read it through ``Findings.current()``: DMARC reuses the SPF and DKIM
    results found before it, and the receiver writes ``results`` into the stored mail's
    ``Authentication-Results`` header (RFC 8601).

    Attributes:
        helo: The name the client gave in HELO/EHLO (SPF checks it for a bounce).
        results: ``authres`` results (spf, dkim, dmarc), in the order found.
        spf: The SPF result, for DMARC.
        dkim: The DKIM results, one per signature, for DMARC.
        details: ``{check: detail}`` for logs and headers (a virus's name, a spam score).
    """

    helo: str = ""
    results: list[Any] = field(default_factory=list)
    spf: Any = None
    dkim: list[Any] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def current() -> Findings | None:
        """The findings of the mail being scanned in this task, None outside ``scan``."""
        return _findings.get()


_findings: ContextVar[Findings | None] = ContextVar("framework_scan_findings", default=None)


def check_actions(where: str, actions: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Validate ``{check: [verdict, ...]}``; return it with the values as sets.

    ``dmarc_policy`` takes policies (``none``, ``quarantine``, ``reject``); every check takes
    verdicts (``PASS``, ``FAIL``, ``GRAY``, ``PROCESSING_FAILED``, ``DISABLED``).

    Raises:
        ValueError: For an unknown check or verdict, naming the known ones.
    """
    checked: dict[str, frozenset[str]] = {}
    for check, verdicts in actions.items():
        if check not in ACTION_KEYS:
            raise ValueError(f"{where}: unknown check {check!r} (checks: {', '.join(ACTION_KEYS)})")
        values = [verdicts] if isinstance(verdicts, str) else list(verdicts)
        known: Sequence[str] = (
            DMARC_POLICIES if check == "dmarc_policy" else tuple(Verdict.__members__)
        )
        unknown = [v for v in values if v not in known]
        if unknown:
            what = "policy" if check == "dmarc_policy" else "verdict"
            raise ValueError(
                f"{where}[{check!r}]: unknown {what}(s) {unknown} ({what}s: {', '.join(known)})"
            )
        checked[check] = frozenset(str(v) for v in values)
    return checked


def first_action(
    rejecting: Mapping[str, frozenset[str]],
    dropping: Mapping[str, frozenset[str]],
    verdicts: Verdicts,
) -> tuple[str, str] | None:
    """``("reject"|"drop", "check=VERDICT")`` for the first verdict acted on, else None.

    Rejecting wins over dropping: a sender who can be told should be.
    """
    for action, table in (("reject", rejecting), ("drop", dropping)):
        for check, acted_on in table.items():
            value: str | None = getattr(verdicts, check)
            if value is not None and value in acted_on:
                return action, f"{check}={value}"
    return None


def scanner_name(scanner: object) -> str:
    """The name a scanner is logged and measured by (its ``__name__``, else its type's)."""
    return str(getattr(scanner, "__name__", type(scanner).__name__))


async def scan(
    scanners: Iterable[Scanner],
    raw: bytes,
    envelope: Envelope,
    *,
    findings: Findings | None = None,
    observers: Sequence[ScanObserver] = (),
) -> Verdicts:
    """Run ``scanners`` in order on one mail; a later scanner's verdict on a check wins.

    A scanner that raises, or answers with something that is not a verdict, never loses the
    mail: the checks it declares (its ``checks`` attribute), or answered with junk, become
    ``PROCESSING_FAILED``; the others stay as they are.

    Args:
        scanners: The scanners, in order.
        raw: The mail as received.
        envelope: The SMTP transaction.
        findings: Shared with the scanners (default: a new one); read it afterwards for the
            ``Authentication-Results`` header.
        observers: Called with each scanner's run time (the gateway's ``/metrics``).
    """
    verdicts = Verdicts()
    token = _findings.set(findings if findings is not None else Findings())
    try:
        for scanner in scanners:
            name = scanner_name(scanner)
            started = time.perf_counter()
            failed = False
            try:
                found = dict(await scanner(raw, envelope))
            except Exception as exc:
                failed = True
                event(log, logging.WARNING, "mail.scan_failed", scanner=name, error=repr(exc))
                found = {c: Verdict.PROCESSING_FAILED for c in getattr(scanner, "checks", ())}
            finally:
                happened = ScanEvent(name, time.perf_counter() - started, failed)
                for observer in observers:
                    try:
                        observer(happened)
                    except Exception:  # an observer's bug must never change a mail's fate
                        log.exception("observer.failed", extra={"fields": {"scanner": name}})
            verdicts = replace(verdicts, **_checked(name, found))
    finally:
        _findings.reset(token)
    return verdicts


def _checked(name: str, found: Mapping[str, object]) -> dict[str, Any]:
    update: dict[str, Any] = {}
    for check, verdict in found.items():
        if check == "dmarc_policy":
            update[check] = verdict if verdict in DMARC_POLICIES else None
            continue
        if check not in CHECKS:
            event(log, logging.WARNING, "mail.scan_unknown_check", scanner=name, check=check)
            continue
        valid = isinstance(verdict, str) and verdict in Verdict.__members__
        update[check] = Verdict(verdict) if valid else Verdict.PROCESSING_FAILED  # type: ignore[arg-type]
    return update

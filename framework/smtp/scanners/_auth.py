"""Sender authentication: SPF (pyspf), DKIM (dkimpy) and DMARC (authheaders), in SES's verdicts.

Each library blocks on DNS, so each check runs in a worker thread, bounded by a timeout, with
the current resolver (``_dns``). Each also records an ``authres`` result in the mail's
``Findings``, which the receiver writes as the stored mail's ``Authentication-Results``.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from framework.exceptions import MissingDependencyError
from framework.smtp.scanners._base import BuiltinScanner, in_thread
from framework.smtp.scanners._dns import Resolver, current_resolver, install_spf_lookup, using
from framework.smtp.scanning import Findings, Verdict

if TYPE_CHECKING:
    from framework.smtp.parsing import Envelope

__all__ = ["dkim", "dmarc", "spf"]

_dkim_log = logging.getLogger("framework.smtp.dkim")

# RFC 7208 result -> SES verdict. A softfail ("probably not authorised") is not a FAIL: RFC 7208
# 8.5 advises against refusing on it. A broken SPF record (permerror) authorises nobody.
_SPF_VERDICTS = {
    "pass": Verdict.PASS,
    "fail": Verdict.FAIL,
    "softfail": Verdict.GRAY,
    "neutral": Verdict.GRAY,
    "none": Verdict.GRAY,
    "permerror": Verdict.FAIL,
    "temperror": Verdict.PROCESSING_FAILED,
}
_DMARC_VERDICTS = {
    "pass": Verdict.PASS,
    "fail": Verdict.FAIL,
    "none": Verdict.GRAY,  # the From domain publishes no DMARC policy
    "permerror": Verdict.GRAY,  # its policy cannot be read: no policy
    "temperror": Verdict.PROCESSING_FAILED,
}


def _authres() -> Any:
    try:
        import authres
        import authres.dmarc
    except ImportError:
        raise MissingDependencyError(
            "the mail checks need authres: pip install 'framework[mail-security]'"
        ) from None
    return authres


def _findings() -> Findings:
    return Findings.current() or Findings()


# --- SPF ------------------------------------------------------------------------------------


def _spf_result(envelope: Envelope, helo: str, resolver: Resolver) -> Any:
    """The ``authres`` SPF result of ``envelope``'s MAIL FROM (or HELO, for a bounce)."""
    spf_module = install_spf_lookup()
    authres = _authres()
    sender = envelope.mail_from
    if not envelope.peer or not (sender or helo):
        return authres.SPFAuthenticationResult(result="none", smtp_mailfrom=sender or None)
    with using(resolver):
        # querytime bounds the whole check (RFC 7208 4.6.4 suggests 20 s), timeout each lookup.
        result, explanation = spf_module.check2(
            i=envelope.peer,
            s=sender,
            h=helo or "unknown",
            timeout=resolver.timeout,
            querytime=resolver.timeout * 4,
        )
    return authres.SPFAuthenticationResult(
        result=result,
        reason=explanation or None,
        smtp_mailfrom=sender or None,
        smtp_helo=None if sender else helo,
    )


def spf(*, resolver: Resolver | None = None, timeout: float = 20.0) -> BuiltinScanner:
    """A scanner giving the ``spf`` verdict of the envelope sender (pyspf, RFC 7208).

    ``PASS`` for pass; ``FAIL`` for fail and permerror (a broken record authorises nobody);
    ``GRAY`` for softfail, neutral and none (no record); ``PROCESSING_FAILED`` for a DNS
    failure (temperror) or a timeout. The exact result is in the ``Authentication-Results``
    header (``spf=softfail``). A bounce (empty MAIL FROM) is checked by its HELO name.

    Args:
        resolver: The DNS resolver (default: the receiver's, from ``SMTPConfig.dns_*``).
        timeout: Seconds for the whole check.

    Raises:
        MissingDependencyError: If pyspf is not installed.
    """
    install_spf_lookup()

    async def check(raw: bytes, envelope: Envelope) -> Mapping[str, Verdict]:
        findings = _findings()
        r = resolver or current_resolver()
        result = await in_thread(lambda: _spf_result(envelope, findings.helo, r), timeout)
        findings.spf = result
        findings.results.append(result)
        findings.details["spf"] = result.result
        return {"spf": _SPF_VERDICTS.get(result.result, Verdict.PROCESSING_FAILED)}

    return BuiltinScanner("spf", ("spf",), check)


# --- DKIM -----------------------------------------------------------------------------------

DnsFunc = Callable[..., "bytes | None"]


def _dkim_module() -> Any:
    try:
        import dkim as dkim_module
    except ImportError:
        raise MissingDependencyError(
            "DKIM verification needs dkimpy: pip install 'framework[mail-security]'"
        ) from None
    return dkim_module


def _txt_lookup(resolver: Resolver) -> DnsFunc:
    def txt(name: bytes, timeout: float = resolver.timeout) -> bytes | None:
        records = resolver.txt(name.decode("ascii", "replace"))
        return records[0] if records else None

    return txt


def _recording(lookup: DnsFunc, failures: list[BaseException], seconds: float) -> DnsFunc:
    """``lookup``, noting each exception it raises in ``failures`` (DNS down: temperror)."""

    def guarded(name: bytes, timeout: float = seconds) -> bytes | None:
        try:
            return lookup(name, timeout=timeout)
        except Exception as exc:
            failures.append(exc)
            raise

    return guarded


def _dkim_results(raw: bytes, lookup: DnsFunc, timeout: float, limit: int) -> list[Any]:
    """One ``authres`` DKIM result per signature (up to ``limit``): pass, fail or temperror."""
    dkim_module = _dkim_module()
    authres = _authres()
    signer = dkim_module.DKIM(raw, logger=_dkim_log, timeout=int(max(timeout, 1)))
    count = sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")
    results = []
    for index in range(min(count, limit)):
        failures: list[BaseException] = []
        guarded = _recording(lookup, failures, timeout)
        signer = dkim_module.DKIM(raw, logger=_dkim_log, timeout=int(max(timeout, 1)))
        try:
            ok = signer.verify(idx=index, dnsfunc=guarded)
            result = "pass" if ok else "fail"
        except Exception:
            result = "fail"
        if failures:
            result = "temperror"
        fields = signer.signature_fields or {}
        results.append(
            authres.DKIMAuthenticationResult(
                result=result,
                header_d=fields.get(b"d", b"").decode("ascii", "replace") or None,
                header_s=fields.get(b"s", b"").decode("ascii", "replace") or None,
                header_i=fields.get(b"i", b"").decode("ascii", "replace") or None,
            )
        )
    return results


def dkim(
    *,
    resolver: Resolver | None = None,
    dnsfunc: DnsFunc | None = None,
    timeout: float = 10.0,
    max_signatures: int = 5,
) -> BuiltinScanner:
    """A scanner giving the ``dkim`` verdict of the mail's DKIM signatures (dkimpy, RFC 6376).

    ``PASS`` when a signature verifies; ``GRAY`` for a mail without one; ``FAIL`` when none
    verifies (a bad signature, a body changed on the way, a missing or malformed key);
    ``PROCESSING_FAILED`` when a key lookup failed (DNS down) and nothing passed, or on a
    timeout.

    Args:
        resolver: The DNS resolver (default: the receiver's, from ``SMTPConfig.dns_*``).
        dnsfunc: Looks up a TXT record instead: ``(name: bytes, timeout=...) -> bytes | None``
            (for tests of dkimpy's behaviour without a DNS server).
        timeout: Seconds for the whole check.
        max_signatures: Signatures verified at most (each costs a key lookup).

    Raises:
        MissingDependencyError: If dkimpy is not installed.
    """
    _dkim_module()

    async def check(raw: bytes, envelope: Envelope) -> Mapping[str, Verdict]:
        findings = _findings()
        lookup = dnsfunc or _txt_lookup(resolver or current_resolver())
        results = await in_thread(
            lambda: _dkim_results(raw, lookup, timeout, max_signatures), timeout
        )
        findings.dkim = results
        if not results:
            findings.results.append(_authres().DKIMAuthenticationResult(result="none"))
            return {"dkim": Verdict.GRAY}
        findings.results.extend(results)
        outcomes = {r.result for r in results}
        if "pass" in outcomes:
            return {"dkim": Verdict.PASS}
        if "temperror" in outcomes:
            return {"dkim": Verdict.PROCESSING_FAILED}
        return {"dkim": Verdict.FAIL}

    return BuiltinScanner("dkim", ("dkim",), check)


# --- DMARC ----------------------------------------------------------------------------------


def _dmarc_lookup(resolver: Resolver) -> Callable[[str], str | None]:
    """authheaders' ``dnsfunc``: the one ``v=DMARC1`` record at a name, else None."""

    def dmarc_txt(name: str) -> str | None:
        records = [r for r in resolver.txt(name) if r.startswith(b"v=DMARC1")]
        # RFC 7489 6.6.3: several DMARC records are as good as none.
        return records[0].decode("utf-8", "replace") if len(records) == 1 else None

    return dmarc_txt


@functools.cache
def _suffix_list() -> Any:
    """authheaders' bundled public suffix list, parsed once (it parses it on every call)."""
    from publicsuffix2 import PublicSuffixList

    ref = importlib.resources.files("authheaders") / "public_suffix_list.txt"
    with importlib.resources.as_file(ref) as location, open(location, encoding="utf-8") as file:
        return PublicSuffixList(file)


@functools.lru_cache(maxsize=4096)
def org_domain(domain: str) -> str:
    """The organisational domain of ``domain`` (RFC 7489 3.2), by the public suffix list.

    A TLD the list does not know is a public suffix of its own (the list's default ``*``
    rule), so ``a.b.corp`` belongs to ``b.corp``.
    """
    name = domain.lower().rstrip(".")
    psl = _suffix_list()
    if psl.get_tld(name, strict=True) is None:
        return ".".join(name.split(".")[-2:])
    return str(psl.get_sld(name, strict=True) or name)


def _install_org_domain() -> None:
    """Give authheaders ``org_domain``: its own re-reads the list on each call (~180 ms) and
    answers the bare TLD for a TLD the list lacks, aligning every domain under it."""
    import authheaders
    import authheaders.dmarc_lookup

    authheaders.get_org_domain = org_domain
    authheaders.dmarc_lookup.get_org_domain = org_domain


def _dmarc_result(raw: bytes, spf_result: Any, dkim_results: list[Any], resolver: Resolver) -> Any:
    try:
        import authheaders
    except ImportError:
        raise MissingDependencyError(
            "DMARC checks need authheaders: pip install 'framework[mail-security]'"
        ) from None
    _install_org_domain()
    lookup = _dmarc_lookup(resolver)
    passed = [r for r in dkim_results if r.result == "pass"] or [None]
    result = None
    for dkim_result in passed:
        # authheaders rewrites the SPF result's mail-from to its domain: give it a copy.
        result = authheaders.check_dmarc(
            raw, copy.deepcopy(spf_result), dkim_result=dkim_result, dnsfunc=lookup
        )
        if result.result == "pass":
            break
    return result


def dmarc(*, resolver: Resolver | None = None, timeout: float = 20.0) -> BuiltinScanner:
    """A scanner giving the ``dmarc`` verdict and policy (authheaders, RFC 7489).

    The From domain's policy is read from DNS (``_dmarc.<domain>``, else its organisational
    domain's, by the public suffix list that ships with authheaders); the mail passes when SPF
    or a DKIM signature passed *and* is aligned with the From domain (relaxed or strict, as the
    policy's ``aspf``/``adkim`` say). Put ``spf()`` and ``dkim()`` before it: it reuses their
    results (and runs them itself when they did not run).

    ``PASS``; ``FAIL``, with ``dmarc_policy`` set to the domain's ``none``, ``quarantine`` or
    ``reject`` (as SES's ``dmarcPolicy``, present only on a failure); ``GRAY`` when the domain
    publishes no (readable) policy; ``PROCESSING_FAILED`` for a DNS failure or a timeout.

    Args:
        resolver: The DNS resolver (default: the receiver's, from ``SMTPConfig.dns_*``).
        timeout: Seconds for the whole check (and the SPF and DKIM checks it runs itself).

    Raises:
        MissingDependencyError: If authheaders is not installed.
    """
    _authres()

    async def check(raw: bytes, envelope: Envelope) -> Mapping[str, Verdict | str]:
        findings = _findings()
        r = resolver or current_resolver()
        spf_result = findings.spf
        if spf_result is None:
            spf_result = await in_thread(lambda: _spf_result(envelope, findings.helo, r), timeout)
        dkim_results = findings.dkim
        if not dkim_results:
            dkim_results = await in_thread(
                lambda: _dkim_results(raw, _txt_lookup(r), timeout, 5), timeout
            )
        result = await in_thread(lambda: _dmarc_result(raw, spf_result, dkim_results, r), timeout)
        findings.results.append(result)
        verdict = _DMARC_VERDICTS.get(result.result, Verdict.PROCESSING_FAILED)
        if verdict is Verdict.FAIL:
            policy = (getattr(result, "policy", None) or "none").lower()
            findings.details["dmarc"] = f"fail policy={policy}"
            return {"dmarc": verdict, "dmarc_policy": policy}
        return {"dmarc": verdict}

    return BuiltinScanner("dmarc", ("dmarc",), check)

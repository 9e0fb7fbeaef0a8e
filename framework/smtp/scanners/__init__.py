"""The mail checks that ship: sender authentication, content scanning and DNS blocklists.

Give them to the receiver, in order (DMARC after SPF and DKIM, whose results it reuses)::

    SMTPConfig(
        scanners=[spf(), dkim(), dmarc(), clamav("127.0.0.1:3310"),
                  spamassassin("127.0.0.1:783"), dnsbl(["zen.spamhaus.org"])],
        reject_on={"virus": ["FAIL"], "spam": ["FAIL"], "dmarc_policy": ["reject"]},
        dns_servers=["127.0.0.1"],  # every DNS-based check asks these
    )

Libraries: pyspf (SPF), dkimpy (DKIM), authheaders (DMARC policy discovery and alignment, on
its bundled public suffix list), authres (the ``Authentication-Results`` header), clamdpy
(clamd's ``INSTREAM``), aiospamc (spamd), dnspython (every lookup, and the blocklists).
Install them with ``pip install 'framework[mail-security]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework.exports import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from framework.smtp.scanners._auth import dkim, dmarc, spf
    from framework.smtp.scanners._base import BuiltinScanner
    from framework.smtp.scanners._content import clamav, spamassassin
    from framework.smtp.scanners._dns import Resolver, current_resolver, using
    from framework.smtp.scanners._dnsbl import DNSBL, dnsbl

# Imported on first use: the receiver's config needs ``_dns`` and ``_dnsbl``, not the
# authentication and content checks and their libraries.
_LAZY = {
    "BuiltinScanner": "framework.smtp.scanners._base",
    "DNSBL": "framework.smtp.scanners._dnsbl",
    "Resolver": "framework.smtp.scanners._dns",
    "clamav": "framework.smtp.scanners._content",
    "current_resolver": "framework.smtp.scanners._dns",
    "dkim": "framework.smtp.scanners._auth",
    "dmarc": "framework.smtp.scanners._auth",
    "dnsbl": "framework.smtp.scanners._dnsbl",
    "spamassassin": "framework.smtp.scanners._content",
    "spf": "framework.smtp.scanners._auth",
    "using": "framework.smtp.scanners._dns",
}

__all__ = [
    "DNSBL",
    "BuiltinScanner",
    "Resolver",
    "clamav",
    "current_resolver",
    "dkim",
    "dmarc",
    "dnsbl",
    "spamassassin",
    "spf",
    "using",
]


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, __all__)

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

from framework.smtp.scanners._auth import dkim, dmarc, spf
from framework.smtp.scanners._base import BuiltinScanner
from framework.smtp.scanners._content import clamav, spamassassin
from framework.smtp.scanners._dns import Resolver, current_resolver, using
from framework.smtp.scanners._dnsbl import DNSBL, dnsbl

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

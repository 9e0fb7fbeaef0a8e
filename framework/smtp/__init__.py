"""Mail: the parsed ``Email``, its envelope and verdicts, the receiver's and relay's config.

``from framework.smtp import DKIMSigning, Email, RelayConfig, SMTPConfig, Verdict, check_address``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework.exports import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from framework.smtp.config import DKIMSigning, RelayConfig, SMTPConfig
    from framework.smtp.outbound import check_address
    from framework.smtp.parsing import Attachment, Email
    from framework.smtp.scanning import Envelope, Scanner, Verdict, Verdicts

# Imported on first use: a submodule (the registry's ``rules``) loads without the rest.
_LAZY = {
    "Attachment": "framework.smtp.parsing",
    "DKIMSigning": "framework.smtp.config",
    "Email": "framework.smtp.parsing",
    "Envelope": "framework.smtp.scanning",
    "RelayConfig": "framework.smtp.config",
    "SMTPConfig": "framework.smtp.config",
    "Scanner": "framework.smtp.scanning",
    "Verdict": "framework.smtp.scanning",
    "Verdicts": "framework.smtp.scanning",
    "check_address": "framework.smtp.outbound",
}

__all__ = [
    "Attachment",
    "DKIMSigning",
    "Email",
    "Envelope",
    "RelayConfig",
    "SMTPConfig",
    "Scanner",
    "Verdict",
    "Verdicts",
    "check_address",
]


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, __all__)

"""Mail: the parsed ``Email``, its envelope and verdicts, the receiver's and relay's config.

``from framework.smtp import DKIMSigning, Email, RelayConfig, SMTPConfig, Verdict, check_address``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

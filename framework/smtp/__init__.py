"""Mail: the parsed ``Email``, its envelope and verdicts, the receiver's and relay's config.

``from framework.smtp import DKIMSigning, Email, RelayConfig, SMTPConfig, Verdict, check_address``.
"""

from framework.smtp.config import DKIMSigning, RelayConfig, SMTPConfig
from framework.smtp.outbound import check_address
from framework.smtp.parsing import Attachment, Email
from framework.smtp.scanning import Envelope, Scanner, Verdict, Verdicts

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

"""Mail: the parsed ``Email``, receipt rules and the receiver, outbound mail.

The receiver's and the relay's configuration are importable from here:
``from framework.smtp import DKIMSigning, RelayConfig, SMTPConfig``.
"""

from framework.smtp.config import DKIMSigning, RelayConfig, SMTPConfig

__all__ = ["DKIMSigning", "RelayConfig", "SMTPConfig"]

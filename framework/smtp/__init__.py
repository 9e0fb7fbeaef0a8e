"""Mail: the parsed ``Email``, receipt rules and the receiver, outbound mail.

The receiver's and the relay's configuration are importable from here:
``from framework.smtp import RelayConfig, SMTPConfig``.
"""

from framework.smtp.config import RelayConfig, SMTPConfig

__all__ = ["RelayConfig", "SMTPConfig"]

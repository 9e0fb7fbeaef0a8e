"""framework: event-driven asyncio applications in the style of AWS serverless."""

from framework.app import App
from framework.context import Context, DeadLetterInfo, Message
from framework.exceptions import (
    AppNotRunningError,
    ConfigError,
    DeclarationError,
    FrameworkError,
    InvalidFilterPolicyError,
    InvalidMessageError,
    MailError,
    MessageTooLargeError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.smtp.parsing import Attachment, Email

__all__ = [
    "App",
    "AppNotRunningError",
    "Attachment",
    "ConfigError",
    "Context",
    "DeadLetterInfo",
    "DeclarationError",
    "Email",
    "FrameworkError",
    "InvalidFilterPolicyError",
    "InvalidMessageError",
    "MailError",
    "Message",
    "MessageTooLargeError",
    "UnknownQueueError",
    "UnknownTopicError",
]

"""framework: event-driven asyncio applications in the style of AWS serverless."""

from framework.app import App
from framework.binding import Header
from framework.context import Context, DeadLetterInfo, Message
from framework.exceptions import (
    AppNotRunningError,
    BackendUnavailableError,
    ConfigError,
    DeclarationError,
    FrameworkError,
    InvalidFilterPolicyError,
    InvalidMessageError,
    InvalidRedriveError,
    MailError,
    MessageTooLargeError,
    MissingDependencyError,
    MissingResourcesError,
    UnknownBackendError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.smtp.parsing import Attachment, Email

__all__ = [
    "App",
    "AppNotRunningError",
    "Attachment",
    "BackendUnavailableError",
    "ConfigError",
    "Context",
    "DeadLetterInfo",
    "DeclarationError",
    "Email",
    "FrameworkError",
    "Header",
    "InvalidFilterPolicyError",
    "InvalidMessageError",
    "InvalidRedriveError",
    "MailError",
    "Message",
    "MessageTooLargeError",
    "MissingDependencyError",
    "MissingResourcesError",
    "UnknownBackendError",
    "UnknownQueueError",
    "UnknownTopicError",
]

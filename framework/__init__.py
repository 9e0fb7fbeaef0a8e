"""framework: event-driven asyncio applications in the style of AWS serverless."""

from framework.app import App
from framework.binding import Header
from framework.context import Context, DeadLetterInfo, Message
from framework.exceptions import (
    AppNotRunningError,
    BackendUnavailableError,
    ConfigError,
    ConnectionGoneError,
    DeclarationError,
    FrameworkError,
    InvalidFilterPolicyError,
    InvalidMessageError,
    InvalidRedriveError,
    MailError,
    MessageTooLargeError,
    MissingDependencyError,
    MissingResourcesError,
    Refuse,
    UnknownBackendError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.smtp.parsing import Attachment, Email
from framework.websocket import Connection

__all__ = [
    "App",
    "AppNotRunningError",
    "Attachment",
    "BackendUnavailableError",
    "ConfigError",
    "Connection",
    "ConnectionGoneError",
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
    "Refuse",
    "UnknownBackendError",
    "UnknownQueueError",
    "UnknownTopicError",
]

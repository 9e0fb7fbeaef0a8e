"""framework: event-driven asyncio applications in the style of AWS serverless."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from framework.exports import lazy_exports as _lazy_exports
from framework.websocket import Connection

if TYPE_CHECKING:
    from framework.smtp.parsing import Attachment, Email

# Imported on first use: the mail parser (and the stdlib's email package) stays out of an app
# that never receives mail, such as an HTTP or SQS function on Lambda.
_LAZY = {"Attachment": "framework.smtp.parsing", "Email": "framework.smtp.parsing"}

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


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, __all__)

"""The framework's errors: one family under ``FrameworkError``, each named for its cause."""

from __future__ import annotations

__all__ = [
    "AppNotRunningError",
    "BackendUnavailableError",
    "ConfigError",
    "ConnectionGoneError",
    "DeclarationError",
    "FrameworkError",
    "InvalidFilterPolicyError",
    "InvalidMessageError",
    "InvalidRedriveError",
    "MailError",
    "MessageTooLargeError",
    "MissingDependencyError",
    "MissingResourcesError",
    "Refuse",
    "UnknownBackendError",
    "UnknownQueueError",
    "UnknownTopicError",
]


class FrameworkError(Exception):
    """Base class of every error the framework raises on purpose."""


class DeclarationError(FrameworkError):
    """A decorator or declaration was given options that cannot work (raised at import or start)."""


class InvalidFilterPolicyError(DeclarationError):
    """An SNS filter policy is malformed or exceeds AWS's limits."""


class ConfigError(FrameworkError):
    """Configuration (backend URL, profile, pyproject settings) is missing or invalid."""


class UnknownBackendError(ConfigError):
    """A backend URL names a scheme no backend serves."""


class MissingDependencyError(ConfigError):
    """A backend needs an optional extra that is not installed."""


class BackendUnavailableError(FrameworkError):
    """The backend could not be reached."""


class UnknownQueueError(FrameworkError):
    """A queue name was used that is not declared."""


class UnknownTopicError(FrameworkError):
    """A topic name was used that is not declared."""


class InvalidMessageError(FrameworkError):
    """A message cannot be sent as given (attributes, delay, FIFO ids)."""


class InvalidRedriveError(FrameworkError):
    """A redrive that cannot do what it says: moving a dead-letter queue's messages into itself."""


class MessageTooLargeError(InvalidMessageError):
    """A message's body and attributes exceed the queue's or topic's size limit."""


class AppNotRunningError(FrameworkError):
    """A producer call was made on an app that is not running on a backend."""


class MailError(FrameworkError):
    """An outgoing mail is invalid (bad address, header injection) or could not be sent."""


class MissingResourcesError(DeclarationError):
    """``--no-declare``: queues, topics or subscriptions the app needs are not on the backend."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        listed = "\n".join(f"  - {item}" for item in missing)
        super().__init__(
            f"{len(missing)} resource(s) the app declares do not exist on the backend "
            f"(--no-declare creates nothing; run `framework provision` or deploy them):\n{listed}"
        )


class ConnectionGoneError(FrameworkError):
    """A WebSocket connection is closed, or was never open (API Gateway's 410 Gone)."""


class Refuse(FrameworkError):
    """Raised by a ``$connect`` handler to refuse the connection with an HTTP status.

    Args:
        status: The handshake's HTTP status, 400-599 (default 403).
        detail: Why, sent to the client as ``{"detail": ...}``.
    """

    def __init__(self, status: int = 403, detail: str = "connection refused") -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"Refuse(status={status!r}): the status must be 400-599")
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail

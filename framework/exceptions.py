"""The framework's errors: one family under ``FrameworkError``, each named for its cause."""

from __future__ import annotations

__all__ = [
    "AppNotRunningError",
    "BackendUnavailableError",
    "ConfigError",
    "DeclarationError",
    "FrameworkError",
    "InvalidFilterPolicyError",
    "InvalidMessageError",
    "InvalidRedriveError",
    "MailError",
    "MessageTooLargeError",
    "MissingDependencyError",
    "MissingResourcesError",
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

"""Backends by URL scheme, imported lazily so optional client libraries load only when used."""

from __future__ import annotations

import importlib

from framework.backends.base import (
    AttributeValue,
    Backend,
    CanCheckDeclared,
    CanDeclareMailRules,
    DeadLetterReason,
    Delivery,
    Outgoing,
    OutgoingMail,
    QueueStats,
)
from framework.exceptions import MissingDependencyError, UnknownBackendError

__all__ = [
    "AttributeValue",
    "Backend",
    "CanCheckDeclared",
    "CanDeclareMailRules",
    "DeadLetterReason",
    "Delivery",
    "Outgoing",
    "OutgoingMail",
    "QueueStats",
    "from_url",
]

_SCHEMES = {
    "memory": ("framework.backends.memory:MemoryBackend", None),
    "amqp": ("framework.backends.rabbitmq:RabbitMQBackend", "rabbitmq"),
    "amqps": ("framework.backends.rabbitmq:RabbitMQBackend", "rabbitmq"),
    "aws": ("framework.backends.aws:AWSBackend", "aws"),
    "sqlite": ("framework.backends.sqlite:SQLiteBackend", None),
}


def from_url(url: str) -> Backend:
    """Build the backend that ``url``'s scheme names, importing it only now.

    Raises:
        UnknownBackendError: For a scheme no backend serves.
        MissingDependencyError: When the backend's optional extra is not installed.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise UnknownBackendError(f"no backend for {url!r} (known: {known})")
    target, extra = _SCHEMES[scheme]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None:
            raise
        hint = f"pip install 'framework[{extra}]'"
        raise MissingDependencyError(
            f"{scheme}:// needs extra packages ({exc.name or exc}): {hint}"
        ) from exc
    backend: Backend = getattr(module, class_name).from_url(url)
    return backend

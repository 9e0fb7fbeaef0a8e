"""Backends by URL scheme, imported lazily so optional client libraries load only when used."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from framework.backends.base import Backend, CanCheckDeclared, CanDeclareMailRules
from framework.exceptions import ConfigError, MissingDependencyError, UnknownBackendError
from framework.messages import (
    AttributeValue,
    DeadLetterReason,
    Delivery,
    Outgoing,
    OutgoingMail,
    QueueStats,
)
from framework.redact import mask_url as _mask_url

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
        ConfigError: For a URL that cannot be parsed (a port that is not a number).
        MissingDependencyError: When the backend's optional extra is not installed.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise UnknownBackendError(f"no backend for {_mask_url(url)!r} (known: {known})")
    try:
        urlsplit(url).port  # noqa: B018 - parses the port, which is what can fail
    except ValueError as exc:
        raise ConfigError(f"backend URL {_mask_url(url)!r} is malformed: {exc}") from None
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

"""Structured logs: every record is an event name plus fields, rendered as JSON or key=value."""

from __future__ import annotations

import functools
import json
import logging
import sys
from typing import Any

from framework.redact import mask_text

__all__ = ["FieldsAdapter", "configure", "event"]

_SECRET_KEYS = ("password", "secret", "token", "authorization", "api_key")


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log event ``name`` (like ``message.dead_lettered``) with structured ``fields``."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


class FieldsAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds its fields (queue, message id) to the fields of every record.

    ``logger.info("order.shipped", extra={"fields": {"order": id}})`` keeps both sets.
    """

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        base: Any = (self.extra or {}).get("fields", {})
        extra["fields"] = {**base, **extra.get("fields", {})}
        kwargs["extra"] = extra
        return msg, kwargs


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    """Whether field ``key``'s value is masked (field names are few: the answer is cached)."""
    lowered = key.lower()
    return any(s in lowered for s in _SECRET_KEYS)


def _redact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if _secret_key(k) else v) for k, v in fields.items()}


class StructuredFormatter(logging.Formatter):
    """Render ``event key=value ...`` (or one JSON object per line with ``json=True``)."""

    def __init__(self, *, json_lines: bool = False) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        # Every line, tracebacks included, with URL passwords and secret query values masked:
        # a client library's error can quote the URL it was given.
        return mask_text(self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
        fields = _redact(dict(getattr(record, "fields", {})))
        if self.json_lines:
            data = {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": record.getMessage(),
                **fields,
            }
            if record.exc_info:
                data["exception"] = self.formatException(record.exc_info)
            return json.dumps(data, default=str)
        text = " ".join(
            f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in fields.items()
        )
        stamp = f"{self.formatTime(record, '%H:%M:%S')}.{int(record.msecs):03d}"
        line = f"{stamp} {record.levelname:<7} {record.getMessage()}"
        line = f"{line} {text}" if text else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Send the framework's logs to stderr, structured."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter(json_lines=json_lines))
    root = logging.getLogger("framework")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False

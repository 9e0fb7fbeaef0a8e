"""What a Lambda invocation leaves behind: its request id on every log record, its log line
(in CloudWatch's embedded metric format on Lambda) and its counts in the gateway's metrics.

``lambda.invoked`` carries the app, the trigger, whether it was a cold start and its duration;
on Lambda (or with ``FRAMEWORK_LAMBDA_EMF=1``) the same line is an embedded-metric-format
document, which CloudWatch turns into the metrics ``Duration`` and ``ColdStart`` (namespace
``framework``, dimensions app and trigger) with no agent and no API call.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import time
import weakref
from collections.abc import Iterator
from typing import Any

from framework.logs import configure

__all__ = ["InvocationMetrics", "invocation", "log_invocation", "tag_framework_logs"]

log = logging.getLogger("framework.aws")

# Lambda sets this in every execution environment.
_ON_LAMBDA = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "framework_aws_request_id", default=None
)


class _RequestIdFilter(logging.Filter):
    """Adds the invocation's ``aws_request_id`` to the fields of every framework log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _request_id.get()
        if request_id is not None:
            fields = dict(getattr(record, "fields", None) or {})
            fields.setdefault("aws_request_id", request_id)
            record.fields = fields
        return True


def tag_framework_logs() -> None:
    """JSON-line logs for the ``framework`` logger (unless configured), each record tagged
    with the invocation's request id."""
    framework_logger = logging.getLogger("framework")
    if not framework_logger.handlers:
        configure(os.environ.get("FRAMEWORK_LOG_LEVEL", "INFO"), json_lines=True)
    for handler in framework_logger.handlers:
        if not any(isinstance(f, _RequestIdFilter) for f in handler.filters):
            handler.addFilter(_RequestIdFilter())


@contextlib.contextmanager
def invocation(context: Any) -> Iterator[None]:
    """Serve one invocation under its Lambda ``context``'s request id."""
    token = _request_id.set(str(getattr(context, "aws_request_id", "") or "") or None)
    try:
        yield
    finally:
        _request_id.reset(token)


class InvocationMetrics:
    """Invocations and cold starts counted, and durations timed, in the gateway's registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        from framework.gateway.metrics import BOUNDS

        self.invocations = Counter(
            "framework_lambda_invocations",
            "Lambda invocations by event kind and whether they were a cold start.",
            ["event", "cold_start"],
            registry=registry,
        )
        self.duration = Histogram(
            "framework_lambda_invocation_duration_seconds",
            "Lambda invocations' run time, the cold start's set-up included.",
            ["event"],
            buckets=BOUNDS,
            registry=registry,
        )
        # The labelled children, looked up once per (event, cold start) rather than per call.
        self._children: dict[tuple[str, bool], tuple[Any, Any]] = {}

    def count(self, kind: str, cold: bool, seconds: float) -> None:
        """Count one invocation of ``kind`` and time it."""
        children = self._children.get((kind, cold))
        if children is None:
            children = self._children[kind, cold] = (
                self.invocations.labels(kind, "true" if cold else "false"),
                self.duration.labels(kind),
            )
        children[0].inc()
        children[1].observe(seconds)

    @classmethod
    def of(cls, registry: Any) -> InvocationMetrics:
        """The one set of ``registry``: a second handler of the same app counts into it."""
        found = _METRICS.get(registry)
        if found is None:
            found = _METRICS[registry] = cls(registry)
        return found


_METRICS: weakref.WeakKeyDictionary[Any, InvocationMetrics] = weakref.WeakKeyDictionary()


def log_invocation(
    app: str, kind: str, cold: bool, seconds: float, metrics: InvocationMetrics | None
) -> None:
    """Log the invocation (with CloudWatch's embedded metric format) and count it."""
    if metrics is not None:
        metrics.count(kind, cold, seconds)
    if not log.isEnabledFor(logging.INFO):
        return  # the count above stands; no record to build
    milliseconds = round(seconds * 1000, 3)
    fields: dict[str, Any] = {
        "app": app,
        "trigger": kind,
        "cold_start": cold,
        "duration_ms": milliseconds,
    }
    if _ON_LAMBDA or os.environ.get("FRAMEWORK_LAMBDA_EMF") == "1":
        # CloudWatch turns this JSON line into the metrics Duration and ColdStart
        # (the embedded metric format); off Lambda it would only be noise.
        fields["_aws"] = {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": _EMF_METRICS}
        fields["Duration"] = milliseconds
        fields["ColdStart"] = 1 if cold else 0
    # The record made directly: ``log.info`` would walk the stack for a file and line that no
    # framework line prints, a third of this line's cost on every warm invocation.
    record = log.makeRecord(log.name, logging.INFO, "", 0, "lambda.invoked", (), None)
    record.fields = fields
    log.handle(record)


# The embedded-metric-format directive, the same on every line (only read, never changed).
_EMF_METRICS = (
    {
        "Namespace": "framework",
        "Dimensions": (("app", "trigger"),),
        "Metrics": (
            {"Name": "Duration", "Unit": "Milliseconds"},
            {"Name": "ColdStart", "Unit": "Count"},
        ),
    },
)

"""The dashboard's rows: pure functions from specs, stats and counters to JSON-ready dicts.

Nothing here does I/O, so each table of the dashboard is tested without a loop or a backend.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from framework.gateway.metrics import BOUNDS
from framework.messages import (
    DLQ_ERROR_MESSAGE,
    DLQ_ERROR_TYPE,
    DLQ_HEADERS,
    DLQ_RECEIVE_COUNT,
    DLQ_SOURCE,
    DLQ_TIME,
    Delivery,
)

if TYPE_CHECKING:
    from framework.gateway.metrics import RouteTotals
    from framework.registry import Registry

__all__ = ["latency_quantile", "message_json", "queue_rows", "route_rows", "topic_rows"]


def latency_quantile(buckets: Sequence[int], q: float) -> float | None:
    """Estimate the ``q`` quantile in seconds from per-bucket counts over ``BOUNDS`` and +Inf.

    As Prometheus's ``histogram_quantile``: linear within the bucket the rank falls in; a rank
    in the +Inf bucket is reported as the largest finite bound.

    Returns:
        The estimate, or None when the buckets are empty.
    """
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    running = 0
    for index, count in enumerate(buckets):
        if running + count >= rank and count > 0:
            if index >= len(BOUNDS):
                return BOUNDS[-1]
            low = BOUNDS[index - 1] if index > 0 else 0.0
            high = BOUNDS[index]
            return round(low + (high - low) * (rank - running) / count, 6)
        running += count
    return BOUNDS[-1]


def queue_rows(
    registry: Registry,
    stats: Mapping[str, Mapping[str, Any]],
    rates: Mapping[str, tuple[float, float]],
) -> list[dict[str, Any]]:
    """Return every queue's stats with its rates, role and handler, sorted by name.

    Args:
        registry: The app, for which queues it handles and which are dead-letter queues.
        stats: ``QueueStats.as_dict()`` by queue name, as last sampled.
        rates: ``(in, out)`` messages per second by queue name.
    """
    dead_letter_queues = {q.get("dead_letter_queue") for q in stats.values()}
    dead_letter_queues |= {n for n, s in registry.queues.items() if s.is_dead_letter_queue}
    rows = []
    for name in sorted(stats):
        rate_in, rate_out = rates.get(name, (0.0, 0.0))
        consumer = registry.consumers.get(name)
        rows.append(
            {
                **stats[name],
                "rate_in": round(rate_in, 3),
                "rate_out": round(rate_out, 3),
                "is_dead_letter_queue": name in dead_letter_queues,
                "sources": registry.dead_letter_sources(name) if name in dead_letter_queues else [],
                "handler": consumer.name if consumer is not None else None,
                "fifo": name.endswith(".fifo"),
            }
        )
    return rows


def topic_rows(registry: Registry) -> list[dict[str, Any]]:
    """Return the app's topics with their subscriptions and filter policies."""
    rows = []
    for name, topic in registry.topics.items():
        subscriptions = []
        for sub in registry.subscriptions:
            if sub.topic != name:
                continue
            consumer = registry.consumers.get(sub.queue.name) if sub.queue is not None else None
            subscriptions.append(
                {
                    "name": sub.name,
                    "queue": sub.queue.name if sub.queue is not None else None,
                    "endpoint": sub.endpoint,
                    "handler": consumer.name if consumer is not None else None,
                    "filter_policy": dict(sub.filter_policy) if sub.filter_policy else None,
                    "filter_policy_scope": sub.filter_policy_scope,
                }
            )
        rows.append({"name": name, "fifo": topic.fifo, "subscriptions": subscriptions})
    return rows


def route_rows(
    registry: Registry, now: Sequence[RouteTotals], before: Sequence[RouteTotals], span: float
) -> list[dict[str, Any]]:
    """Return each declared route and method with its rates over the last ``span`` seconds.

    Args:
        registry: The app whose routes to list, in declaration order.
        now: The routes' counters now.
        before: The same counters ``span`` seconds ago (empty: since the start).
        span: Seconds between ``before`` and ``now``; 0 gives rates of 0.

    Returns:
        Rows with ``rps``, ``error_rate`` (5xx among answers), ``client_error_rate`` (4xx),
        ``p50`` and ``p99`` in seconds (None without requests), and all-time ``requests``
        and ``errors``.
    """
    current = {(r.route, r.method): r for r in now}
    old = {(r.route, r.method): r for r in before}
    rows = []
    for spec in registry.routes:
        for method in spec.methods:
            row: dict[str, Any] = {
                "method": method,
                "path": spec.full_path,
                "version": spec.version,
                "handler": spec.binder.handler_name,
                "rps": 0.0,
                "error_rate": None,
                "client_error_rate": None,
                "p50": None,
                "p99": None,
                "requests": 0,
                "errors": 0,
            }
            totals = current.get((spec.full_path, method))
            if totals is not None:
                prev = old.get((spec.full_path, method))
                counts = [c - (prev.counts[i] if prev else 0) for i, c in enumerate(totals.counts)]
                buckets = [
                    b - (prev.buckets[i] if prev else 0) for i, b in enumerate(totals.buckets)
                ]
                answered = sum(counts)
                row["requests"], row["errors"] = sum(totals.counts), totals.counts[5]
                if answered:
                    row["rps"] = round(answered / span, 3) if span > 0 else 0.0
                    row["error_rate"] = round(counts[5] / answered, 4)
                    row["client_error_rate"] = round(counts[4] / answered, 4)
                    row["p50"] = latency_quantile(buckets, 0.5)
                    row["p99"] = latency_quantile(buckets, 0.99)
            rows.append(row)
    return rows


def message_json(delivery: Delivery) -> dict[str, Any]:
    """Return a peeked message as the admin API shows it.

    The body is text when it decodes as UTF-8 (``body_encoding: "text"``), else base64. A
    dead letter's reason (source queue, receive count, error, time) is under ``dead_letter``;
    it is None for a message that was never dead-lettered.
    """
    try:
        body, encoding = delivery.body.decode("utf-8"), "text"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(delivery.body).decode("ascii"), "base64"
    headers = delivery.headers
    reason = None
    if DLQ_SOURCE in headers or DLQ_ERROR_TYPE in headers:
        count = headers.get(DLQ_RECEIVE_COUNT, "")
        reason = {
            "source_queue": headers.get(DLQ_SOURCE),
            "receive_count": int(count) if count.isascii() and count.isdigit() else None,
            "error_type": headers.get(DLQ_ERROR_TYPE),
            "error_message": headers.get(DLQ_ERROR_MESSAGE),
            "time": headers.get(DLQ_TIME),
        }
    return {
        "message_id": delivery.message_id,
        "body": body,
        "body_encoding": encoding,
        "content_type": delivery.content_type,
        "attributes": dict(delivery.attributes),
        "headers": {k: v for k, v in headers.items() if k not in DLQ_HEADERS},
        "receive_count": delivery.receive_count,
        "sent_at": delivery.sent_at.isoformat(),
        "group_id": delivery.group_id,
        "deduplication_id": delivery.deduplication_id,
        "dead_letter": reason,
    }

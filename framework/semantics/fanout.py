"""Fan-out: which subscriptions of a topic receive a published message."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from framework.codec import JSON
from framework.registry import SubscriptionSpec
from framework.semantics.filter_policy import matches

__all__ = ["matching"]


def matching(
    subscriptions: Iterable[SubscriptionSpec],
    *,
    attributes: Mapping[str, Any],
    body: bytes,
    content_type: str,
) -> list[SubscriptionSpec]:
    """Return the subscriptions whose filter policy accepts the message, in declaration order.

    A body-scoped policy never matches a body that is not a JSON object, as on SNS.
    """
    parsed: Any = None
    parsed_done = False
    chosen = []
    for sub in subscriptions:
        if sub.filter_policy is None:
            chosen.append(sub)
            continue
        if sub.filter_policy_scope == "MessageBody":
            if not parsed_done:
                parsed_done = True
                if content_type.startswith(JSON) or body[:1] == b"{":
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        parsed = None
            if isinstance(parsed, dict) and matches(
                sub.filter_policy, attributes=attributes, body=parsed, scope="MessageBody"
            ):
                chosen.append(sub)
        elif matches(sub.filter_policy, attributes=attributes, scope="MessageAttributes"):
            chosen.append(sub)
    return chosen

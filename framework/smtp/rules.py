"""Receipt rules, evaluated in order as SES does: which rules (and queues) a recipient reaches."""

from __future__ import annotations

from collections.abc import Sequence

from framework.registry import EmailRule

__all__ = ["rules_for"]


def rules_for(rules: Sequence[EmailRule], recipient: str) -> list[EmailRule]:
    """Return the rules matching ``recipient``, in order, up to and including a stop rule."""
    chosen: list[EmailRule] = []
    for rule in rules:
        if rule.matches(recipient):
            chosen.append(rule)
            if rule.stop:
                break
    return chosen

"""What a receipt rule does with the scanners' verdicts (which rules a recipient reaches is
``framework.registry.rules_for``).

A rule may act on the scanners' verdicts, for the mail it would receive: ``drop_on`` keeps
the mail from its queue alone (other rules the mail reaches still get it), ``reject_on`` refuses
the whole mail with ``550 5.7.1``, since SMTP answers ``DATA`` once for every recipient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from framework.exceptions import DeclarationError
from framework.smtp.scanning import Verdicts, check_actions, first_action

__all__ = ["RuleActions"]


@dataclass(frozen=True, slots=True)
class RuleActions:
    """What one receipt rule does with a scanned mail, by verdict.

    Attributes:
        rejecting: ``{check: verdicts}`` that refuse the mail with ``550 5.7.1``.
        dropping: ``{check: verdicts}`` that keep the mail from this rule's queue.
    """

    rejecting: Mapping[str, frozenset[str]]
    dropping: Mapping[str, frozenset[str]]

    @classmethod
    def of(
        cls,
        reject_on: Mapping[str, Sequence[str]] | None,
        drop_on: Mapping[str, Sequence[str]] | None,
    ) -> RuleActions | None:
        """Check ``on_email``'s ``reject_on`` and ``drop_on``; None when neither is given.

        Raises:
            DeclarationError: For an unknown check or verdict, naming the known ones.
        """
        if not reject_on and not drop_on:
            return None
        try:
            return cls(
                check_actions("reject_on", reject_on or {}), check_actions("drop_on", drop_on or {})
            )
        except ValueError as exc:
            raise DeclarationError(f"on_email: {exc}") from None

    def action_on(self, verdicts: Verdicts) -> tuple[str, str] | None:
        """``("reject"|"drop", "check=VERDICT")`` for the first verdict acted on, else None."""
        return first_action(self.rejecting, self.dropping, verdicts)

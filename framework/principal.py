"""``Principal``: who an authorizer said made a request or opened a WebSocket connection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Principal"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made an authorized request.

    Attributes:
        id: The principal's identity: an API key's owner, a JWT's ``sub``, or what a custom
            authorizer said.
        claims: What the authorizer knows about it: the JWT's verified claims, an API key's
            or a custom authorizer's extra data.
        scheme: ``"api_key"``, ``"jwt"`` or ``"custom"``.
    """

    id: str
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    scheme: str = "custom"

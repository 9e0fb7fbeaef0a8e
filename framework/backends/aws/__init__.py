"""``aws://``: the SQS, SNS and SES v2 backend (aiobotocore); see docs/backends/aws.md.

``AWSBackend`` is imported on first use, so the modules that need no AWS client
(``cloudformation``, ``settings``) work without the ``aws`` extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework.exceptions import MissingDependencyError

if TYPE_CHECKING:
    from .backend import AWSBackend

__all__ = ["AWSBackend"]


def __getattr__(name: str) -> Any:
    if name != "AWSBackend":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from .backend import AWSBackend
    except ImportError as exc:
        raise MissingDependencyError(
            f"aws:// needs extra packages ({exc.name or exc}): pip install 'framework[aws]'"
        ) from exc
    return AWSBackend

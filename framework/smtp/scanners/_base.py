"""What the shipped scanners share: a named scanner with its checks, and bounded thread work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from framework.smtp.parsing import Envelope
    from framework.smtp.scanning import Verdict

__all__ = ["BuiltinScanner", "in_thread"]

T = TypeVar("T")


class BuiltinScanner:
    """A scanner (``(raw, envelope) -> {check: verdict}``) with a name and the checks it gives.

    When it raises or times out, ``scan`` marks its ``checks`` ``PROCESSING_FAILED``.
    """

    def __init__(
        self,
        name: str,
        checks: tuple[str, ...],
        run: Callable[[bytes, Envelope], Awaitable[Mapping[str, Verdict | str]]],
    ) -> None:
        self.__name__ = name
        self.checks = checks
        self._run = run

    def __call__(self, raw: bytes, envelope: Envelope) -> Awaitable[Mapping[str, Verdict | str]]:
        return self._run(raw, envelope)

    def __repr__(self) -> str:
        return f"<scanner {self.__name__}>"


async def in_thread(work: Callable[[], T], seconds: float) -> T:
    """Run blocking ``work`` in a worker thread; raise TimeoutError after ``seconds``.

    On a timeout the thread is abandoned (its own socket timeouts end it), so the mail's
    reply never waits for a library that hangs.
    """
    with anyio.fail_after(seconds):
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)

"""Helpers for gateway tests: a settable clock and an HTTP client on a gateway built with it."""

from __future__ import annotations

import httpx

from framework import App
from framework.gateway import Gateway


class FakeClock:
    """Wall-clock seconds that move only when a test moves them."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds


def client(app: App, clock: FakeClock | None = None) -> httpx.AsyncClient:
    """Return an HTTP client on a fresh gateway for ``app`` running on ``clock``."""
    gateway = Gateway(app.registry, app.events, clock=clock or FakeClock())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://t")

"""The pytest plugin: ``framework_backend_url`` and ``virtual_clock`` fixtures (registered via pytest11)."""

from __future__ import annotations

import os

import pytest

from framework.testing.clock import VirtualClock


@pytest.fixture
def framework_backend_url() -> str:
    """The backend URL tests run on: ``FRAMEWORK_TEST_BACKEND`` or ``memory://``."""
    return os.environ.get("FRAMEWORK_TEST_BACKEND", "memory://")


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A fresh virtual clock starting at 0."""
    return VirtualClock()

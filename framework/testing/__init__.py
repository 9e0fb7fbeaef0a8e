"""Testing helpers: ``TestApp``, the virtual clock, and the pytest plugin's fixtures."""

from framework.testing.clock import RealClock, VirtualClock
from framework.testing.harness import TestApp
from framework.testing.socket_client import (
    HandshakeRefusedError,
    WebSocketClient,
    WebSocketClosedError,
)

__all__ = [
    "HandshakeRefusedError",
    "RealClock",
    "TestApp",
    "VirtualClock",
    "WebSocketClient",
    "WebSocketClosedError",
]

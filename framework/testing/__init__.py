"""Testing helpers: ``TestApp``, the virtual clock, and the pytest plugin's fixtures."""

from framework.testing.app import TestApp
from framework.testing.clock import RealClock, VirtualClock
from framework.testing.websocket import (
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

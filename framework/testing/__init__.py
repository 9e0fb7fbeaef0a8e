"""Testing helpers: ``TestApp``, the virtual clock, and the pytest plugin's fixtures."""

from framework.testing.app import TestApp
from framework.testing.clock import RealClock, VirtualClock

__all__ = ["RealClock", "TestApp", "VirtualClock"]

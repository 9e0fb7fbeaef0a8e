"""Specs plus a backend make running work: workers, dispatch, lifecycle."""

from framework.runtime.lifecycle import Runtime

__all__ = ["Runtime"]

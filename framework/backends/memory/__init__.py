"""The in-process backend: SQS and SNS semantics in memory, on a clock tests can control."""

from framework.backends.memory.backend import MemoryBackend

__all__ = ["MemoryBackend"]

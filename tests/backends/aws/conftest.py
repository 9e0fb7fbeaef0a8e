"""Fixtures for the AWS backend's own tests: a connected backend on this session's moto server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("aiobotocore", reason="the aws extra is not installed")

from framework.backends.aws import AWSBackend  # after the import check


@pytest.fixture
def aws_url(moto_endpoint: str) -> str:
    """The ``aws://`` URL of the moto server (loopback only: never real AWS)."""
    return f"aws://us-east-1?endpoint_url={moto_endpoint}"


@pytest.fixture
async def backend(aws_url: str) -> AsyncIterator[AWSBackend]:
    """A connected backend on moto."""
    async with AWSBackend.from_url(aws_url) as b:
        yield b


@pytest.fixture
def name() -> str:
    """A fresh resource name, so tests never share a queue or topic on the server."""
    return f"aws-{uuid.uuid4().hex[:12]}"

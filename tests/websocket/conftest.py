"""Fixtures of the WebSocket tests: the backends they run on (memory, and RabbitMQ when asked)."""

from __future__ import annotations

import pytest

from tests.conftest import AMQP, reachable, redacted, required_backends


@pytest.fixture
def broker() -> str:
    """The broker URL (deleting what it declares on exit) when FRAMEWORK_TEST_BACKENDS lists
    rabbitmq; a skip otherwise, so a plain run leaves the shared broker alone."""
    if "rabbitmq" not in required_backends():
        pytest.skip("set FRAMEWORK_TEST_BACKENDS=rabbitmq to test against the broker")
    if not reachable(AMQP):
        pytest.fail(f"rabbitmq backend required but {redacted(AMQP)} is not reachable")
    return AMQP


@pytest.fixture(
    params=[
        pytest.param("memory://", id="memory"),
        pytest.param(AMQP, id="rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def ws_backend(request: pytest.FixtureRequest) -> str:
    """A backend URL: memory always; RabbitMQ when ``FRAMEWORK_TEST_BACKENDS`` lists it."""
    url: str = request.param
    if url.startswith("amqp"):
        if "rabbitmq" not in required_backends():
            pytest.skip("set FRAMEWORK_TEST_BACKENDS=rabbitmq to test against the broker")
        if not reachable(url):
            pytest.fail(f"rabbitmq backend required but {redacted(url)} is not reachable")
    return url

"""Fixtures for the RabbitMQ backend's own tests: a connected backend whose queues expire."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from framework.backends.rabbitmq import RabbitMQBackend
from framework.backends.rabbitmq.topology import delay_queue_name
from tests.conftest import AMQP, reachable, redacted, required_backends
from tests.rabbitmq_cleanup import delete_named


def amqp_url(**options: str) -> str:
    """Return the test broker URL with ``delete_on_exit`` and the given options added.

    Every queue a test's backend declares is deleted when the backend disconnects, so a run
    never leaves queues behind on the shared broker. (Not ``queue_expires``: expiring quorum
    queues coincided with minute-long stalls of the 3.10.8 broker here.)
    """
    query = "&".join(f"{k}={v}" for k, v in {"delete_on_exit": "1", **options}.items())
    base = AMQP.split("?", 1)[0]
    extra = AMQP.split("?", 1)[1] + "&" if "?" in AMQP else ""
    return f"{base}?{extra}{query}"


@pytest.fixture
def broker() -> str:
    """The broker URL, when ``FRAMEWORK_TEST_BACKENDS`` lists rabbitmq (a failure if it is
    then unreachable); a skip otherwise, so plain ``pytest`` leaves the shared broker alone."""
    if "rabbitmq" not in required_backends():
        pytest.skip("set FRAMEWORK_TEST_BACKENDS=rabbitmq to test against the broker")
    if not reachable(AMQP):
        if "rabbitmq" in required_backends():
            pytest.fail(f"rabbitmq backend required but {redacted(AMQP)} is not reachable")
        pytest.skip(f"{redacted(AMQP)} not reachable")
    return amqp_url()


@pytest.fixture
async def backend(broker: str) -> AsyncIterator[RabbitMQBackend]:
    """A connected backend with a connection name of its own (to close it on purpose)."""
    name = f"framework-test-{uuid.uuid4().hex[:8]}"
    b = RabbitMQBackend.from_url(f"{broker}&connection_name={name}")
    try:
        async with b:
            yield b
    finally:
        # delete_on_exit could not run (the connection was gone at the end): delete now.
        topology = b._topology
        if topology is not None and (topology.specs or topology.delays or topology.topics):
            delays = [
                delay_queue_name(queue, ms) for queue, d in topology.delays.items() for ms in d
            ]
            await delete_named(broker, [*delays, *topology.specs], sorted(topology.topics))

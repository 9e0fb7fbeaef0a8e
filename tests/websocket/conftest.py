"""Fixtures of the WebSocket tests: the backends they run on (memory and a fresh SQLite file;
RabbitMQ and AWS on moto's server when ``FRAMEWORK_TEST_BACKENDS`` lists them)."""

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


def _url(request: pytest.FixtureRequest, name: str) -> str:
    if name == "memory":
        return "memory://"
    if name == "sqlite":
        return f"sqlite:///{request.getfixturevalue('tmp_path') / 'ws.db'}"
    if name not in required_backends():
        pytest.skip(f"set FRAMEWORK_TEST_BACKENDS={name} to test against it")
    if name == "rabbitmq":
        return str(request.getfixturevalue("broker"))
    pytest.importorskip("aiobotocore", reason="the aws extra is not installed")
    return f"aws://us-east-1?endpoint_url={request.getfixturevalue('moto_endpoint')}"


_RABBITMQ = pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)
_AWS = pytest.param("aws", marks=pytest.mark.aws)


@pytest.fixture(params=["memory", _RABBITMQ, _AWS])
def ws_backend(request: pytest.FixtureRequest) -> str:
    """A backend URL: memory always; RabbitMQ and AWS (moto) when asked for."""
    return _url(request, request.param)


@pytest.fixture(params=["sqlite", _RABBITMQ, _AWS])
def relay_url(request: pytest.FixtureRequest) -> str:
    """A backend with a delivery path between processes: SQLite, RabbitMQ, or AWS on moto."""
    return _url(request, request.param)

"""Fixtures shared by the whole suite: the backend every conformance test runs on, fresh names.

Three lanes (see STYLE.md section 3): plain ``pytest`` runs memory plus whatever broker is
reachable; CI sets ``FRAMEWORK_TEST_BACKENDS=memory,rabbitmq,aws`` so a missing broker fails
instead of skipping; ``-m "not rabbitmq and not aws"`` runs offline.

For now the RabbitMQ lane is opt-in: it runs only when ``FRAMEWORK_TEST_BACKENDS`` lists
``rabbitmq``. The broker on these machines is shared, and while the backend's reliability tests
are still to come (kill -9, dropped connections) a plain ``pytest`` should not load it.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from framework.backends import from_url
from framework.exceptions import MissingDependencyError

# delete_on_exit: the backend deletes what it declared when it disconnects, so test runs leave
# no queues behind on the shared broker.
AMQP = os.environ.get(
    "FRAMEWORK_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/?delete_on_exit=1"
)
OPT_IN = {"rabbitmq"}
# A placeholder until the AWS backend brings its own emulator fixture (moto server).
AWS = os.environ.get("FRAMEWORK_TEST_AWS_URL", "aws://us-east-1?endpoint_url=http://127.0.0.1:4566")
BACKENDS = [
    pytest.param(("memory", "memory://"), id="memory"),
    pytest.param(("rabbitmq", AMQP), id="rabbitmq", marks=pytest.mark.rabbitmq),
    pytest.param(("aws", AWS), id="aws", marks=pytest.mark.aws),
]

CONNECT_TIMEOUT = 0.3
_DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671, "http": 80, "https": 443}


def required_backends() -> set[str]:
    """Return the backends that must run here (``FRAMEWORK_TEST_BACKENDS``, comma-separated)."""
    names = os.environ.get("FRAMEWORK_TEST_BACKENDS", "")
    return {name.strip() for name in names.split(",") if name.strip()}


def address_of(url: str) -> tuple[str, int] | None:
    """Return the host and port a backend URL connects to, or None for an in-process backend."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return None
    if parts.scheme == "aws":
        endpoint = parse_qs(parts.query).get("endpoint_url")
        if endpoint:
            parts = urlsplit(endpoint[0])
        else:
            region = parts.hostname or "us-east-1"
            return f"sqs.{region}.amazonaws.com", 443
    host = parts.hostname or "127.0.0.1"
    return host, parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)


def redacted(url: str) -> str:
    """Return ``url`` with its password hidden, fit for a skip or failure message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def reachable(url: str) -> bool:
    """Return True if the backend at ``url`` accepts a TCP connection within a fraction of a second.

    The in-process memory backend is always reachable.
    """
    address = address_of(url)
    if address is None:
        return True
    try:
        with socket.create_connection(address, timeout=CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def unavailable_reason(exc: BaseException) -> str:
    """Say why a backend could not be built: not written yet, or its client library missing."""
    missing = exc if isinstance(exc, ImportError) else exc.__cause__
    if isinstance(missing, ImportError) and (missing.name or "").startswith("framework."):
        return f"its module {missing.name} does not exist yet"
    return str(exc)


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    """The URL of the backend under test: each test that takes it runs once per backend."""
    name, url = request.param
    required = name in required_backends()
    if name in OPT_IN and not required:
        pytest.skip(f"{name} lane is opt-in: set FRAMEWORK_TEST_BACKENDS=memory,{name}")
    try:
        from_url(url)
    except (MissingDependencyError, ImportError) as exc:
        # The backend's module or its client library is missing (rabbitmq and aws are not
        # written yet): that is a skip locally, and a failure where CI asked for the backend.
        message = f"{name} backend is not available: {unavailable_reason(exc)}"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    if not reachable(url):
        if required:
            pytest.fail(f"{name} backend required but {redacted(url)} is not reachable")
        pytest.skip(f"{redacted(url)} not reachable")
    return url


@pytest.fixture
def queue_name() -> str:
    """A fresh queue name, ``q-<12 hex digits>``, so tests never share a queue on a broker."""
    return f"q-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def topic_name() -> str:
    """A fresh topic name, ``t-<12 hex digits>``, so tests never share a topic on a broker."""
    return f"t-{uuid.uuid4().hex[:12]}"

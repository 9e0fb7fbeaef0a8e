"""Fixtures shared by the whole suite: the backend every conformance test runs on, fresh names.

Three lanes (see STYLE.md section 3): plain ``pytest`` runs memory plus whatever broker is
reachable; CI sets ``FRAMEWORK_TEST_BACKENDS=memory,rabbitmq,aws,sqlite`` so a missing broker
fails instead of skipping; ``-m "not rabbitmq and not aws"`` runs offline (memory and sqlite).

The sqlite lane needs nothing but a folder: each test gets a fresh file under its ``tmp_path``.

For now the RabbitMQ lane is opt-in: it runs only when ``FRAMEWORK_TEST_BACKENDS`` lists
``rabbitmq``. The broker on these machines is shared, and while the backend's reliability tests
are still to come (kill -9, dropped connections) a plain ``pytest`` should not load it.

The AWS lane runs against moto's server, started in this process on a free loopback port the
first time a test asks for it (``moto_endpoint``), unless ``FRAMEWORK_TEST_AWS_URL`` names
another endpoint. It never talks to real AWS.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from framework.backends import from_url
from framework.exceptions import MissingDependencyError

# delete_on_exit: the backend deletes what it declared when it disconnects, so test runs leave
# no queues behind on the shared broker.
AMQP = os.environ.get(
    "FRAMEWORK_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/?delete_on_exit=1"
)
OPT_IN = {"rabbitmq", "aws"}
# Empty: the lane starts moto's server in-process (see ``moto_endpoint``).
AWS = os.environ.get("FRAMEWORK_TEST_AWS_URL", "")
BACKENDS = [
    pytest.param(("memory", "memory://"), id="memory"),
    pytest.param(("rabbitmq", AMQP), id="rabbitmq", marks=pytest.mark.rabbitmq),
    pytest.param(("aws", AWS), id="aws", marks=pytest.mark.aws),
    # A fresh file under the test's tmp_path (see ``backend_url``).
    pytest.param(("sqlite", "sqlite:///"), id="sqlite"),
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
    if parts.scheme in ("memory", "sqlite"):
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

    The in-process memory backend and the embedded SQLite file are always reachable.
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


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


MOTO_ENDPOINTS: set[str] = set()


def on_moto(url: str) -> bool:
    """True if ``url`` is the aws:// lane served by this session's moto server."""
    endpoint = parse_qs(urlsplit(url).query).get("endpoint_url", [""])[0]
    return url.startswith("aws:") and endpoint in MOTO_ENDPOINTS


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``moto_gap`` marker."""
    config.addinivalue_line(
        "markers",
        "moto_gap(reason, strict=True): the test fails on the aws:// lane only because moto "
        "departs from AWS; it is expected to fail there, and must pass everywhere else",
    )


def expect_moto_gap(request: pytest.FixtureRequest, url: str) -> None:
    """Mark the test xfail on moto if it carries ``@pytest.mark.moto_gap(reason)``.

    Strict unless the marker says ``strict=False``: once moto behaves as AWS does, a strict
    gap's test passes and the suite says so.
    """
    marker = request.node.get_closest_marker("moto_gap")
    if marker is not None and on_moto(url):
        reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
        # strict=False for a gap that shows only in some runs (a race inside moto).
        strict = bool(marker.kwargs.get("strict", True))
        request.applymarker(pytest.mark.xfail(reason=f"moto: {reason}", strict=strict))


def _calm_moto_long_polls() -> None:
    """Make moto's SQS long poll wait between looks instead of spinning.

    moto's ReceiveMessage loop waits for "any visible message"; when the only visible ones
    belong to FIFO groups with a message in flight, that wait returns at once and the poll
    spins for its whole WaitTimeSeconds, holding the GIL this process's event loop needs (a
    send then takes 100 ms and one-second visibility timeouts expire). Waiting 20 ms between
    looks, or until a message arrives, keeps every result the same.
    """
    from moto.sqs.models import Queue

    def wait_for_messages(self: Queue, timeout: int) -> None:
        with self._messages_lock:
            self._messages_lock.wait(timeout=min(timeout, 0.02))

    Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]  # see above


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Run moto's server (SQS, SNS, SES v2) in this process on a free loopback port."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # dev extra not installed
        pytest.skip(f"moto is not installed ({exc}): pip install -e '.[dev]'")
    # One line per request at INFO would fill every failure report.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    _calm_moto_long_polls()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    MOTO_ENDPOINTS.add(endpoint)
    try:
        yield endpoint
    finally:
        MOTO_ENDPOINTS.discard(endpoint)
        server.stop()


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    """The URL of the backend under test: each test that takes it runs once per backend."""
    name: str
    url: str
    name, url = request.param
    required = name in required_backends()
    if name in OPT_IN and not required:
        pytest.skip(f"{name} lane is opt-in: set FRAMEWORK_TEST_BACKENDS=memory,{name}")
    if name == "aws" and not url:
        try:
            import aiobotocore  # noqa: F401  # only to know whether the lane can run
        except ImportError as exc:
            if required:
                pytest.fail(f"aws backend is not available: {exc}")
            pytest.skip(f"aws backend is not available: {exc}")
        url = f"aws://us-east-1?endpoint_url={request.getfixturevalue('moto_endpoint')}"
        expect_moto_gap(request, url)
    if name == "sqlite":
        tmp_path = request.getfixturevalue("tmp_path")
        url = f"sqlite:///{tmp_path / 'conformance.db'}"
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


# Names handed out to tests in this session: swept off the RabbitMQ broker at the end.
HANDED_OUT: set[str] = set()


@pytest.fixture
def queue_name() -> str:
    """A fresh queue name, ``q-<12 hex digits>``, so tests never share a queue on a broker."""
    name = f"q-{uuid.uuid4().hex[:12]}"
    HANDED_OUT.add(name)
    return name


@pytest.fixture
def topic_name() -> str:
    """A fresh topic name, ``t-<12 hex digits>``, so tests never share a topic on a broker."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    HANDED_OUT.add(name)
    return name


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Delete whatever a failed or interrupted test left on the RabbitMQ broker, by name."""
    if "rabbitmq" not in required_backends() or not HANDED_OUT or not reachable(AMQP):
        return
    from tests.rabbitmq_cleanup import sweep

    queues, exchanges = sweep(AMQP, HANDED_OUT)
    if queues or exchanges:
        print(f"\nrabbitmq: deleted {len(queues)} queue(s), {len(exchanges)} exchange(s) left over")  # noqa: T201

"""`framework run --processes 2` on RabbitMQ and SQS: the children share the port and the queue.

The supervisor of ``test_processes.py``, on ``amqp://`` (the shared broker, when
``FRAMEWORK_TEST_BACKENDS`` lists rabbitmq) and on ``aws://`` (this session's moto server on
loopback). Each test sends orders through the one HTTP port, prints sent / handled /
duplicates / lost over both children (every order handled once, none lost), SIGTERMs the
supervisor (every child and the supervisor exit 0), and deletes the queues the app declared.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli.test_processes import answering, count, send, start
from tests.conftest import AMQP, reachable, redacted, required_backends

# processes_app's queue: a retry delay of 50 ms (RabbitMQ keeps it in a delay queue of its own).
RETRY_DELAY = 0.05


@dataclass
class Lane:
    """A broker the children share: its URL, their environment, the queues to delete after."""

    name: str
    url: str
    env: dict[str, str] = field(default_factory=dict)


def rabbitmq_lane(queue: str) -> Iterator[Lane]:
    if "rabbitmq" not in required_backends():
        pytest.skip("set FRAMEWORK_TEST_BACKENDS=rabbitmq to test against the broker")
    if not reachable(AMQP):
        pytest.fail(f"rabbitmq backend required but {redacted(AMQP)} is not reachable")
    from framework.backends.rabbitmq.topology import delay_milliseconds, delay_queue_name
    from tests.backends.rabbitmq.fleet import broker_url
    from tests.rabbitmq_cleanup import delete_named

    # No delete_on_exit: the first child to stop would delete the queue under the other.
    yield Lane("rabbitmq", broker_url(AMQP))
    delay = delay_queue_name(queue, delay_milliseconds(RETRY_DELAY))
    asyncio.run(delete_named(AMQP, [queue, f"{queue}-dlq", delay], []))


def aws_lane(queue: str, endpoint: str) -> Iterator[Lane]:
    pytest.importorskip("aiobotocore", reason="the aws extra is not installed")
    from aiobotocore.session import get_session

    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    yield Lane("aws", f"aws://us-east-1?endpoint_url={endpoint}", credentials)

    async def delete() -> None:
        sqs = get_session().create_client(
            "sqs",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        async with sqs as client:
            listed = await client.list_queues(QueueNamePrefix=queue)
            for url in listed.get("QueueUrls", []):
                await client.delete_queue(QueueUrl=url)

    asyncio.run(delete())


@pytest.fixture(params=["rabbitmq", "aws"])
def lane(request: pytest.FixtureRequest, queue_name: str) -> Iterator[Lane]:
    """The broker under test; the app's queues (``queue_name``, its DLQ ...) deleted after."""
    if request.param == "rabbitmq":
        yield from rabbitmq_lane(queue_name)
    else:
        yield from aws_lane(queue_name, request.getfixturevalue("moto_endpoint"))


def test_two_processes_share_the_port_and_the_queue(
    lane: Lane, queue_name: str, tmp_path: Path
) -> None:
    """Both children answer on the one port; 200 orders are each handled once across them;
    SIGTERM stops both and the supervisor exits 0."""
    env = {**lane.env, "PROCESSES_QUEUE": queue_name, "PROCESSES_MAIL": "0"}
    supervisor = start(tmp_path, backend=lane.url, env=env)
    try:
        children = answering(supervisor, 2)
        assert children == set(supervisor.children())
        sent = send(supervisor.url, [f"{lane.name}-{i}" for i in range(200)])
        assert len(sent) == 200
        assert count(supervisor, sent) == (0, 0)
        handlers = {line.split()[1] for line in supervisor.log.read_text().splitlines()}
        print(f"{lane.name}: handled by {len(handlers)} processes")  # noqa: T201
    finally:
        out = supervisor.stop()
    assert supervisor.process.returncode == 0, out
    for pid in children:
        assert f"pid={pid} exit_code=0" in out, out
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "processes.stopping signal='SIGTERM'" in out, out

"""Fixtures for lambda_handler on moto's server: declared queues, a boto3 SQS client, records.

The handler runs its own event loop (as on Lambda), so these tests are plain functions; the
resources are declared first by the AWS backend, as ``framework export sam`` would deploy them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from framework import App
from framework.aws import LambdaHandler, lambda_handler
from framework.aws.local import sqs_event
from framework.backends.aws.settings import physical_name

boto3 = pytest.importorskip("boto3", reason="the dev extra is not installed")
pytest.importorskip("aiobotocore", reason="the aws extra is not installed")


@pytest.fixture
def aws_url(moto_endpoint: str) -> str:
    """The ``aws://`` URL of this session's moto server (loopback only)."""
    return f"aws://us-east-1?endpoint_url={moto_endpoint}"


@pytest.fixture
def prefix() -> str:
    """A fresh name prefix, so tests never share a queue on the server."""
    return f"l{uuid.uuid4().hex[:10]}"


class SQS:
    """A boto3 SQS client on moto, by framework queue name: what Lambda's poller does."""

    def __init__(self, endpoint: str) -> None:
        self.client = boto3.client(
            "sqs",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def url(self, queue: str) -> str:
        return str(self.client.get_queue_url(QueueName=physical_name(queue))["QueueUrl"])

    def arn(self, queue: str) -> str:
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url(queue), AttributeNames=["QueueArn"]
        )
        return str(attributes["Attributes"]["QueueArn"])

    def receive(self, queue: str, *, count: int = 10, visibility: int = 30) -> list[Any]:
        """Receive up to ``count`` messages, long-polling a second, as the mapping would."""
        response = self.client.receive_message(
            QueueUrl=self.url(queue),
            MaxNumberOfMessages=count,
            WaitTimeSeconds=1,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def event(self, queue: str, **kwargs: Any) -> dict[str, Any]:
        """Receive a batch and return it as the event Lambda would send."""
        return sqs_event(self.receive(queue, **kwargs), queue_arn=self.arn(queue))

    def send(self, queue: str, body: str, **kwargs: Any) -> str:
        response = self.client.send_message(QueueUrl=self.url(queue), MessageBody=body, **kwargs)
        return str(response["MessageId"])

    def delete_succeeded(self, queue: str, records: list[Any], answer: dict[str, Any]) -> None:
        """Delete the records the answer does not list, as Lambda does."""
        listed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for record in records:
            if record["messageId"] not in listed:
                self.client.delete_message(
                    QueueUrl=self.url(queue), ReceiptHandle=record["receiptHandle"]
                )

    def counts(self, queue: str) -> tuple[int, int]:
        """(visible, in flight) as SQS reports them."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url(queue),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )


@pytest.fixture
def sqs(moto_endpoint: str) -> SQS:
    """boto3 on moto."""
    return SQS(moto_endpoint)


def declare(app: App, url: str) -> None:
    """Create the app's queues, topics and subscriptions on moto, as the template would."""

    async def work() -> None:
        async with app.run(url, workers=False):
            pass

    asyncio.run(work())


@pytest.fixture
def start(aws_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Return ``start(app)``: declare the app on moto and give its Lambda handler on it."""
    monkeypatch.setenv("FRAMEWORK_BACKEND", aws_url)
    handlers: list[LambdaHandler] = []

    def make(app: App) -> LambdaHandler:
        declare(app, aws_url)
        handler = lambda_handler(app)
        handlers.append(handler)
        return handler

    yield make
    for handler in handlers:
        handler.close()

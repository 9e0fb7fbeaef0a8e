"""The backend's clients are made on first use, one per service, even when tasks ask at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from framework.backends.aws import AWSBackend
from framework.backends.aws.clients import Clients
from framework.backends.aws.settings import AWSSettings
from framework.messages import Outgoing
from framework.registry import QueueSpec


async def test_connecting_makes_no_client_and_a_send_makes_only_sqs(
    aws_url: str, name: str
) -> None:
    """A connected backend has no client; declaring and sending make SQS's and no other."""
    async with AWSBackend.from_url(aws_url) as backend:
        assert backend.clients_made == ()
        await backend.declare_queue(QueueSpec(name))
        await backend.send(name, Outgoing(b"hi"))
        assert backend.clients_made == ("sqs",)
        assert [d.body for d in await backend.receive(name, limit=1, wait=1)] == [b"hi"]
        assert backend.clients_made == ("sqs",)
    assert backend.clients_made == ()


class SlowToMake(Clients):
    """Clients whose making suspends, as when credentials come over the network (IMDS)."""

    def __init__(self, settings: AWSSettings) -> None:
        super().__init__(settings)
        self.makes = 0

    async def _make(self, service: str) -> Any:
        self.makes += 1
        await asyncio.sleep(0.01)
        return await super()._make(service)


async def test_concurrent_first_uses_make_one_client(aws_url: str, name: str) -> None:
    """Ten tasks asking for SQS's client while it is being made all get the one made."""
    clients = SlowToMake(AWSSettings.from_url(aws_url))
    try:
        got = await asyncio.gather(*(clients.get("sqs") for _ in range(10)))
        assert all(client is got[0] for client in got)
        assert clients.makes == 1
        sqs = clients.lazy("sqs")
        await asyncio.gather(*(sqs.create_queue(QueueName=f"{name}-{i}") for i in range(3)))
        assert (clients.made, clients.makes) == (("sqs",), 1)
        for i in range(3):
            await sqs.delete_queue(
                QueueUrl=(await sqs.get_queue_url(QueueName=f"{name}-{i}"))["QueueUrl"]
            )
    finally:
        await clients.aclose()


async def test_a_closed_backend_makes_no_client(aws_url: str) -> None:
    """After leaving the backend, using a client it handed out raises, naming the cause."""
    async with AWSBackend.from_url(aws_url) as backend:
        sqs = backend.sqs.client
    with pytest.raises(RuntimeError, match="not connected"):
        await sqs.list_queues()

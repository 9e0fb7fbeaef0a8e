"""``App.run(declare=False)``: nothing is created; the app starts only if everything exists."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from framework import App, MissingResourcesError
from framework.backends.memory import MemoryBackend


class Job(BaseModel):
    id: int


def make_app() -> App:
    app = App("no-declare")

    @app.on_queue("jobs")
    async def work(job: Job) -> None: ...

    app.topic("events")

    @app.on_topic("events", name="audit")
    async def audit(job: Job) -> None: ...

    return app


async def test_missing_resources_are_listed_and_nothing_is_created() -> None:
    backend = MemoryBackend()
    with pytest.raises(MissingResourcesError) as caught:
        async with make_app().run(backend, declare=False):
            pass
    assert caught.value.missing == [
        "queue 'jobs'",
        "queue 'jobs-dlq'",
        "queue 'events.audit'",
        "queue 'events.audit-dlq'",
        "topic 'events'",
        "subscription 'audit' of topic 'events'",
    ]
    assert await backend.queues() == []


async def test_the_app_starts_when_everything_was_provisioned_before() -> None:
    backend = MemoryBackend()
    provisioned: list[str] = []
    await make_app().run(backend, workers=False).declare(provisioned.append)
    assert len(provisioned) == 6
    app = make_app()
    async with app.run(backend, declare=False) as runtime:
        await app.send("jobs", Job(id=1))
        assert (await runtime.stats())["jobs"].depth + (await runtime.stats())[
            "jobs"
        ].in_flight == 1


async def test_a_subscription_missing_alone_is_reported() -> None:
    backend = MemoryBackend()
    app = make_app()
    runtime = app.run(backend, workers=False)
    for spec in app.registry.queues.values():
        await backend.declare_queue(spec)
    for topic in app.registry.topics.values():
        await backend.declare_topic(topic)
    with pytest.raises(MissingResourcesError, match="subscription 'audit' of topic 'events'"):
        await app.run(backend, declare=False).check_declared()
    await runtime.declare()
    await app.run(backend, declare=False).check_declared()

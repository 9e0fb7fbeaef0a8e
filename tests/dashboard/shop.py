"""The app the dashboard tests watch: a route, a queue that fails on demand, a topic, mail."""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel

from framework import App, Context, Email


class Job(BaseModel):
    """A job taking ``seconds``; ``fail`` makes its handler raise until ``healed`` has its id."""

    id: str
    fail: bool = False
    seconds: float = 0.0


def make_app(admin_token: str | None = None) -> tuple[App, list[Any], set[str]]:
    """Return the app, what its handlers saw, and the ids healed (no longer failing)."""
    app = App("dash", admin_token=admin_token)
    seen: list[Any] = []
    healed: set[str] = set()

    @app.route("/jobs", methods=["POST"], status_code=202, version="v1")
    async def create(job: Job) -> dict[str, str]:
        await app.send("jobs", job)
        return {"accepted": job.id}

    @app.route("/health", methods=["GET"], version="v2")
    async def health() -> dict[str, str]:
        return {"ok": "yes"}

    @app.on_queue("jobs", max_receive_count=2, retry_delay=0, concurrency=2)
    async def work(job: Job, ctx: Context) -> None:
        if job.seconds:
            await anyio.sleep(job.seconds)
        if job.fail and job.id not in healed:
            raise ValueError(f"job {job.id} cannot be done")
        seen.append(("jobs", job.id, ctx.message.receive_count))

    @app.on_topic("events", filter_policy={"kind": ["created"]}, name="audit")
    async def audit(body: Any) -> None:
        seen.append(("events", body))

    app.queue("parked")

    @app.on_email(recipients=["support@dash.example"])
    async def support(mail: Email) -> None:
        seen.append(("mail", mail.subject))

    return app, seen, healed

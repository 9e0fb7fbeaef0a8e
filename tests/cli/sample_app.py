"""A small app the CLI tests run in a real `framework run` process."""

from __future__ import annotations

import anyio
from pydantic import BaseModel

from framework import App, Context

app = App("sample")


class Job(BaseModel):
    id: str
    fail: bool = False
    seconds: float = 0.0


@app.route("/jobs", methods=["POST"], status_code=202)
async def submit(job: Job) -> dict[str, str]:
    """Queue a job."""
    await app.send("jobs", job)
    return {"accepted": job.id}


@app.on_queue("jobs", visibility_timeout=5, max_receive_count=2, retry_delay=0.05)
async def work(job: Job, ctx: Context) -> None:
    """Fail when asked; sleep as long as asked."""
    if job.seconds:
        await anyio.sleep(job.seconds)
    if job.fail:
        raise RuntimeError(f"job {job.id} failed on purpose")
    ctx.logger.info("job.done", extra={"fields": {"job": job.id}})


app.topic("events")

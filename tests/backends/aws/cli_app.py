"""The app the AWS CLI tests run in real ``framework`` processes; names come from the environment.

- ``FW_AWS_QUEUE``: the queue (its dead-letter queue is ``QUEUE-dlq``), handled by ``work``;
- ``FW_AWS_TOPIC``: a topic with the subscription ``audit`` (queue ``TOPIC.audit``);
- ``FW_AWS_RESULTS``: the file ``work`` appends ``D <id> <receive count>`` to per handled job;
- ``FW_AWS_FAIL_WHILE``: a path; a job with ``fail=true`` raises while that file exists. The
  queue allows one receive, so the first failure dead-letters the job at once;
- ``FW_AWS_MAIL``: an address; when set, an ``@on_email`` rule for it (queue
  ``email-support_QUEUE``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from framework import App, Context, Email


class Job(BaseModel):
    id: str
    fail: bool = False


def make_app(
    queue: str,
    topic: str,
    results: str,
    fail_while: str | None = None,
    mail: str | None = None,
) -> App:
    """The app, on the given names (the tests build one in-process too)."""
    app = App("aws-cli")

    @app.on_queue(queue, visibility_timeout=5, max_receive_count=1, retry_delay=0.2)
    async def work(job: Job, ctx: Context) -> None:
        """Fail while the marker file exists (for jobs asking to), else record the job."""
        if job.fail and fail_while is not None and Path(fail_while).exists():  # noqa: ASYNC240
            raise RuntimeError(f"job {job.id} failed on purpose")
        # One small local write per job: blocking, and fine in a test app.
        with Path(results).open("a", encoding="utf-8") as file:  # noqa: ASYNC230
            file.write(f"D {job.id} {ctx.message.receive_count}\n")

    app.topic(topic)

    @app.on_topic(topic, name="audit", visibility_timeout=5)
    async def audit(job: Job) -> None:
        """Consume the topic's copies."""

    if mail is not None:

        async def support(email: Email) -> None:
            """Receive the address's mail."""

        # The rule's queue is email-FUNCTION: a name of this test's own.
        support.__name__ = f"support_{queue}"
        app.on_email([mail])(support)

    return app


QUEUE = os.environ.get("FW_AWS_QUEUE", "aws-cli-unset")
app = make_app(
    QUEUE,
    os.environ.get("FW_AWS_TOPIC", f"{QUEUE}-events"),
    os.environ.get("FW_AWS_RESULTS", os.devnull),
    os.environ.get("FW_AWS_FAIL_WHILE"),
    os.environ.get("FW_AWS_MAIL"),
)

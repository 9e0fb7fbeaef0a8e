"""The real ``framework`` command line against AWS (moto's server on loopback, ``--backend aws://``).

Every command runs in a subprocess (``python -m framework.cli``) with the dummy ``testing``
credentials, on the queues of ``cli_app.py`` under fresh names. The queues are declared by the
test (through the backend, as ``framework run`` would) or by ``framework provision``; dead
letters are made through the backend's ``dead_letter`` with reasons, or by a real worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("aiobotocore", reason="the aws extra is not installed")

from framework.backends.aws import AWSBackend
from framework.messages import DLQ_HEADERS, DeadLetterReason, Delivery, Outgoing
from framework.registry import QueueSpec, SubscriptionSpec, TopicSpec
from framework.runtime import Runtime
from tests.backends.aws.cli_app import make_app

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Names:
    """The fresh names of one test's ``cli_app`` resources."""

    queue: str
    topic: str

    @property
    def dlq(self) -> str:
        return f"{self.queue}-dlq"

    @property
    def audit(self) -> str:
        return SubscriptionSpec.queue_name(self.topic, "audit")


@pytest.fixture
def names() -> Names:
    token = uuid.uuid4().hex[:10]
    return Names(queue=f"cli-{token}", topic=f"cli-{token}-events")


def cli_env(names: Names, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``framework`` process: cli_app's names, dummy AWS credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FRAMEWORK_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        FW_AWS_QUEUE=names.queue,
        FW_AWS_TOPIC=names.topic,
        FW_AWS_RESULTS=str(tmp_path / "results"),
        **extra,
    )
    return env


def framework(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``framework ARGS`` to completion in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "framework.cli", *args],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def declare_app(backend: AWSBackend, names: Names) -> None:
    """Declare what cli_app declares, as ``framework run`` does on start."""
    for name in (names.queue, names.audit):
        spec = QueueSpec.from_options(name, visibility_timeout=5, max_receive_count=1)
        await backend.declare_queue(spec)
        dlq = spec.dead_letter_spec()
        assert dlq is not None
        await backend.declare_queue(dlq)
    await backend.declare_topic(TopicSpec.from_options(names.topic))
    queue = QueueSpec.from_options(names.audit, visibility_timeout=5)
    await backend.subscribe(SubscriptionSpec(topic=names.topic, name="audit", queue=queue))


def job(job_id: str, **fields: object) -> Outgoing:
    return Outgoing(
        body=json.dumps({"id": job_id, **fields}).encode(),
        headers={"content-type": "application/json"},
    )


async def receive_all(backend: AWSBackend, queue: str, count: int) -> list[Delivery]:
    """Receive ``count`` messages of ``queue`` (leased), or fail after 10 s."""
    got: list[Delivery] = []
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        got.extend(await backend.receive(queue, limit=count - len(got), wait=1))
    assert len(got) == count, f"{queue}: received {len(got)} of {count}"
    return got


async def until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_queues_json_and_the_apps_table(
    backend: AWSBackend, aws_url: str, names: Names, tmp_path: Path
) -> None:
    """``framework queues --queue NAME --json`` reports SQS's counts, and the DLQ's total on the
    queue; ``framework queues APP`` prints the app's queues as a table."""
    await declare_app(backend, names)
    for n in range(3):
        await backend.send(names.queue, job(f"j{n}"))
    [first] = await receive_all(backend, names.queue, 1)
    reason = DeadLetterReason(names.queue, 1, "ValueError", "bad", datetime.now(UTC))
    await backend.dead_letter(first, reason=reason)
    env = cli_env(names, tmp_path)

    result = framework(
        env, "queues", "--queue", names.queue, "--queue", names.dlq, "--backend", aws_url, "--json"
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["queues"]}
    assert set(rows) == {names.queue, names.dlq}
    assert rows[names.queue]["depth"] == 2
    assert rows[names.queue]["dead_letters"] == 1
    assert rows[names.queue]["dead_letter_queue"] == names.dlq
    assert rows[names.dlq]["depth"] == 1

    table = framework(env, "queues", "cli_app:app", "--backend", aws_url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[0] == "QUEUE"
    by_name = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(by_name) == {names.queue, names.dlq, names.audit, f"{names.audit}-dlq"}
    assert by_name[names.queue] == ["2", "0", "0", "1"]
    # The subscription queue is listed under its framework name, dots and all.
    assert by_name[names.audit] == ["0", "0", "0", "0"]


async def test_redrive_moves_dead_letters_back_without_their_reasons(
    backend: AWSBackend, aws_url: str, names: Names, tmp_path: Path
) -> None:
    """Dead letters made with reasons go back to their source queue through ``framework
    redrive DLQ --backend aws://``: same ids and bodies, no dead-letter headers, a fresh
    receive count; the DLQ is empty."""
    await declare_app(backend, names)
    ids = [f"j{n}" for n in range(5)]
    for job_id in ids:
        await backend.send(names.queue, job(job_id))
    for delivery in await receive_all(backend, names.queue, len(ids)):
        reason = DeadLetterReason(
            names.queue, delivery.receive_count, "ValueError", "bad", datetime.now(UTC)
        )
        await backend.dead_letter(delivery, reason=reason)
    assert (await backend.stats(names.dlq)).depth == len(ids)

    result = framework(cli_env(names, tmp_path), "redrive", names.dlq, "--backend", aws_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"moved {len(ids)} messages from {names.dlq}"
    assert f"moved {len(ids)}/{len(ids)}" in result.stderr

    back = await receive_all(backend, names.queue, len(ids))
    assert sorted(json.loads(d.body)["id"] for d in back) == ids
    for delivery in back:
        assert not set(delivery.headers) & set(DLQ_HEADERS), delivery.headers
        assert delivery.receive_count == 1
        await backend.ack(delivery)
    assert (await backend.stats(names.dlq)).depth == 0


@pytest.mark.timeout(120)
async def test_a_workers_dead_letters_are_redriven_and_handled(
    backend: AWSBackend, aws_url: str, names: Names, tmp_path: Path
) -> None:
    """A worker dead-letters failing jobs and a poison body; after the fix, ``framework redrive
    --json`` moves them back and a worker process (``framework run --workers-only``) handles
    the jobs with receive count 1 and dead-letters the poison body again; ``framework purge
    DLQ --yes`` then deletes it.

    The first worker runs in this process with one-second long polls: a stopped worker's
    long poll stays open on SQS (up to 20 s for ``framework run``) and may still take a
    message the redrive sends meanwhile (docs/backends/aws.md, "Long polls").
    """
    failing = tmp_path / "failing"
    failing.touch()
    env = cli_env(names, tmp_path, FW_AWS_FAIL_WHILE=str(failing))
    await declare_app(backend, names)
    good, bad = ["g0", "g1"], ["b0", "b1", "b2"]
    for job_id in good:
        await backend.send(names.queue, job(job_id))
    for job_id in bad:
        await backend.send(names.queue, job(job_id, fail=True))
    await backend.send(names.queue, job("poison", id=None))  # fails validation

    def dead(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return (await backend.sqs.counts(names.dlq)).total == count

        return check

    results = tmp_path / "results"
    app = make_app(names.queue, names.topic, str(results), str(failing))
    async with Runtime(
        app.registry,
        AWSBackend.from_url(aws_url),
        events=app.events,
        app=app,
        poll_wait=1.0,
        grace=1.0,
    ):
        await until(dead(len(bad) + 1), 30, "the worker's dead letters")
    await asyncio.sleep(1.5)  # its last long poll ends
    assert {line.split()[1] for line in results.read_text().splitlines()} == set(good)

    failing.unlink()
    result = framework(env, "redrive", names.dlq, "--backend", aws_url, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"moved": len(bad) + 1}

    with worker(env, aws_url):
        await until(dead(1), 30, "the poison body to be dead-lettered again")

        async def all_done() -> bool:
            return len(results.read_text().splitlines()) == len(good) + len(bad)

        await until(
            all_done,
            30,
            f"the redriven jobs to be handled: {results.read_text()!r}, "
            f"{await backend.sqs.counts(names.queue)}, {await backend.sqs.counts(names.dlq)}",
        )
    done = [line.split() for line in results.read_text().splitlines()]
    assert {(i, count) for _, i, count in done if i in bad} == {(i, "1") for i in bad}

    purged = framework(env, "purge", names.dlq, "--yes", "--backend", aws_url)
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.strip() == f"purged 1 message from {names.dlq}"
    assert (await backend.sqs.counts(names.dlq)).total == 0


class worker:  # used as ``with worker(...)``, like a function
    """``framework run cli_app:app --workers-only`` until the block ends (SIGTERM, exit 0).

    Its output goes to a file, never a pipe nobody reads (a full pipe would block its logging).
    """

    def __init__(self, env: dict[str, str], url: str, *extra: str) -> None:
        self.command = [
            sys.executable,
            "-m",
            "framework.cli",
            "run",
            "cli_app:app",
            "--backend",
            url,
            "--workers-only",
            *extra,
        ]
        self.env = env
        self.log = Path(env["FW_AWS_RESULTS"]).with_name(f"worker-{uuid.uuid4().hex[:6]}.log")
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> subprocess.Popen[str]:
        with self.log.open("w") as output:
            process = self.process = subprocess.Popen(
                self.command, cwd=HERE, env=self.env, stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while "workers.started" not in self.log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                pytest.fail(f"the worker did not start its workers:\n{self.log.read_text()}")
            time.sleep(0.1)
        return process

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, self.log.read_text()


async def test_purge_empties_a_queue(
    backend: AWSBackend, aws_url: str, names: Names, tmp_path: Path
) -> None:
    """``framework purge QUEUE --yes --backend aws://`` counts and deletes its messages."""
    await declare_app(backend, names)
    for n in range(4):
        await backend.send(names.queue, job(f"j{n}"))
    result = framework(
        cli_env(names, tmp_path), "purge", names.queue, "--yes", "--backend", aws_url
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"purged 4 messages from {names.queue}"
    assert (await backend.sqs.counts(names.queue)).total == 0


async def test_send_and_publish(
    backend: AWSBackend, aws_url: str, names: Names, tmp_path: Path
) -> None:
    """``framework send`` and ``framework publish`` print the framework's message id; the queue
    and the topic's subscription queue receive the body and the attribute under that id."""
    await declare_app(backend, names)
    env = cli_env(names, tmp_path)
    sent = framework(
        env, "send", names.queue, '{"id": "s1"}', "--attribute", "tenant=acme", "--backend", aws_url
    )
    assert sent.returncode == 0, sent.stderr
    published = framework(
        env, "publish", names.topic, '{"id": "p1"}', "--attribute", "n=3", "--backend", aws_url
    )
    assert published.returncode == 0, published.stderr

    [queued] = await receive_all(backend, names.queue, 1)
    assert (queued.message_id, json.loads(queued.body)) == (sent.stdout.strip(), {"id": "s1"})
    assert queued.attributes == {"tenant": "acme"}
    assert queued.content_type == "application/json"
    [copy] = await receive_all(backend, names.audit, 1)
    assert (copy.message_id, json.loads(copy.body)) == (published.stdout.strip(), {"id": "p1"})
    assert copy.attributes == {"n": 3}


async def test_unknown_queues_and_topics_are_one_line_errors(
    aws_url: str, names: Names, tmp_path: Path
) -> None:
    """Every command on a queue or topic missing on AWS exits 1 naming it, no traceback."""
    env = cli_env(names, tmp_path)
    missing = f"{names.queue}-missing"
    for command in (
        ("redrive", missing),
        ("purge", missing, "--yes"),
        ("send", missing, "{}"),
        ("queues", "--queue", missing),
    ):
        result = framework(env, *command, "--backend", aws_url)
        assert result.returncode == 1, (command, result.stdout)
        assert result.stderr.startswith(f"error: queue {missing!r} does not exist"), result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
    result = framework(env, "publish", missing, "{}", "--backend", aws_url)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: topic {missing!r} does not exist"), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.timeout(90)
async def test_provision_check_create_and_run_without_declaring(
    aws_url: str, names: Names, tmp_path: Path
) -> None:
    """``provision --check`` lists what is missing and ``run --no-declare`` refuses with the
    same list; ``provision`` creates it with a progress line each; then the check passes and
    a worker started with ``--no-declare`` runs."""
    env = cli_env(names, tmp_path)
    expected = [
        f"queue '{names.queue}'",
        f"queue '{names.dlq}'",
        f"queue '{names.audit}'",
        f"queue '{names.audit}-dlq'",
        f"topic '{names.topic}'",
        f"subscription 'audit' of topic '{names.topic}'",
    ]

    missing = framework(env, "provision", "cli_app:app", "--backend", aws_url, "--check")
    assert missing.returncode == 1, missing.stderr
    assert [line.removeprefix("  - ") for line in missing.stderr.splitlines()[1:]] == expected

    refused = framework(
        env, "run", "cli_app:app", "--backend", aws_url, "--workers-only", "--no-declare"
    )
    assert refused.returncode == 1
    assert "6 resource(s) the app declares do not exist" in refused.stderr
    assert all(f"  - {line}" in refused.stderr for line in expected), refused.stderr
    assert "Traceback" not in refused.stderr

    made = framework(env, "provision", "cli_app:app", "--backend", aws_url)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "provisioned 6 resources on aws://"
    assert made.stderr.splitlines() == [
        f"[{n}/6] {line}" for n, line in enumerate(expected, start=1)
    ]

    present = framework(env, "provision", "cli_app:app", "--backend", aws_url, "--check")
    assert present.returncode == 0, present.stderr
    assert present.stdout.strip() == "all 6 resources exist on aws://"

    with worker(env, aws_url, "--no-declare"):
        pass


@pytest.mark.timeout(60)
async def test_provision_counts_the_mail_rules_it_declares(
    aws_url: str, names: Names, tmp_path: Path
) -> None:
    """With an ``@on_email`` rule, ``provision`` declares its SES receipt rule too: one more
    progress line, counted in the total and in the summary."""
    env = cli_env(names, tmp_path, FW_AWS_MAIL="help@cli.example")
    made = framework(env, "provision", "cli_app:app", "--backend", aws_url)
    assert made.returncode == 0, made.stderr
    lines = made.stderr.splitlines()
    assert len(lines) == 9, made.stderr  # 6 queues, a topic, a subscription, a mail rule
    assert all(line.startswith(f"[{n}/9] ") for n, line in enumerate(lines, start=1)), lines
    assert lines[-1].startswith(f"[9/9] mail rule 'email-support_{names.queue}'"), lines[-1]
    assert made.stdout.strip() == "provisioned 9 resources on aws://"
    present = framework(env, "provision", "cli_app:app", "--backend", aws_url, "--check")
    assert present.returncode == 0, present.stderr

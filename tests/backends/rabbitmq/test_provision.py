"""``framework provision`` and ``framework run --no-declare`` against the broker.

``provision --check`` lists what is missing and creates nothing; ``provision`` creates it; then
the check passes and a worker started with ``--no-declare`` runs on what is there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from tests.backends.rabbitmq.fleet import framework_cli

pytestmark = pytest.mark.rabbitmq

HERE = Path(__file__).parent


@pytest.fixture
def queue(broker: str) -> Iterator[str]:
    """A fresh queue name for worker_app.py; the queue and its DLQ are deleted afterwards."""
    name = f"pv-{uuid.uuid4().hex[:10]}"
    yield name

    async def delete() -> None:
        connection = await aio_pika.connect(broker.split("?", 1)[0])
        async with connection:
            channel = await connection.channel()
            for queue_name in (name, f"{name}-dlq"):
                await channel.queue_delete(queue_name)

    asyncio.run(delete())


def cli_env(queue: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FW_MP_QUEUE": queue, "FW_MP_RESULTS": str(tmp_path / "results")}


def framework(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return framework_cli(*args, env=env)


def test_provision_check_create_and_run_without_declaring(
    broker: str, queue: str, tmp_path: Path
) -> None:
    url = broker.split("?", 1)[0]  # no delete_on_exit: provisioning must outlive the command
    env = cli_env(queue, tmp_path)

    missing = framework(env, "provision", "worker_app:app", "--backend", url, "--check")
    assert missing.returncode == 1, missing.stderr
    assert f"  - queue '{queue}'" in missing.stderr
    assert f"  - queue '{queue}-dlq'" in missing.stderr

    refused = framework(
        env, "run", "worker_app:app", "--backend", url, "--workers-only", "--no-declare"
    )
    assert refused.returncode == 1
    assert "2 resource(s) the app declares do not exist" in refused.stderr

    made = framework(env, "provision", "worker_app:app", "--backend", url)
    assert made.returncode == 0, made.stderr
    assert "provisioned 2 resources on amqp://" in made.stdout
    assert f"[1/2] queue '{queue}'" in made.stderr

    present = framework(env, "provision", "worker_app:app", "--backend", url, "--check")
    assert present.returncode == 0, present.stderr
    assert "all 2 resources exist" in present.stdout

    command = ["run", "worker_app:app", "--backend", url, "--workers-only", "--no-declare"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "framework.cli", *command],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert worker.stdout is not None
        for line in worker.stdout:
            if "workers.started" in line:
                break
        else:
            pytest.fail("the worker exited before starting its workers")
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, output

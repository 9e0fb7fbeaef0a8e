"""The durable default: `framework run APP` with no backend uses ``.framework/APP.db``, and the
operations commands work on that file directly, with no server running."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from framework.backends.sqlite import SQLiteBackend
from framework.cli.main import cli
from framework.messages import DeadLetterReason, Outgoing

APP = """
from framework import App

app = App("{name}")


@app.on_queue("orders", visibility_timeout=5)
async def handle(body: dict) -> None:
    pass


@app.on_topic("events", filter_policy={{"type": ["created"]}}, name="billing")
async def bill(body: dict) -> None:
    pass
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A folder with an app module and no backend configured; the cwd. Returns (folder, APP)."""
    name = f"shop{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{name}.py").write_text(APP.format(name=name))
    for variable in ("FRAMEWORK_BACKEND", "FRAMEWORK_ENV", "FRAMEWORK_SERVER"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path, name


def run(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process with the click runner; return status, stdout, stderr."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def depths(target: str) -> dict[str, int]:
    """`framework queues APP --json`, as {queue: depth}."""
    code, out, err = run("queues", target, "--json")
    assert code == 0, err
    return {row["name"]: row["depth"] for row in json.loads(out)["queues"]}


def test_run_without_a_backend_creates_and_names_the_apps_file(project: tuple[Path, str]) -> None:
    """`framework run APP` with nothing configured opens sqlite:///.framework/APP.db, creating
    it on first use, and says where in its start log; SIGTERM exits 0; the next start reuses it."""
    folder, name = project
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEWORK_")}
    logs = []
    for _ in range(2):
        process = subprocess.Popen(
            [sys.executable, "-m", "framework.cli", "run", f"{name}:app", "--workers-only"],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        try:
            deadline = time.monotonic() + 20
            lines = []
            while time.monotonic() < deadline:
                line = process.stdout.readline()
                lines.append(line)
                if "app.started" in line or not line:
                    break
            process.send_signal(signal.SIGTERM)
            rest, _ = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, "".join(lines) + rest
        logs.append("".join(lines))
    path = folder / ".framework" / f"{name}.db"
    assert path.is_file()
    first, second = (next(x for x in log.splitlines() if "backend.opened" in x) for log in logs)
    assert str(path) in first
    assert "created=True" in first
    assert "created=False" in second


def test_operations_work_on_the_file_with_no_server(project: tuple[Path, str]) -> None:
    """provision, queues, send, publish, purge and redrive all act on .framework/APP.db."""
    folder, name = project
    target = f"{name}:app"
    code, _, err = run("provision", target)
    assert code == 0, err
    assert (folder / ".framework" / f"{name}.db").is_file()
    assert depths(target) == {
        "orders": 0,
        "orders-dlq": 0,
        "events.billing": 0,
        "events.billing-dlq": 0,
    }

    # No APP: the one app database in .framework/ is the one.
    code, out, err = run("send", "orders", '{"id": "1"}')
    assert code == 0, err
    assert out.strip()
    code, _, err = run("publish", "events", '{"id": "2"}', "--attribute", "type=created")
    assert code == 0, err
    code, _, err = run("publish", "events", '{"id": "3"}', "--attribute", "type=other")
    assert code == 0, err
    assert depths(target)["orders"] == 1
    assert depths(target)["events.billing"] == 1  # the filter policy dropped type=other

    code, out, err = run("purge", "orders", "--yes")
    assert (code, out.strip()) == (0, "purged 1 message from orders"), err

    url = f"sqlite:///{folder / '.framework' / f'{name}.db'}"

    async def dead_letter() -> None:
        async with SQLiteBackend.from_url(url) as backend:
            await backend.send("orders", Outgoing(body=b'{"id": "4"}'))
            [delivery] = await backend.receive("orders", limit=1, wait=0)
            reason = DeadLetterReason("orders", 1, "RuntimeError", "boom", datetime.now(UTC))
            await backend.dead_letter(delivery, reason=reason)

    asyncio.run(dead_letter())
    assert depths(target)["orders-dlq"] == 1
    code, out, err = run("redrive", "orders-dlq")
    assert (code, out.strip()) == (0, "moved 1 message from orders-dlq"), err
    assert depths(target)["orders"] == 1
    assert depths(target)["orders-dlq"] == 0


def test_operations_without_an_app_database_say_what_to_do(project: tuple[Path, str]) -> None:
    """With no .framework/*.db yet, `framework send` says to run the app first, in one line."""
    code, _, err = run("send", "orders", "{}")
    assert code == 1
    assert "run `framework run APP` here first" in err
    assert err.count("\n") == 1


def test_operations_with_several_app_databases_ask_for_one(project: tuple[Path, str]) -> None:
    """Two app databases in .framework/: the command names both and asks for --backend."""
    folder, _ = project
    (folder / ".framework").mkdir()
    for stem in ("a", "b"):
        (folder / ".framework" / f"{stem}.db").write_bytes(b"")
    code, _, err = run("queues")
    assert code == 1
    assert "a.db" in err
    assert "b.db" in err
    assert "--backend" in err


def test_a_named_backend_still_wins(
    project: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FRAMEWORK_BACKEND (and so --backend and profiles) still choose the backend."""
    folder, name = project
    other = folder / "elsewhere.db"
    monkeypatch.setenv("FRAMEWORK_BACKEND", f"sqlite:///{other}")
    code, _, err = run("provision", f"{name}:app")
    assert code == 0, err
    assert other.is_file()
    assert not (folder / ".framework").exists()


def test_operations_on_a_missing_file_create_nothing(project: tuple[Path, str]) -> None:
    """`framework queues APP` where the app never ran says so and leaves no empty file."""
    folder, name = project
    code, _, err = run("queues", f"{name}:app")
    assert code == 1
    assert f".framework/{name}.db" in err
    assert "framework run APP" in err
    assert not (folder / ".framework").exists()

"""The README's first command works on a base install: ``pip install -e .`` with no extra.

The tests run with every extra installed, so an import of an optional library (botocore,
aio-pika, the mail-security packages) on the path of ``framework run`` would pass here and
fail on a user's machine. These tests hide the optional libraries from a fresh interpreter
and run the CLI in it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Every top-level module an extra brings (pyproject.toml: rabbitmq, aws, dkim, mail-security).
OPTIONAL = (
    "aio_pika",
    "aiormq",
    "pamqp",
    "aiobotocore",
    "botocore",
    "boto3",
    "moto",
    "dkim",
    "dns",
    "spf",
    "authheaders",
    "authres",
    "publicsuffix2",
    "clamdpy",
    "aiospamc",
)

# Runs the CLI with the optional modules unimportable, as on a base install.
CLI = f"""
import importlib.abc, sys

class Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Hidden())
from framework.cli.main import main
sys.argv = ["framework", *sys.argv[1:]]
main()
"""


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, *args]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("FRAMEWORK_BACKEND", None)
    return env


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(*args),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=environment(),
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_hider_hides() -> None:
    """The check can fail: an optional import in the CLI's process is refused."""
    code = CLI.replace("from framework.cli.main import main", "import botocore")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "No module named 'botocore'" in done.stderr


def test_every_command_answers_help_without_extras(tmp_path: Path) -> None:
    done = run_cli("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    commands = [
        line.split()[0]
        for line in done.stdout.split("Commands:", 1)[1].splitlines()
        if line.strip()
    ]
    assert "run" in commands
    for command in commands:
        sub = run_cli(command, "--help", cwd=tmp_path)
        assert sub.returncode == 0, (command, sub.stderr)


@pytest.mark.timeout(90)
def test_the_shop_runs_on_the_default_backend_without_extras(tmp_path: Path) -> None:
    """README: ``pip install -e . && framework run examples.shop:app``, then an order."""
    http, smtp = free_port(), free_port()
    process = subprocess.Popen(
        cli("run", "examples.shop:app", "--http-port", str(http), "--smtp-port", str(smtp)),
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                socket.create_connection(("127.0.0.1", http), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the gateway never opened its port"
                time.sleep(0.05)
        import httpx

        answer = httpx.post(
            f"http://127.0.0.1:{http}/orders",
            json={"id": "1", "total": 9.5, "email": "a@b.example"},
            timeout=10,
        )
        assert answer.status_code < 300, answer.text
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert (tmp_path / ".framework" / "shop.db").exists(), output

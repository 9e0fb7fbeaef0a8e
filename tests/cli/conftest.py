"""Fixtures for the CLI tests: a real `framework run` process on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).parent


def free_port() -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str, process: subprocess.Popen[str], within: float = 15) -> bool:
    """Poll ``url`` until it answers 200 (True), or ``process`` exits or ``within`` seconds
    pass (False)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@dataclass
class Served:
    """A running `framework run` process."""

    process: subprocess.Popen[str]
    url: str
    port: int

    def output(self) -> str:
        """Stop waiting and return what the process logged (after it exited)."""
        out, _ = self.process.communicate(timeout=15)
        return out


def framework(
    *args: str,
    cwd: Path = HERE,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the `framework` console script and capture its output (killed after ``timeout`` s)."""
    return subprocess.run(
        [sys.executable, "-m", "framework.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def served() -> Iterator[Served]:
    """`framework run sample_app:app` on a free port, stopped with SIGTERM afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "framework.cli",
            "run",
            "sample_app:app",
            # These tests reach the app through its admin API; the durable default would
            # leave a file in tests/cli/ and its messages to the next run.
            "--backend",
            "memory://",
            "--http-port",
            str(port),
            "--no-smtp",
            "--grace",
            "5",
        ],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    if not answers(f"{url}/_framework/health", process):
        process.kill()
        pytest.fail(f"framework run did not start: {process.communicate()[0]}")
    served = Served(process, url, port)
    yield served
    if process.poll() is None:
        process.terminate()
    try:
        process.communicate(timeout=15)  # also closes the pipe
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
    except ValueError:  # the test already read and closed the output
        pass

"""Real ``framework run`` processes of ``push_app.py``, for the multi-process WebSocket tests.

A ``Processes`` starts a gateway and a worker on one backend (a broker, a file), reads what
they recorded (``<event> <connection id> <pid>`` lines) and kills whatever it started. Each
backend's test adds how to queue a job without a gateway and how to clean up.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["HERE", "Processes", "free_port"]

HERE = Path(__file__).parent


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Processes:
    """A gateway process and a worker process of ``push_app.py`` on a fresh queue."""

    url: str
    folder: Path
    queue: str = field(default_factory=lambda: f"ws-{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=free_port)
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Seconds within which a push to the connection of a killed gateway is known to be gone.
    gone_within = 15.0

    @property
    def results(self) -> Path:
        """The file every process appends its records to."""
        return self.folder / "results"

    def start(self, role: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``framework run push_app:app`` as ``role`` (gateway or worker)."""
        env = {
            **os.environ,
            "FW_WS_QUEUE": self.queue,
            "FW_WS_RESULTS": str(self.results),
            "FW_WS_ROLE": role,
        }
        command = [sys.executable, "-m", "framework.cli", "run", "push_app:app"]
        command += ["--backend", self.url, "--grace", "2", "--log-level", "warning", *args]
        with (self.folder / f"{role}.log").open("wb") as out:
            process = subprocess.Popen(command, cwd=HERE, env=env, stdout=out, stderr=out)
        self.started[role] = process
        return process

    def start_both(self) -> None:
        """Start a gateway on ``port`` and a ``--workers-only`` worker."""
        self.start("gateway", "--http-port", str(self.port), "--no-smtp")
        self.start("worker", "--workers-only")

    def logs(self) -> str:
        """Every process's log, for a failure message."""
        return "\n".join(
            f"--- {role}\n{(self.folder / f'{role}.log').read_text()[-3000:]}"
            for role in self.started
        )

    def lines(self, kind: str) -> list[list[str]]:
        """The records of ``kind`` (``pushed``, ``gone``, ``disconnect``), as split lines."""
        if not self.results.exists():
            return []
        return [
            p for p in (ln.split() for ln in self.results.read_text().splitlines()) if p[0] == kind
        ]

    async def gateway_answers(self) -> bool:
        """True once every process runs and the gateway answers HTTP."""
        for process in self.started.values():
            if process.poll() is not None:
                raise AssertionError(f"a process exited early:\n{self.logs()}")
        try:
            async with httpx.AsyncClient() as http:
                await http.get(f"http://127.0.0.1:{self.port}/metrics")
        except httpx.TransportError:
            return False
        return True

    async def ready(self) -> bool:
        """True once both processes serve (the gateway HTTP, the worker its queue)."""
        raise NotImplementedError

    async def push(self, connection_id: str) -> None:
        """Queue a job for ``connection_id`` straight on the backend (no gateway needed)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Kill the processes and delete what they declared."""
        raise NotImplementedError

    def kill_all(self) -> None:
        """Kill every process still running, and reap them."""
        for process in self.started.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=20)

"""``framework run --processes N``: a supervisor that shares its listening sockets with N children.

The supervisor binds the HTTP socket (and the SMTP one, when the app has ``@on_email`` rules)
once, then starts each child by running the same ``framework run`` command again with the
hidden ``--inherit-sockets HTTP_FD:SMTP_FD`` option and those descriptors inherited
(``subprocess`` with ``pass_fds``, not ``multiprocessing``: a child is exactly the
one-process ``framework run``, with its own interpreter, imports and event loop). Every child
accepts on the shared sockets (the kernel hands each connection to one of them) and opens the
same backend URL. The first child whose app runs starts the sockets listening, so a client is
refused, not left waiting, until one process can answer.

A child that exits is replaced; one that dies within ``SOON`` seconds of its start waits
before its replacement starts (0.1 s, doubling up to 5 s). ``DEATHS`` deaths within
``WINDOW`` seconds stop everything with one ``error:`` line and exit status 1. SIGTERM or
SIGINT to the supervisor sends SIGTERM to every child, each of which stops within its own
grace period (SIGKILL after ``grace + 5`` seconds); the supervisor then exits 0. Children
are in the supervisor's process group, so ``kill -9 -PGID`` stops them all at once.

A child accepts one connection each time its event loop finds a shared socket ready
(``TakingTurns``): asyncio otherwise accepts every pending connection at once, so the first
process to wake took all of a client's connections opened together (``wrk``'s 16, a proxy's
pool) and the others served none. One at a time, the processes take turns, and a busy one,
which looks less often, takes fewer.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from framework.exceptions import ConfigError, FrameworkError
from framework.logs import event

__all__ = [
    "DEATHS",
    "WINDOW",
    "ProcessesFailedError",
    "TakingTurns",
    "check_backend",
    "child_command",
    "cpu_count",
    "parse_processes",
    "supervise",
]

log = logging.getLogger("framework.processes")

SOON = 5.0  # a child that dies this soon after its start backs off before its replacement
DEATHS = 5  # this many deaths ...
WINDOW = 30.0  # ... within this many seconds: give up
POLL = 0.1  # seconds between looks at the children (a signal ends a sleep early)


class ProcessesFailedError(FrameworkError):
    """The children of ``framework run --processes`` keep dying."""


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_processes(value: str) -> int:
    """``auto`` (one per CPU) or a whole number of at least 1.

    Raises:
        ConfigError: For anything else.
    """
    if value.strip().lower() == "auto":
        return cpu_count()
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"--processes {value!r}: expected a whole number of at least 1, or auto")
    return count


def check_backend(url: str) -> None:
    """Refuse a backend that several processes cannot share.

    Raises:
        ConfigError: For ``memory://``.
    """
    if url.partition("://")[0] == "memory":
        raise ConfigError(
            "--processes needs a backend the processes share, and memory:// lives inside one "
            "process (each would have its own queues): use sqlite:///PATH (the default), "
            "amqp://... or aws://REGION"
        )


class TakingTurns(socket.socket):
    """A listening socket shared with other processes: one connection per look.

    asyncio's accept loop calls ``accept`` until it raises ``BlockingIOError`` (up to the
    backlog, 2048, at a time); here the call after a connection was taken raises it, so each
    time the socket is ready this process takes one connection and leaves the rest to whichever
    process looks next.
    """

    _took = False

    def accept(self) -> tuple[socket.socket, Any]:
        """Accept one connection, or raise ``BlockingIOError`` right after one was taken."""
        if self._took:
            self._took = False
            raise BlockingIOError(errno.EAGAIN, "one connection per look: the next one later")
        connection = super().accept()  # BlockingIOError when another process took it
        self._took = True
        return connection


@dataclass
class _Child:
    index: int
    process: subprocess.Popen[bytes]
    started: float


@dataclass
class _Supervisor:
    command: Sequence[str]
    count: int
    fds: tuple[int, ...]
    grace: float
    children: dict[int, _Child] = field(default_factory=dict)
    deaths: deque[float] = field(default_factory=deque)
    stopping: str | None = None

    def start(self, index: int) -> None:
        env = {**os.environ, "FRAMEWORK_PROCESS": str(index)}
        process = subprocess.Popen(list(self.command), pass_fds=self.fds, env=env)
        self.children[index] = _Child(index, process, time.monotonic())
        event(log, logging.INFO, "process.started", index=index, pid=process.pid)

    def on_signal(self, signum: int, frame: object) -> None:
        if self.stopping is None:
            self.stopping = signal.Signals(signum).name

    def run(self) -> None:
        pending: dict[int, float] = {}  # index -> when its replacement may start
        backoff: dict[int, float] = {}
        for index in range(self.count):
            self.start(index)
        event(log, logging.INFO, "processes.started", processes=self.count)
        while self.stopping is None:
            time.sleep(POLL)
            now = time.monotonic()
            for index, child in list(self.children.items()):
                code = child.process.poll()
                if code is None:
                    continue
                del self.children[index]
                lived = now - child.started
                event(
                    log,
                    logging.WARNING,
                    "process.exited",
                    index=index,
                    pid=child.process.pid,
                    exit_code=code,
                    seconds=round(lived, 3),
                )
                self.deaths.append(now)
                while self.deaths and now - self.deaths[0] > WINDOW:
                    self.deaths.popleft()
                if len(self.deaths) >= DEATHS:
                    self.stop()
                    raise ProcessesFailedError(
                        f"{len(self.deaths)} processes died within {WINDOW:g} s (the last, pid "
                        f"{child.process.pid}, with exit code {code}): stopped; see the errors "
                        "above"
                    )
                if lived < SOON:
                    delay = backoff[index] = min(backoff.get(index, 0.05) * 2, 5.0)
                else:
                    delay = backoff[index] = 0.0
                pending[index] = now + delay
            for index, when in list(pending.items()):
                if self.stopping is None and now >= when:
                    del pending[index]
                    self.start(index)
        event(log, logging.INFO, "processes.stopping", signal=self.stopping)
        self.stop()

    def stop(self) -> None:
        """SIGTERM every child, wait for each within its grace period, SIGKILL the late."""
        for child in self.children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace + 5.0
        for child in self.children.values():
            try:
                code = child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                code = child.process.wait()
            event(
                log,
                logging.INFO,
                "process.exited",
                index=child.index,
                pid=child.process.pid,
                exit_code=code,
            )
        self.children.clear()


def supervise(
    command: Sequence[str], count: int, sockets: Sequence[socket.socket], *, grace: float
) -> None:
    """Run ``command`` (one ``framework run`` child) ``count`` times until SIGTERM or SIGINT.

    Args:
        command: The child's argv; its ``--inherit-sockets`` names the ``sockets``' fds.
        count: How many children run at once.
        sockets: The bound listening sockets the children inherit.
        grace: The children's grace period (the supervisor waits 5 s more before SIGKILL).

    Raises:
        ProcessesFailedError: When ``DEATHS`` children die within ``WINDOW`` seconds.
    """
    supervisor = _Supervisor(command, count, tuple(s.fileno() for s in sockets), grace)
    previous = {
        signum: signal.signal(signum, supervisor.on_signal)
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        supervisor.run()
    finally:
        supervisor.stop()  # no-op after a clean stop; children never outlive an error
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def child_command(argv: Sequence[str], fds: str) -> list[str]:
    """This ``framework run`` command line without ``--processes``, with ``--inherit-sockets``."""
    rest: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        rest.append(arg)
    return [sys.executable, "-m", "framework.cli", *rest, "--inherit-sockets", fds]

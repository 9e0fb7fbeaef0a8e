"""Child processes for the benchmarks: servers started the way their users start them.

Every server a benchmark measures runs in a process of its own (``framework run``, ``uvicorn``,
``python -m aiosmtpd``), started from its command line with the working directory and
``PYTHONPATH`` of the bench, and the load comes from yet another process (``wrk``, a pool of
client processes). ``serve`` starts one, waits until its port accepts connections, and stops it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence


def _framework_command() -> list[str]:
    """The ``framework`` console script of this interpreter's environment, as users run it."""
    script = os.path.join(os.path.dirname(sys.executable), "framework")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "framework.cli"]


FRAMEWORK = _framework_command()


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(
    command: Sequence[str],
    port: int | None,
    *,
    env: Mapping[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
    timeout: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends; yield once ``127.0.0.1:port`` accepts connections.

    With ``port=None`` (a worker, which listens on nothing), yield as soon as it has started:
    the caller waits for it to handle its first messages instead.

    Raises:
        RuntimeError: If the process exits or the port stays closed for ``timeout`` seconds;
            the message carries the end of its output.
    """
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    process = subprocess.Popen(
        list(command),
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")[-3000:]

    try:
        deadline = time.monotonic() + timeout
        while port is not None:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited with {process.returncode}:\n{output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not open port {port}:\n{output()}")
            time.sleep(0.05)
        try:
            yield process
        except RuntimeError as exc:  # the bench saw it fail: show what the server said
            raise RuntimeError(f"{exc}\n{command} said:\n{output()}") from exc
        if process.poll() is not None:
            raise RuntimeError(
                f"{command} exited during the run with {process.returncode}:\n{output()}"
            )
    finally:
        if process.poll() is None:
            process.send_signal(stop_signal)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log.close()


def marks_env(directory: str, *counts: int) -> dict[str, str]:
    """The environment that makes a bench handler record when it has handled each of ``counts``."""
    return {"BENCH_MARKS_DIR": directory, "BENCH_MARKS": ",".join(str(c) for c in counts)}


class Marks:
    """Handler side: counts what was handled; at each count in ``BENCH_MARKS`` writes the time.

    The time is ``time.monotonic()``, which is the same clock in every process on Linux, so the
    parent can time from its own start to the child's last handled message.
    """

    def __init__(self) -> None:
        self.directory = os.environ.get("BENCH_MARKS_DIR", "")
        self.at = {int(c) for c in os.environ.get("BENCH_MARKS", "").split(",") if c}
        self.seen = 0

    def count(self) -> None:
        self.seen += 1
        if self.seen in self.at:
            now = time.monotonic()
            path = os.path.join(self.directory, f"mark-{self.seen}")
            with open(path + ".tmp", "w") as f:
                f.write(repr(now))
            os.replace(path + ".tmp", path)


def wait_mark(
    directory: str, count: int, process: subprocess.Popen[bytes], timeout: float = 120.0
) -> float:
    """Wait until the child has handled ``count`` messages; return when it did (monotonic).

    Raises:
        RuntimeError: If the child exits first or ``timeout`` seconds pass.
    """
    path = os.path.join(directory, f"mark-{count}")
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {process.returncode} before {count} handled"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"the handler did not reach {count} messages in {timeout}s")
        time.sleep(0.001)
    with open(path) as f:
        return float(f.read())


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds of process ``pid`` so far (Linux), or NaN."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """The CPU seconds of ``pid`` and of its live descendants (a supervisor and its children)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += cpu_seconds(current)
        try:
            threads = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for thread in threads:
            with contextlib.suppress(OSError), open(f"/proc/{current}/task/{thread}/children") as f:
                pending += [int(child) for child in f.read().split()]
    return total


def run_wrk(url: str, script: str, *, duration: float, connections: int, threads: int,
            latency: bool = False) -> str:  # fmt: skip
    """Run Debian's ``wrk`` against ``url`` with the Lua ``script``; return its report.

    Raises:
        RuntimeError: If any answer was not 2xx, a socket failed, or no request was answered.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "-s", file.name, url]
    if latency:
        command.insert(-3, "--latency")
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(file.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"{url} answered errors:\n{out}")
    match = re.search(r"(\d+) requests in", out)
    if match is None or int(match.group(1)) == 0:
        raise RuntimeError(f"{url} answered no request:\n{out}")
    return out


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` (``VmRSS``), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _read_until(sock: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    data = b""
    while not done(data):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"the server closed an idle connection: {data[-200:]!r}")
        data += chunk
    return data


def http_answered(data: bytes) -> bool:
    """Whether ``data`` holds a whole HTTP/1.1 response with a ``Content-Length``."""
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if length is None:
        raise RuntimeError(f"an HTTP answer without Content-Length: {head[:200]!r}")
    return int(length.group(1)) <= len(body)


def smtp_answered(data: bytes) -> bool:
    """Whether ``data`` ends with the last line of an SMTP reply (``250 ...``, no dash)."""
    return data.endswith(b"\r\n") and re.search(rb"(?m)^\d{3} [^\r\n]*\r\n\Z", data) is not None


def idle_connection_bytes(
    pid: int,
    port: int,
    exchange: Sequence[tuple[bytes, Callable[[bytes], bool]]],
    connections: int = 500,
) -> float:
    """The resident memory server ``pid`` holds per idle connection, in bytes.

    Opens ``connections`` connections to ``127.0.0.1:port``, runs ``exchange`` on each (what
    to send, b"" for nothing, and when the answer is complete: a keep-alive HTTP request, an
    SMTP greeting and EHLO), and divides the growth of the server's ``VmRSS`` by their number.
    """
    sockets: list[socket.socket] = []
    before = rss_bytes(pid)
    try:
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", port), 10)
            sockets.append(sock)
            for request, answered in exchange:
                if request:
                    sock.sendall(request)
                _read_until(sock, answered)
        time.sleep(0.3)  # the server settles after the last one
        return (rss_bytes(pid) - before) / connections
    finally:
        for sock in sockets:
            sock.close()

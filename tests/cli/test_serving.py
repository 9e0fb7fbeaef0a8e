"""How `framework run` opens its ports: only when ready, fast, and never held by slow clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from framework import App, Email
from framework.cli.run import bind_socket
from framework.testing import TestApp

from .conftest import HERE, free_port

FRAMEWORK_RUN = (sys.executable, "-m", "framework.cli", "run")


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*FRAMEWORK_RUN, *args, "--no-smtp", "--grace", "2"],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _wait_accepting(process: subprocess.Popen[str], port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not _connects(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"framework run did not open its port: {process.communicate()[0]}")
        time.sleep(0.001)


@pytest.fixture
def serving() -> Iterator[int]:
    """`framework run serving_app:app --read-timeout 0.3` on a free port; yields the port."""
    port = free_port()
    process = _start("serving_app:app", "--http-port", str(port), "--read-timeout", "0.3")
    _wait_accepting(process, port)
    yield port
    process.terminate()
    try:
        process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def _get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


def test_sequential_requests_on_one_connection_are_not_delayed_by_nagle(serving: int) -> None:
    """50 requests in turn on one keep-alive connection take well under 40 ms each."""
    with socket.create_connection(("127.0.0.1", serving)) as sock:
        assert _get(sock, "/ping").startswith(b"HTTP/1.1 200")  # warm up
        started = time.perf_counter()
        for _ in range(50):
            assert _get(sock, "/ping").startswith(b"HTTP/1.1 200")
        elapsed = time.perf_counter() - started
    # Nagle's algorithm against the client's delayed ACK costs ~40 ms a request: 2 s for 50.
    assert elapsed < 1.0, f"50 sequential requests took {elapsed:.2f} s"


async def test_accepted_gateway_connections_have_tcp_nodelay() -> None:
    """A connection accepted on the socket `framework run` binds has TCP_NODELAY set."""
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    accepted: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            peer = transport.get_extra_info("socket")
            accepted.append(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    # Exactly what uvicorn does with the sockets `framework run` hands it.
    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if accepted:
                break
            await asyncio.sleep(0.01)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert accepted
    assert accepted[0] != 0


async def test_accepted_smtp_connections_have_tcp_nodelay() -> None:
    """A connection the SMTP receiver accepts has TCP_NODELAY set."""
    app = App("mail-sockets")

    @app.on_email(["support@shop.example"])
    async def support(message: Email) -> None:
        """Nothing."""

    async with TestApp(app) as t:
        assert t.receiver is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", t.receiver.port)
        assert (await reader.readline()).startswith(b"220")
        [connection] = list(t.receiver._connections)
        assert connection.transport is not None
        peer = connection.transport.get_extra_info("socket")
        assert peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writer.close()


@pytest.mark.parametrize("attempt", range(5))
def test_sigterm_as_soon_as_the_port_accepts_exits_zero(attempt: int) -> None:
    """SIGTERM the moment the port first accepts a connection stops the app with status 0."""
    port = free_port()
    process = _start("serving_app:app", "--http-port", str(port))
    _wait_accepting(process, port)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=15)
    assert process.returncode == 0, out
    assert "app.stopping signal='SIGTERM'" in out
    assert "app.stopped" in out


def test_sigterm_while_the_app_is_imported_exits_zero(tmp_path: Path) -> None:
    """SIGTERM before the app has finished importing stops the process cleanly, status 0."""
    (tmp_path / "sleepy.py").write_text(
        "import time\nfrom framework import App\n"
        "open('imported', 'w').close()\ntime.sleep(5)\napp = App('sleepy')\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "framework.cli", "run", "sleepy:app", "--no-smtp"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        },
    )
    deadline = time.monotonic() + 15
    while not (tmp_path / "imported").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=15)
    assert process.returncode == 0, out
    assert "app.stopping signal='SIGTERM'" in out


def test_an_app_with_invalid_route_options_never_opens_its_port() -> None:
    """A route option refused at the decorator fails before the port accepts."""
    port = free_port()
    process = _start("serving_invalid_app:app", "--http-port", str(port))
    connected = False
    while process.poll() is None:
        connected = connected or _connects(port)
    out = process.communicate()[0]
    assert process.returncode == 1
    assert "cache= only applies to GET routes" in out
    assert not connected, "the port accepted a connection before the app was refused"


def test_partial_requests_are_closed_after_the_read_timeout(serving: int) -> None:
    """120 clients that send half a header (and one that sends nothing) get 408 and are closed."""
    clients = [socket.create_connection(("127.0.0.1", serving)) for _ in range(120)]
    silent = socket.create_connection(("127.0.0.1", serving))
    try:
        for sock in clients:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        started = time.monotonic()
        for sock in [*clients, silent]:
            sock.settimeout(5)
            reply = b""
            while chunk := sock.recv(4096):  # until the server closes the connection
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 408"), reply
        # 0.3 s of timeout; generous for a loaded machine, far from "never".
        assert time.monotonic() - started < 4
    finally:
        for sock in [*clients, silent]:
            sock.close()


@pytest.mark.parametrize("path", ["/echo", "/ping"])
def test_a_body_trickled_too_slowly_is_cut_off(serving: int, path: str) -> None:
    """A client announcing a body and not sending it in time is disconnected.

    ``/echo`` reads the body; ``/ping`` answers 405 without reading it, and the connection is
    still not idle until the client has sent what it announced.
    """
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{{"
    with socket.create_connection(("127.0.0.1", serving)) as sock:
        sock.sendall(head.encode())
        sock.settimeout(5)
        started = time.monotonic()
        while sock.recv(4096):  # until the server closes the connection
            pass
        # uvicorn's keep-alive timeout (5 s) alone would close it much later.
        assert time.monotonic() - started < 3


def test_a_handler_slower_than_the_read_timeout_still_answers(serving: int) -> None:
    """The timeout bounds reading the request, not the handler: a 0.6 s handler answers."""
    with socket.create_connection(("127.0.0.1", serving)) as sock:
        sock.settimeout(5)
        assert _get(sock, "/slow?seconds=0.6").startswith(b"HTTP/1.1 200")
        # The connection stays usable for the next request.
        assert _get(sock, "/ping").startswith(b"HTTP/1.1 200")


def test_the_admin_api_over_a_real_connection_checks_host_and_content_type(serving: int) -> None:
    """Through uvicorn: a rebinding Host is 403, a form purge 415, a loopback JSON call 200."""
    base = f"http://127.0.0.1:{serving}"
    rebound = httpx.get(f"{base}/_framework/queues", headers={"host": f"rebind.example:{serving}"})
    form = httpx.post(f"{base}/_framework/queues/jobs/purge", data={"x": "1"})
    ok = httpx.post(f"{base}/_framework/queues/jobs/purge", json={})
    assert rebound.status_code == 403
    assert form.status_code == 415
    assert ok.status_code == 404  # serving_app declares no queue "jobs": past every check


@pytest.mark.parametrize(
    ("host", "warning"), [("127.0.0.1", "admin.no_token"), ("0.0.0.0", "admin.loopback_only")]
)
def test_framework_run_warns_when_the_admin_api_has_no_token(host: str, warning: str) -> None:
    """The start log says the admin API is open (loopback) or loopback-only (other binds)."""
    port = free_port()
    process = _start("serving_app:app", "--http-port", str(port), "--host", host)
    _wait_accepting(process, port)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=15)
    assert warning in out
    assert "FRAMEWORK_ADMIN_TOKEN" in out


def test_framework_run_with_a_token_does_not_warn() -> None:
    """With FRAMEWORK_ADMIN_TOKEN set, no admin warning is logged."""
    port = free_port()
    process = subprocess.Popen(
        [*FRAMEWORK_RUN, "serving_app:app", "--no-smtp", "--http-port", str(port)],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "FRAMEWORK_ADMIN_TOKEN": "s3cret"},
    )
    _wait_accepting(process, port)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=15)
    assert "admin." not in out
    assert "s3cret" not in out


def test_framework_run_on_port_zero_logs_the_port_it_bound() -> None:
    """With --http-port 0, app.started and the admin warning name the port the OS chose."""
    process = _start("serving_app:app", "--http-port", "0", "--backend", "memory://", "--log-json")
    assert process.stdout is not None
    lines: list[dict[str, Any]] = []
    for text in process.stdout:  # up to app.started, or the end if it fails to start
        lines.append(json.loads(text))
        if lines[-1]["event"] == "app.started":
            break
    try:
        started = next(line for line in lines if line["event"] == "app.started")
        warning = next(line for line in lines if line["event"] == "admin.no_token")
        url = started["http"]
        assert not url.endswith(":0")
        assert f"{url}/_framework/" in warning["detail"]
        assert httpx.get(f"{url}/_framework/health", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)

"""Through ``framework run`` with the ``websockets`` client: origins, refusals, slow clients.

A refused handshake reaches the client as an HTTP response with its status and JSON body
(ASGI's WebSocket denial response, which uvicorn serves), and the server logs only its own
structured ``websocket.refused`` events: no uvicorn complaint, no traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from tests.fleet import until
from tests.websocket.processes import HERE, free_port

pytestmark = pytest.mark.timeout(60)

KEY = {"X-API-Key": "k-1"}
EVIL = Origin("https://evil.example")
# Every line ``framework run`` writes is one of its structured events.
_EVENT_LINE = re.compile(r"\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR) +[a-z_]+\.[a-z_.]+")


@dataclass
class Served:
    """``framework run served_app:app`` on a port, its output in a file."""

    port: int
    output: Path

    def url(self, path: str) -> str:
        """The WebSocket URL of ``path``."""
        return f"ws://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        """What the process has written so far."""
        return self.output.read_text()


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
    except httpx.TransportError:
        return False
    return True


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app served by a real ``framework run`` process; stopped with SIGTERM afterwards."""
    port = free_port()
    output = tmp_path_factory.mktemp("served") / "output"
    command = [sys.executable, "-m", "framework.cli", "run", "served_app:app"]
    command += ["--backend", "memory://", "--no-smtp", "--http-port", str(port)]
    with output.open("wb") as out:
        process = subprocess.Popen(command, cwd=HERE, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while process.poll() is None and not _answers(port):
            assert time.monotonic() < deadline, (
                f"framework run did not answer:\n{output.read_text()}"
            )
            time.sleep(0.1)
        assert process.poll() is None, output.read_text()
        yield Served(port, output)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


async def _refusal(url: str, **options: object) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=10, **options):  # type: ignore[arg-type]
            pass
    response = refused.value.response
    assert response.headers["Content-Type"] == "application/json"
    return response.status_code, json.loads(response.body)["detail"]


async def test_refused_handshakes_reach_the_client_as_http_status_and_body(
    served: Served,
) -> None:
    """Origin 403, no key 401, ``Refuse`` 451, no API 404: each an InvalidStatus with a body;
    the server's log holds its refusal events and nothing else."""
    status, detail = await _refusal(served.url("/ws"), origin=EVIL, additional_headers=KEY)
    assert status == 403
    assert "'https://evil.example'" in detail
    assert "allowed_origins" in detail
    origin = Origin("https://shop.example")
    assert (await _refusal(served.url("/ws"), origin=origin))[0] == 401
    refused = await _refusal(served.url("/ws?refuse=1"), additional_headers=KEY)
    assert refused == (451, "refused by $connect")
    assert (await _refusal(served.url("/nowhere")))[0] == 404

    await until(lambda: served.log().count("websocket.refused") >= 3, 5, "the refusals logged")
    log = served.log()
    assert (
        "websocket.refused api='/ws' status=403 reason='origin' origin='https://evil.example'"
        in (log)
    )
    assert "reason='auth'" in log
    assert "reason='connect'" in log
    noise = [line for line in log.splitlines() if not _EVENT_LINE.match(line)]
    assert noise == [], log
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{served.port}/metrics")).text
    assert 'framework_websocket_refused_total{api="/ws",reason="origin",status="403"} 1.0' in (
        metrics
    )


async def test_own_and_allowed_origins_and_clients_without_origin_connect(
    served: Served,
) -> None:
    """The server's own origin, a CORS origin, no ``Origin`` at all, and any page on ``/open``."""
    for origin in (Origin(f"http://127.0.0.1:{served.port}"), Origin("https://shop.example"), None):
        async with connect(served.url("/ws"), origin=origin, additional_headers=KEY) as ws:
            await ws.send(json.dumps({"action": "whoami"}))
            assert json.loads(await ws.recv()) == {"principal": "ann"}
    async with connect(served.url("/open"), origin=EVIL) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"


def test_framework_run_warns_about_an_api_open_to_every_origin_without_auth(
    served: Served,
) -> None:
    """``allowed_origins=["*"]`` on an API without an authorizer is a start warning."""
    warnings = [line for line in served.log().splitlines() if "websocket.any_origin" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0]
    assert "api='/open'" in warnings[0]


async def _read_until_closed(ws: ClientConnection) -> list[str | bytes]:
    """Every message the client gets until the connection closes."""
    received: list[str | bytes] = []
    while True:
        try:
            received.append(await ws.recv())
        except ConnectionClosed:
            return received


async def test_a_client_that_does_not_read_is_closed_with_1008_after_what_reached_it(
    served: Served,
) -> None:
    """Pushes go straight to the socket while it takes them, then wait in the bounded send
    queue; once 8 wait, the connection closes with 1008. The client reads what was written
    before, in order and whole, then the close."""
    async with connect(served.url("/flood"), compression=None, max_queue=1) as ws:
        await ws.send(json.dumps({"action": "flood"}))
        await asyncio.sleep(1)  # not reading: the socket's buffers fill, then the queue
        async with asyncio.timeout(10):
            received = await _read_until_closed(ws)
    assert ws.close_code == 1008
    assert ws.close_reason == "send queue full: the client reads too slowly"
    assert 0 < len(received) < 100_000
    assert {len(message) for message in received} == {65_536}
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{served.port}/metrics")).text
    assert 'framework_websocket_errors_total{api="/flood",kind="send_queue_full"} 1.0' in metrics
    # Every push that went out or into the queue is counted once, under $push.
    pushed = re.search(r'messages_out_total\{api="/flood",route="\$push"\} (\d+)', metrics)
    assert pushed is not None
    assert int(pushed.group(1)) >= len(received)


async def test_messages_sent_faster_than_answered_are_all_answered_in_order(
    served: Served,
) -> None:
    """200 messages of 8 KiB sent at once (arriving in many reads, past the 16 read ahead,
    when reading pauses) get their 200 answers, in the order sent."""
    sent = [f"{n} {secrets.token_hex(4096)}" for n in range(200)]
    async with connect(served.url("/open"), compression=None) as ws:
        for message in sent:
            await ws.send(message)
        async with asyncio.timeout(10):
            answers = [await ws.recv() for _ in sent]
    assert answers == sent

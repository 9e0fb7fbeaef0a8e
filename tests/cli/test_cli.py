"""The `framework` command as a user runs it: a real `framework run` process, real HTTP."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from pathlib import Path

import httpx

from .conftest import HERE, Served, framework, free_port

FRAMEWORK_CLI = (sys.executable, "-m", "framework.cli")


def _queues(served: Served) -> dict[str, dict[str, int]]:
    # Polled through the admin API directly: a CLI process per poll is too slow to see a
    # short-lived state. test_queues_lists_the_running_apps_queues covers the command.
    response = httpx.get(f"{served.url}/_framework/queues")
    response.raise_for_status()
    return {q["name"]: q for q in response.json()["queues"]}


def _wait_for(served: Served, queue: str, **expected: int) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while True:
        stats = _queues(served)[queue]
        if all(stats[k] == v for k, v in expected.items()):
            return stats
        assert time.monotonic() < deadline, f"{queue} never reached {expected}: {stats}"
        time.sleep(0.05)


def test_queues_lists_the_running_apps_queues(served: Served) -> None:
    """`framework queues` prints a table, and `--json` the same counts as JSON."""
    table = framework("queues", "--server", served.url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["QUEUE", "DEPTH"]
    assert [line.split()[0] for line in lines[1:]] == ["jobs", "jobs-dlq"]
    as_json = framework("queues", "--json", "--server", served.url)
    rows = json.loads(as_json.stdout)["queues"]
    assert rows[0] == {
        "name": "jobs",
        "depth": 0,
        "in_flight": 0,
        "delayed": 0,
        "dead_letters": 0,
        "dead_letter_queue": "jobs-dlq",
    }


def test_sigterm_stops_the_app_with_exit_status_zero(served: Served) -> None:
    """SIGTERM stops the gateway and workers and the process exits 0."""
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=15) == 0
    log = served.output()
    assert "app.stopping" in log
    assert "app.stopped" in log


def test_sigterm_lets_a_handler_in_flight_finish(served: Served) -> None:
    """A handler running when SIGTERM arrives finishes within the grace period."""
    response = httpx.post(f"{served.url}/jobs", json={"id": "slow", "seconds": 1.5})
    assert response.status_code == 202
    _wait_for(served, "jobs", in_flight=1)
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=15) == 0
    log = served.output()
    assert "job='slow'" in log
    assert log.index("job='slow'") < log.index("app.stopped")


def test_failing_job_is_dead_lettered_and_redrive_brings_it_back(served: Served) -> None:
    """A job failing max_receive_count times lands in the DLQ; `framework redrive` returns it."""
    httpx.post(f"{served.url}/jobs", json={"id": "bad", "fail": True}).raise_for_status()
    stats = _wait_for(served, "jobs", dead_letters=1, depth=0, in_flight=0)
    assert stats["dead_letter_queue"] == "jobs-dlq"
    result = framework("redrive", "jobs-dlq", "--server", served.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "moved 1 message from jobs-dlq"
    # It fails again (it always does), so it goes back to the DLQ after two more tries.
    _wait_for(served, "jobs", dead_letters=1, depth=0, in_flight=0)
    served.process.send_signal(signal.SIGTERM)
    log = served.output()
    assert log.count("message.dead_lettered") == 2
    assert "RuntimeError" in log


def test_send_reaches_the_handler(served: Served) -> None:
    """`framework send` with a JSON body is validated and handled by the queue's handler."""
    result = framework("send", "jobs", '{"id": "from-cli"}', "--server", served.url)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) >= 16  # a message id
    _wait_for(served, "jobs", depth=0, in_flight=0)
    served.process.send_signal(signal.SIGTERM)
    assert "job='from-cli'" in served.output()


def test_several_bodies_reach_the_handler_as_one_batch(served: Served) -> None:
    """`framework send` with three bodies prints three ids and each body is handled."""
    bodies = ['{"id": "bulk-1"}', '{"id": "bulk-2"}', '{"id": "bulk-3"}']
    result = framework("send", "jobs", *bodies, "--server", served.url)
    assert result.returncode == 0, result.stderr
    assert len(set(result.stdout.split())) == 3
    _wait_for(served, "jobs", depth=0, in_flight=0)
    served.process.send_signal(signal.SIGTERM)
    log = served.output()
    assert all(f"job='bulk-{n}'" in log for n in (1, 2, 3))


def test_invalid_body_goes_to_the_dead_letter_queue_at_once(served: Served) -> None:
    """A body failing validation is poison: dead-lettered on its first receive, not retried."""
    result = framework("send", "jobs", '{"id": 5}', "--server", served.url)
    assert result.returncode == 0, result.stderr
    _wait_for(served, "jobs", dead_letters=1)
    served.process.send_signal(signal.SIGTERM)
    log = served.output()
    assert "error_type='ValidationError'" in log
    assert "receive_count=1" in log
    assert "message.failed" not in log


def test_send_to_an_unknown_queue_is_one_clear_line(served: Served) -> None:
    """Sending to an undeclared queue fails with exit 1 and one line naming the queue."""
    result = framework("send", "nope", "hello", "--server", served.url)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "'nope'" in lines[0]


def test_publish_and_purge(served: Served) -> None:
    """`framework publish` returns a message id and `framework purge --yes` empties a queue."""
    published = framework(
        "publish", "events", '{"a": 1}', "--attribute", "type=x", "--server", served.url
    )
    assert published.returncode == 0, published.stderr
    assert published.stdout.strip()
    httpx.post(f"{served.url}/jobs", json={"id": "bad", "fail": True}).raise_for_status()
    _wait_for(served, "jobs", dead_letters=1)
    purged = framework("purge", "jobs-dlq", "--yes", "--server", served.url)
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.strip() == "purged 1 message from jobs-dlq"
    assert _queues(served)["jobs"]["dead_letters"] == 0


def test_purge_without_yes_asks_and_stops_on_no(served: Served) -> None:
    """Without --yes, purge asks first; answering no purges nothing."""
    result = framework("purge", "jobs", "--server", served.url, input="n\n")
    assert result.returncode == 1
    assert "nothing purged" in result.stderr


def test_routes_lists_an_apps_routes() -> None:
    """`framework routes APP` lists method, path and handler without running the app."""
    result = framework("routes", "sample_app:app")
    assert result.returncode == 0, result.stderr
    assert "POST" in result.stdout
    assert "/jobs" in result.stdout
    assert "sample_app.submit" in result.stdout


def test_routes_through_the_admin_api(served: Served) -> None:
    """`framework routes --server` asks the running app."""
    result = framework("routes", "--json", "--server", served.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["routes"][0]["path"] == "/jobs"


def test_a_taken_port_is_one_clear_line() -> None:
    """`framework run` on a port in use exits 1 with one line saying so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = framework("run", "sample_app:app", "--http-port", str(port), "--no-smtp")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: port {port} on 127.0.0.1 is taken: stop what uses it or pass --http-port"
    )
    assert "Traceback" not in result.stderr


def test_an_app_that_cannot_be_imported_is_one_clear_line() -> None:
    """`framework run` of a missing module exits 1 with one line, not a traceback."""
    result = framework("run", "no_such_module:app", "--http-port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot import 'no_such_module'")
    assert "Traceback" not in result.stderr


def test_an_attribute_that_is_not_an_app_is_refused() -> None:
    """`framework run module:attr` where attr is not an App says what it is."""
    result = framework("routes", "sample_app:Job")
    assert result.returncode == 1
    assert "not a framework.App" in result.stderr


def test_an_unreachable_server_is_one_clear_line() -> None:
    """Operations against a server that is not there fail with one line naming it."""
    url = f"http://127.0.0.1:{free_port()}"
    result = framework("queues", "--server", url)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach {url}")


def test_an_unknown_profile_names_the_known_ones(tmp_path: Path) -> None:
    """`--env NAME` for a profile that pyproject.toml lacks lists the profiles it has."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.framework]\nbackend = "memory://"\n[tool.framework.env.staging]\n'
        'backend = "amqp://guest:guest@127.0.0.1:5672/"\n'
    )
    result = framework("queues", "--env", "prod", cwd=tmp_path)
    assert result.returncode == 1
    assert "no profile 'prod'" in result.stderr
    assert "(profiles: staging)" in result.stderr


def test_memory_backend_cannot_be_operated_from_outside(tmp_path: Path) -> None:
    """`--backend memory://` is refused with a hint to use --server."""
    result = framework("queues", "--backend", "memory://", cwd=tmp_path)
    assert result.returncode == 1
    assert "--server" in result.stderr


def test_an_unknown_backend_scheme_lists_the_known_ones(tmp_path: Path) -> None:
    """A backend URL with an unknown scheme is refused, listing the schemes that exist."""
    result = framework("queues", "--backend", "kafka://x", cwd=tmp_path)
    assert result.returncode == 1
    assert "known: amqp://, amqps://, aws://, memory://" in result.stderr


async def test_a_command_of_several_admin_calls_uses_one_connection(served: Served) -> None:
    """`framework redrive --server` asks the depth, then redrives: one client, one connection."""
    connections = 0

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", served.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        process = await asyncio.create_subprocess_exec(
            *FRAMEWORK_CLI,
            *("redrive", "jobs-dlq", "--server", f"http://127.0.0.1:{port}"),
            cwd=HERE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        server.close()
    assert process.returncode == 0, out.decode()
    assert "moved 0 messages" in out.decode()
    assert connections == 1

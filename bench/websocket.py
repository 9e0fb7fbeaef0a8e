"""WebSocket messages per second through ``framework run``, against raw starlette under uvicorn.

Run from the repository root (``pip install -e '.[dev,bench]'`` brings ``websockets``)::

    python -m bench.websocket [--rounds 3] [--duration 5] [--connections 16] [--fanout 1000]
    python -m bench.websocket --only framework --rounds 1   # one side, for a profiler
    python -m bench.websocket --smoke                       # a check that it runs
    python -m bench.websocket --compare /tmp/before         # and another tree's framework

Each side serves one WebSocket API at ``/ws`` in a child process started the way its users
start it, and the clients run in other processes (``python -m bench.websocket --client``, the
``websockets`` library on asyncio): the loops' connections are shared among
``--client-processes`` of them (default: one per core), started together, the same for both
sides, so that one client process is not what sets the rate:

* **framework**: ``framework run bench.websocket:app --backend memory:// --no-smtp --http-port
  PORT``: ``@app.websocket("/ws", "echo")`` takes the message as a pydantic model (the route
  picked by its ``action`` field) and returns it; ``"push"`` queues a job with ``app.send``, and
  an ``@app.on_queue`` handler pushes the result to the client with ``app.connections.send``;
  ``"fanout"`` queues one job whose handler pushes one message to every open connection (their
  ids kept by ``$connect`` and ``$disconnect``). The API's per-connection rate limit is raised
  (``app.websocket_api("/ws", rate=..., burst=...)``) so that it does not throttle the load;
* **starlette**: ``uvicorn bench.websocket:starlette_app --factory --port PORT --no-access-log``
  (uvicorn's defaults otherwise): a ``WebSocketRoute`` whose endpoint accepts, validates each
  text message into the same model, answers ``echo`` with its JSON, and answers ``fanout`` by
  sending one message to every socket it holds.

What is measured, each round, on each side:

* **echo**: ``--connections`` clients each send a message (about ``--size`` bytes of JSON) and
  wait for its answer before sending the next, for ``--duration`` seconds after a warm-up;
  messages answered per second;
* **CPU per message** (``echo_cpu_us``, ``push_cpu_us``): the server process's CPU time (user
  and system, from ``/proc/PID/stat``) over the whole client run, warm-up included, divided
  by the messages it answered, in microseconds. On a machine other processes share, the
  rates follow whatever else runs; the CPU each message costs the server much less so;
* **push** (framework only: raw starlette has no queue): the same loop with ``"push"``: each
  answer has gone through a queue and a handler's ``app.connections.send``;
* **fan-out**: ``--fanout`` connections are opened, one of them asks for a fan-out, and the
  client times until every connection has received the pushed message (the median of
  ``--repeats``);
* **memory per idle connection**: the server's resident memory (``VmRSS``) with the
  ``--fanout`` connections open and idle, less its memory before they were opened, divided by
  their number.

Rounds alternate the sides, the order rotating each round; the figures are medians, and the
ratios are of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel

from bench.children import FRAMEWORK, cpu_seconds, free_port, rss_bytes, serve
from framework import App, Connection

PUSHES = "bench-pushes"
FANOUT = "bench-fanout"


class Echo(BaseModel):
    """A client's message: the route's name, a sequence number and some text."""

    action: str
    n: int
    text: str


class Push(BaseModel):
    """A job for the push handler: whom to push to, and what."""

    connection_id: str
    n: int
    text: str


class FanOut(BaseModel):
    """A job for the fan-out handler."""

    n: int


def framework_app() -> App:
    """The framework side, read by ``framework run bench.websocket:app``."""
    app = App("bench")
    app.websocket_api("/ws", rate=1_000_000, burst=1_000_000, max_connections=100_000)
    connected: set[str] = set()

    @app.websocket("/ws", "$connect")
    async def connect(conn: Connection) -> None:
        connected.add(conn.id)

    @app.websocket("/ws", "$disconnect")
    async def disconnect(conn: Connection) -> None:
        connected.discard(conn.id)

    @app.websocket("/ws", "echo")
    async def echo(message: Echo) -> Echo:
        return message

    @app.websocket("/ws", "push")
    async def push(message: Echo, conn: Connection) -> None:
        await app.send(PUSHES, Push(connection_id=conn.id, n=message.n, text=message.text))

    @app.websocket("/ws", "fanout")
    async def fanout(message: Echo) -> None:
        await app.send(FANOUT, FanOut(n=message.n))

    @app.on_queue(PUSHES, concurrency=32)
    async def pushed(job: Push) -> None:
        await app.connections.send(
            job.connection_id, {"action": "push", "n": job.n, "text": job.text}
        )

    @app.on_queue(FANOUT)
    async def fanned(job: FanOut) -> None:
        body = {"action": "fanout", "n": job.n}
        for connection_id in list(connected):
            await app.connections.send(connection_id, body)

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return framework_app()
    raise AttributeError(name)


def starlette_app() -> Any:
    """The raw side: one starlette WebSocket endpoint doing the same echo and fan-out by hand."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    sockets: set[WebSocket] = set()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        sockets.add(websocket)
        try:
            while True:
                message = Echo.model_validate_json(await websocket.receive_text())
                if message.action == "fanout":
                    body = json.dumps({"action": "fanout", "n": message.n})
                    for other in list(sockets):
                        with contextlib.suppress(Exception):  # one that just left
                            await other.send_text(body)
                else:
                    await websocket.send_text(message.model_dump_json())
        except WebSocketDisconnect:
            pass
        finally:
            sockets.discard(websocket)

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


SIDES = ("framework", "starlette")


def command(side: str, port: int) -> list[str]:
    """The command line that serves ``side`` on ``port``, as its users would type it."""
    if side in ("framework", "before"):
        return [
            *FRAMEWORK, "run", "bench.websocket:app", "--backend", "memory://", "--no-smtp",
            "--http-port", str(port), "--log-level", "warning",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "uvicorn", "bench.websocket:starlette_app", "--factory",
        "--port", str(port), "--no-access-log",
    ]  # fmt: skip


# --- the client process -----------------------------------------------------------------------


async def open_many(url: str, count: int) -> list[Any]:
    """Open ``count`` connections, a hundred at a time."""
    from websockets.asyncio.client import connect

    sockets: list[Any] = []
    for start in range(0, count, 100):
        batch = min(100, count - start)
        sockets += await asyncio.gather(
            *(connect(url, ping_interval=None, max_size=None) for _ in range(batch))
        )
    return sockets


async def loop_client(
    url: str, action: str, connections: int, warmup: float, duration: float, size: int
) -> dict[str, Any]:
    """``connections`` closed loops of send-and-wait; return the answers per second.

    Once its connections are open the client says ``open`` and waits for ``go`` on its
    standard input, so that every client process of a run measures the same seconds.
    """
    sockets = await open_many(url, connections)
    print("open", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    text = "x" * max(0, size - 40)
    counted = 0

    async def run(ws: Any) -> None:
        nonlocal counted
        n = 0
        while True:
            n += 1
            await ws.send(json.dumps({"action": action, "n": n, "text": text}))
            answer = json.loads(await ws.recv())
            if answer.get("n") != n:
                raise RuntimeError(f"expected answer {n}, got {str(answer)[:200]}")
            counted += 1

    tasks = [asyncio.create_task(run(ws)) for ws in sockets]
    try:
        await asyncio.sleep(warmup)
        start, before, cpu = time.monotonic(), counted, time.process_time()
        await asyncio.sleep(duration)
        elapsed, done = time.monotonic() - start, counted - before
        cpu = time.process_time() - cpu
        for task in tasks:
            if task.done():
                task.result()  # raises what failed
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    if done == 0:
        raise RuntimeError(f"no {action} answer in {duration} s")
    return {"rate": done / elapsed, "messages": done, "total": counted, "cpu_s": cpu}


async def fanout_client(url: str, count: int, repeats: int) -> dict[str, Any]:
    """Open ``count`` idle connections, say so, wait for "go", then time ``repeats`` fan-outs."""
    sockets = await open_many(url, count)
    print("open", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    times: list[float] = []
    for n in range(1, repeats + 1):

        async def received(ws: Any, n: int = n) -> None:
            while True:
                message = json.loads(await ws.recv())
                if message.get("action") == "fanout" and message.get("n") == n:
                    return

        waiting = [asyncio.create_task(received(ws)) for ws in sockets]
        await asyncio.sleep(0)
        start = time.monotonic()
        await sockets[0].send(json.dumps({"action": "fanout", "n": n, "text": ""}))
        await asyncio.wait_for(asyncio.gather(*waiting), 60)
        times.append(time.monotonic() - start)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {"seconds": times}


def client_main(args: argparse.Namespace) -> None:
    url = args.client_url
    if args.client == "fanout":
        result = asyncio.run(fanout_client(url, args.fanout, args.repeats))
    else:
        result = asyncio.run(
            loop_client(url, args.client, args.connections, args.warmup, args.duration, args.size)
        )
    print(json.dumps(result), flush=True)


# --- the bench --------------------------------------------------------------------------------


def client_command(
    args: argparse.Namespace, mode: str, url: str, connections: int | None = None
) -> list[str]:
    return [
        sys.executable, "-m", "bench.websocket", "--client", mode, "--client-url", url,
        "--connections", str(connections or args.connections), "--duration", str(args.duration),
        "--warmup", str(args.warmup), "--size", str(args.size), "--fanout", str(args.fanout),
        "--repeats", str(args.repeats),
    ]  # fmt: skip


def run_client(args: argparse.Namespace, mode: str, url: str) -> dict[str, Any]:
    """Run the ``mode`` loops in ``--client-processes`` processes at once; add up their figures.

    The ``--connections`` are shared out among the processes; each opens its own, then all
    are told to start together. ``client_busy`` is the clients' CPU time over the measured
    seconds (1.0 is one core): near the number of client processes, the clients, not the
    server, set the rate.
    """
    count = max(1, min(args.client_processes, args.connections))
    shares = [args.connections // count + (i < args.connections % count) for i in range(count)]
    clients = [
        subprocess.Popen(
            client_command(args, mode, url, connections=share),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    try:
        for client in clients:
            assert client.stdout is not None
            if client.stdout.readline().strip() != "open":
                raise RuntimeError(f"the {mode} client failed:\n{client.communicate()[1][-3000:]}")
        for client in clients:
            assert client.stdin is not None
            client.stdin.write("go\n")
            client.stdin.flush()
        results = []
        for client in clients:
            out, err = client.communicate(timeout=120)
            if client.returncode != 0:
                raise RuntimeError(f"the {mode} client failed:\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    seconds = args.duration
    return {
        "rate": sum(r["rate"] for r in results),
        "total": sum(r["total"] for r in results),
        "client_busy": sum(r["cpu_s"] for r in results) / seconds,
    }


def fanout_and_memory(args: argparse.Namespace, url: str, server: int) -> tuple[float, float]:
    """Open the idle connections; return (their memory per connection, the fan-out's seconds)."""
    before = rss_bytes(server)
    client = subprocess.Popen(
        client_command(args, "fanout", url),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert client.stdin is not None
        assert client.stdout is not None
        if client.stdout.readline().strip() != "open":
            raise RuntimeError(f"the fan-out client failed:\n{client.communicate()[1][-3000:]}")
        time.sleep(0.5)  # let the server settle after the handshakes
        per_connection = (rss_bytes(server) - before) / args.fanout
        out, err = client.communicate("go\n", timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    if client.returncode != 0:
        raise RuntimeError(f"the fan-out client failed:\n{err[-3000:]}")
    seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
    return per_connection, float(statistics.median(seconds))


@contextlib.contextmanager
def served(side: str, compare: str | None) -> Iterator[tuple[str, int]]:
    port = free_port()
    # "before" is the framework of another source tree (an older commit's files).
    env = {"PYTHONPATH": compare} if side == "before" and compare else None
    with serve(command(side, port), port, env=env) as process:
        yield f"ws://127.0.0.1:{port}/ws", process.pid


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sides = args.only or list(SIDES)
    if args.compare:
        sides.insert(1, "before")
    runs: dict[str, list[float]] = {}
    for number in range(args.rounds):
        turn = number % len(sides)
        for side in sides[turn:] + sides[:turn]:
            with served(side, args.compare) as (url, pid):
                figures: dict[str, float] = {}
                for mode in ("echo", "push") if side != "starlette" else ("echo",):
                    cpu = cpu_seconds(pid)
                    result = run_client(args, mode, url)
                    figures[mode] = result["rate"]
                    figures[f"{mode}_cpu_us"] = (cpu_seconds(pid) - cpu) / result["total"] * 1e6
                    figures[f"{mode}_client_busy"] = result["client_busy"]
                if args.fanout:
                    memory, seconds = fanout_and_memory(args, url, pid)
                    figures["idle_bytes_per_connection"] = memory
                    figures["fanout_ms"] = seconds * 1000
            for key, value in figures.items():
                runs.setdefault(f"{side}/{key}", []).append(value)
            if not args.json:
                shown = ", ".join(f"{k} {_figure(v)}" for k, v in figures.items())
                print(f"round {number + 1} {side}: {shown}", flush=True)
    medians = {key: float(statistics.median(values)) for key, values in runs.items()}
    ratios: dict[str, float] = {}
    raw = medians.get("starlette/echo")
    raw_cpu = medians.get("starlette/echo_cpu_us")
    for side in ("framework", "before"):
        for key in ("echo", "push"):
            mine = medians.get(f"{side}/{key}")
            if mine and raw:
                ratios[f"{key} {side}/starlette echo"] = mine / raw
            mine_cpu = medians.get(f"{side}/{key}_cpu_us")
            if mine_cpu and raw_cpu:
                ratios[f"{key} CPU/message starlette/{side}"] = raw_cpu / mine_cpu
    mine_fanout, raw_fanout = medians.get("framework/fanout_ms"), medians.get("starlette/fanout_ms")
    if mine_fanout and raw_fanout:
        ratios[f"fan-out to {args.fanout} starlette time/framework time"] = raw_fanout / mine_fanout
    figures: dict[str, str] = {}
    for side in ("framework", "before", "starlette"):
        for key in ("echo", "push"):
            if f"{side}/{key}" in medians:
                figures[f"{side} {key} msg/s (server CPU per message)"] = (
                    f"{medians[f'{side}/{key}']:,.0f} ({medians[f'{side}/{key}_cpu_us']:,.0f} µs)"
                )
        if f"{side}/fanout_ms" in medians:
            figures[f"{side} fan-out to {args.fanout}"] = f"{medians[f'{side}/fanout_ms']:,.0f} ms"
        if f"{side}/idle_bytes_per_connection" in medians:
            size = medians[f"{side}/idle_bytes_per_connection"]
            figures[f"{side} memory per idle connection"] = f"{size / 1024:.1f} KiB"
    return {
        "figures": figures,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": args.connections,
        "client_processes": args.client_processes,
        "size": args.size,
        "fanout_connections": args.fanout,
        "runs": runs,
        "medians": medians,
        "ratios": ratios,
    }


def _figure(value: float) -> str:
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--client", choices=("echo", "push", "fanout"), help=argparse.SUPPRESS)
    parser.add_argument("--client-url", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5, help="seconds per measured loop")
    parser.add_argument("--warmup", type=float, default=1, help="seconds before measuring")
    parser.add_argument("--connections", type=int, default=16, help="clients of the loops")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="processes the loops' connections are shared among (default: one per core)",
    )
    parser.add_argument("--size", type=int, default=256, help="bytes per message, about")
    parser.add_argument("--fanout", type=int, default=1000, help="connections of the fan-out")
    parser.add_argument("--repeats", type=int, default=3, help="fan-outs timed per round")
    parser.add_argument("--only", choices=SIDES, action="append")
    parser.add_argument(
        "--compare",
        metavar="DIR",
        help="also run the framework of the source tree DIR (side 'before'), e.g. an older "
        "commit's files from git archive",
    )
    parser.add_argument("--smoke", action="store_true", help="1 round of 0.5 s, fan-out to 200")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.client:
        client_main(args)
        return
    if args.smoke:  # a check that the bench works, not a measurement
        args.rounds, args.duration, args.warmup, args.fanout, args.repeats = 1, 0.5, 0.2, 200, 1
    results = measure(args)
    if args.json:
        print(json.dumps(results))
        return
    for key, value in results["medians"].items():
        print(f"{key:<44}{_figure(value):>12}")
    for key, ratio in results["ratios"].items():
        print(f"{key:<44}{ratio:>12.2f}")


if __name__ == "__main__":
    main()

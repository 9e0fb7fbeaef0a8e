"""HTTP throughput: ``framework run`` against raw starlette and FastAPI under uvicorn, with wrk.

Run from the repository root (needs Debian's ``wrk`` and ``pip install -e '.[bench]'``)::

    python bench/gateway.py [--rounds 3] [--duration 5] [--connections 1,64] [--no-auth] [--json]
    python bench/gateway.py --smoke     # one short run of each, to check the bench works

Each side runs in a child process started the way its users start it, and the load comes from
``wrk``, another process: the framework side is ``framework run bench.gateway:app --backend
memory:// --no-smtp --http-port PORT`` (the gateway with its own sockets and settings, metrics
on, as ``framework run`` serves it); the raw starlette and FastAPI sides are ``uvicorn
bench.gateway:starlette_app --factory --port PORT`` with uvicorn's defaults, except
``--no-access-log``, because ``framework run`` writes no access log either, and ``--http h11``,
uvicorn's default unless httptools is installed (``pip install uvicorn``); a fourth side,
``starlette+httptools``, serves raw starlette with ``--http httptools``, as
``pip install 'uvicorn[standard]'`` would. All do the same work:
``POST /items`` validates a JSON body with a pydantic model and answers it back as JSON;
``GET /items/{id}`` answers a small JSON object with the path parameter. With auth on (the
default), both routes check an API key in the ``X-API-Key`` header on every side. Rounds
alternate the sides, for each scenario and connection count, after a warm-up of each, and the
order rotates each round; the figures are medians, and the ratios are of the medians. After
its runs, the framework side is checked for what it was measured with: a request without the
key is refused, and ``/metrics`` counted every answer wrk got.

wrk runs on the same machine as the server, so both compete for the cores: on a shared 2-core
machine, absolute rates move a lot between runs; compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from bench.children import (
    FRAMEWORK,
    free_port,
    http_answered,
    idle_connection_bytes,
    run_wrk,
    serve,
)

AUTH = os.environ.get("BENCH_GATEWAY_AUTH", "1") == "1"
KEY = "bench-key"
BODY = json.dumps({"name": "widget", "price": 9.99, "tags": ["a", "b"], "quantity": 3})


class Item(BaseModel):
    name: str
    price: float
    tags: list[str]
    quantity: int


def framework_app() -> Any:
    """The framework side: two routes, an API key authorizer when auth is on, metrics on.

    ``framework run bench.gateway:app`` reads it as the module's ``app`` (``__getattr__``
    below), so the raw sides' processes never import the framework.
    """
    from framework import App
    from framework.gateway.auth import APIKeyAuth

    app = App("bench")
    auth = APIKeyAuth({KEY: "bench"}) if AUTH else None

    @app.route("/items", methods=["POST"], auth=auth)
    async def create(item: Item) -> Item:
        return item

    @app.route("/items/{item_id}", auth=auth)
    async def read(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "name": "widget"}

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return framework_app()
    raise AttributeError(name)


def starlette_app() -> Any:
    """The raw starlette side: the same two routes and the same key check, by hand."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def denied(request: Request) -> Response | None:
        if AUTH and request.headers.get("x-api-key") != KEY:
            return JSONResponse({"detail": "forbidden"}, status_code=403)
        return None

    async def create(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused
        item = Item.model_validate_json(await request.body())
        return Response(item.model_dump_json(), media_type="application/json")

    async def read(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused
        return JSONResponse({"id": int(request.path_params["item_id"]), "name": "widget"})

    return Starlette(
        routes=[Route("/items", create, methods=["POST"]), Route("/items/{item_id:int}", read)]
    )


def fastapi_app() -> Any:
    """The FastAPI side: the same routes, the key checked by a dependency."""
    from fastapi import Depends, FastAPI, Header, HTTPException

    app = FastAPI()

    async def key(x_api_key: str | None = Header(default=None)) -> None:
        if AUTH and x_api_key != KEY:
            raise HTTPException(403, "forbidden")

    @app.post("/items", dependencies=[Depends(key)])
    async def create(item: Item) -> Item:
        return item

    @app.get("/items/{item_id}", dependencies=[Depends(key)])
    async def read(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "name": "widget"}

    return app


SIDES = ("framework", "starlette", "fastapi", "starlette+httptools")
# The twins as ``pip install uvicorn`` serves them (h11, pure Python), and raw starlette as
# ``pip install 'uvicorn[standard]'`` serves it (httptools' C parser): the fastest raw twin.
TWINS = SIDES[1:]


def command(side: str, port: int) -> list[str]:
    """The command line that serves ``side`` on ``port``, as its users would type it."""
    if side == "framework":
        return [
            *FRAMEWORK, "run", "bench.gateway:app", "--backend", "memory://", "--no-smtp",
            "--http-port", str(port), "--log-level", "warning",
        ]  # fmt: skip
    app, _, parser = side.partition("+")
    parser = parser or "h11"  # uvicorn's default unless httptools is installed: said outright
    return [
        sys.executable, "-m", "uvicorn", f"bench.gateway:{app}_app", "--factory",
        "--port", str(port), "--no-access-log", "--http", parser,
    ]  # fmt: skip


@contextlib.contextmanager
def served(side: str) -> Iterator[tuple[str, int, int]]:
    """Run ``side`` in a child process on a free port; yield its base URL, port and pid."""
    port = free_port()
    env = {"BENCH_GATEWAY_AUTH": str(int(AUTH))}
    with serve(command(side, port), port, env=env) as process:
        yield f"http://127.0.0.1:{port}", port, process.pid


def idle_memory(pid: int, port: int, connections: int) -> float:
    """Bytes of the server's resident memory per idle keep-alive connection (one GET each)."""
    key = f"X-API-Key: {KEY}\r\n" if AUTH else ""
    request = f"GET /items/42 HTTP/1.1\r\nHost: bench\r\n{key}\r\n".encode()
    return idle_connection_bytes(pid, port, [(request, http_answered)], connections)


def lua(scenario: str) -> str:
    headers = f'wrk.headers["X-API-Key"] = "{KEY}"\n' if AUTH else ""
    if scenario == "post":
        body = json.dumps(BODY)
        return (
            f'wrk.method = "POST"\nwrk.body = {body}\n'
            f'wrk.headers["Content-Type"] = "application/json"\n{headers}'
        )
    return headers


def wrk(url: str, scenario: str, duration: int, connections: int) -> tuple[float, float, int]:
    """Run wrk against ``url``; return requests per second, p99 latency in ms, and requests."""
    path = "/items" if scenario == "post" else "/items/42"
    out = run_wrk(url + path, lua(scenario), duration=duration, connections=connections,
                  threads=min(2, connections), latency=True)  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rate, float(p99) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], count


SCENARIOS = ("post", "get")
IDLE = 500  # keep-alive connections opened on each fresh server, for its memory per connection


def check_framework(url: str, answered: int) -> None:
    """Check that the framework side ran with what it is measured with: auth and metrics on.

    Raises:
        RuntimeError: If a request without the key is let through while auth is on, or if
            ``/metrics`` did not count at least ``answered`` 2xx answers of the routes.
    """
    if AUTH:
        try:
            urllib.request.urlopen(url + "/items/42", timeout=10).close()
        except urllib.error.HTTPError as exc:
            if exc.code not in (401, 403):
                raise RuntimeError(f"a request without the key got {exc.code}") from None
        else:
            raise RuntimeError("auth is on but a request without the key was answered")
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    counted = sum(
        float(value)
        for value in re.findall(
            r'^framework_http_requests_total\{[^}]*route="/items[^"]*"[^}]*status_class="2xx"'
            r"[^}]*\} ([\d.e+]+)$",
            text,
            re.MULTILINE,
        )
    )
    if counted < answered:
        raise RuntimeError(f"/metrics counted {counted:.0f} answers, wrk had {answered}")


def measure(
    sides: list[str],
    rounds: int,
    duration: int,
    connections: list[int],
    warmup: bool,
    idle: int = IDLE,
) -> dict[str, Any]:
    """Serve each side in turn, run every scenario at every connection count; return medians.

    Each fresh server is first asked for ``idle`` keep-alive connections left open, for its
    memory per idle connection.
    """  # fmt: skip
    results: dict[str, list[tuple[float, float]]] = {}
    memory: dict[str, list[float]] = {}
    for round_ in range(rounds):
        # Rotated each round: going first or last after a server stops moved a side's
        # figure by 10-20% on a shared 2-core machine.
        for side in sides[round_ % len(sides) :] + sides[: round_ % len(sides)]:
            with served(side) as (url, port, pid):
                # First, on the fresh server: its heap has not grown under load yet.
                memory.setdefault(side, []).append(idle_memory(pid, port, idle))
                answered = 0
                for scenario in SCENARIOS:
                    if warmup:  # imports, first validations, warm caches: not measured
                        answered += wrk(url, scenario, 1, max(connections))[2]
                    for count in connections:
                        rate, p99, requests = wrk(url, scenario, duration, count)
                        answered += requests
                        results.setdefault(f"{side}/{scenario}/c{count}", []).append((rate, p99))
                if side == "framework":
                    check_framework(url, answered)
    summary: dict[str, Any] = {
        "auth": AUTH, "rounds": rounds, "duration_s": duration, "cpus": os.cpu_count(),
    }  # fmt: skip
    for key, runs in results.items():
        summary[key] = {
            "rps": round(statistics.median(r for r, _ in runs)),
            "p99_ms": round(statistics.median(p for _, p in runs), 2),
            "rps_runs": [round(r) for r, _ in runs],
        }
    ratios: dict[str, float] = {}
    for scenario in SCENARIOS:
        for count in connections:
            mine = summary.get(f"framework/{scenario}/c{count}")
            for other in TWINS:
                theirs = summary.get(f"{other}/{scenario}/c{count}")
                if mine and theirs:
                    label = f"{scenario} c={count} framework/{other}"
                    ratios[label] = round(mine["rps"] / theirs["rps"], 3)
    summary["ratios"] = ratios
    summary["idle_bytes_per_connection"] = {
        side: round(statistics.median(runs)) for side, runs in memory.items()
    }
    figures = {
        f"{key.replace('/', ' ', 1).replace('/c', ' c=')}": (
            f"{value['rps']:,} req/s, p99 {value['p99_ms']:.2f} ms"
        )
        for key, value in summary.items()
        if isinstance(value, dict) and "rps" in value
    }
    for side, size in summary["idle_bytes_per_connection"].items():
        figures[f"{side} memory per idle connection"] = f"{size / 1024:.1f} KiB"
    summary["figures"] = figures
    return summary


def main(argv: list[str] | None = None) -> None:
    global AUTH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", default="1,64", help="comma-separated counts")
    parser.add_argument("--no-auth", action="store_true", help="no API key check on any side")
    parser.add_argument("--only", choices=SIDES, action="append")
    parser.add_argument("--smoke", action="store_true", help="1 round of 1 s at 8 connections")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    AUTH = not args.no_auth
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    sides = args.only or list(SIDES)
    connections = [int(c) for c in args.connections.split(",")]
    if args.smoke:
        summary = measure(sides, 1, 1, [8], warmup=False, idle=50)
    else:
        summary = measure(sides, args.rounds, args.duration, connections, warmup=True)
    if args.json:
        print(json.dumps(summary))
        return
    print(f"auth={'on' if AUTH else 'off'}, {summary['rounds']} rounds of "
          f"{summary['duration_s']}s, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'side/scenario/connections':<28}{'req/s':>10}{'p99 ms':>10}  runs")
    for key, value in summary.items():
        if isinstance(value, dict) and "rps" in value:
            print(f"{key:<28}{value['rps']:>10}{value['p99_ms']:>10.2f}  {value['rps_runs']}")
    for side, size in summary["idle_bytes_per_connection"].items():
        print(f"{side + ' memory per idle connection':<40}{size / 1024:>6.1f} KiB")
    for key, ratio in summary["ratios"].items():
        print(f"{key:<40}{ratio:>6.2f}")


if __name__ == "__main__":
    main()

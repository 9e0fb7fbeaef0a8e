"""HTTP throughput: the framework's gateway against raw starlette and FastAPI, measured with wrk.

Run from the repository root (needs Debian's ``wrk`` and ``pip install fastapi``)::

    python bench/gateway.py [--rounds 3] [--duration 5] [--connections 32] [--no-auth] [--json]

Each side is the same app served by its own ``uvicorn`` process with the same settings (one
worker, default loop and HTTP parser, no access log), doing the same work: ``POST /items``
validates a JSON body with a pydantic model and answers it back as JSON; ``GET /hello``
answers a small JSON object. With auth on (the default), both routes check an API key in the
``X-API-Key`` header on every side; the framework also has metrics on (its default), which the
raw sides do not. Rounds alternate the sides, for each scenario, after a warm-up of each, and
the order rotates each round; the figures are medians, and the ratios are of the medians.

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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

AUTH = os.environ.get("BENCH_GATEWAY_AUTH", "1") == "1"
KEY = "bench-key"
BODY = json.dumps({"name": "widget", "price": 9.99, "tags": ["a", "b"], "quantity": 3})


class Item(BaseModel):
    name: str
    price: float
    tags: list[str]
    quantity: int


def framework_app() -> Any:
    """The framework side: two routes, an API key authorizer when auth is on, metrics on."""
    from framework import App
    from framework.gateway.auth import APIKeyAuth

    app = App("bench")
    auth = APIKeyAuth({KEY: "bench"}) if AUTH else None

    @app.route("/items", methods=["POST"], auth=auth)
    async def create(item: Item) -> Item:
        return item

    @app.route("/hello", auth=auth)
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app.asgi


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

    async def hello(request: Request) -> Response:
        return denied(request) or JSONResponse({"hello": "world"})

    return Starlette(routes=[Route("/items", create, methods=["POST"]), Route("/hello", hello)])


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

    @app.get("/hello", dependencies=[Depends(key)])
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


SIDES = {"framework": "framework_app", "starlette": "starlette_app", "fastapi": "fastapi_app"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(factory: str) -> Iterator[str]:
    """Run ``bench.gateway:FACTORY`` under uvicorn on a free port; yield its base URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", f"bench.gateway:{factory}", "--factory",
        "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, "BENCH_GATEWAY_AUTH": str(int(AUTH))})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{factory} did not start on port {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def lua(scenario: str) -> str:
    headers = f'wrk.headers["X-API-Key"] = "{KEY}"\n' if AUTH else ""
    if scenario == "post":
        body = json.dumps(BODY)
        return (
            f'wrk.method = "POST"\nwrk.body = {body}\n'
            f'wrk.headers["Content-Type"] = "application/json"\n{headers}'
        )
    return headers


def wrk(url: str, scenario: str, duration: int, connections: int) -> tuple[float, float]:
    """Run wrk against ``url``; return requests per second and p99 latency in milliseconds."""
    path = "/items" if scenario == "post" else "/hello"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua(scenario))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script.name,
             url + path],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"{url}{path} answered errors:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return rate, float(p99) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    global AUTH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-auth", action="store_true", help="no API key check on any side")
    parser.add_argument("--only", choices=sorted(SIDES), action="append")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    AUTH = not args.no_auth
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    sides = args.only or list(SIDES)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for scenario in ("post", "get"):
        for side in sides:  # warm-up: imports, first validations, JIT-free but cache-warm
            with serve(SIDES[side]) as url:
                wrk(url, scenario, 1, args.connections)
        for round_ in range(args.rounds):
            # Rotated each round: going first or last after a server stops moved a side's
            # figure by 10-20% on a shared 2-core machine.
            for side in sides[round_ % len(sides) :] + sides[: round_ % len(sides)]:
                with serve(SIDES[side]) as url:
                    results.setdefault((side, scenario), []).append(
                        wrk(url, scenario, args.duration, args.connections)
                    )
    summary: dict[str, Any] = {"auth": AUTH, "rounds": args.rounds, "cpus": os.cpu_count()}
    for (side, scenario), runs in results.items():
        summary[f"{side}/{scenario}"] = {
            "rps": statistics.median(r for r, _ in runs),
            "p99_ms": statistics.median(p for _, p in runs),
            "rps_runs": [round(r) for r, _ in runs],
        }
    for scenario in ("post", "get"):
        mine = summary.get(f"framework/{scenario}")
        for other in ("starlette", "fastapi"):
            theirs = summary.get(f"{other}/{scenario}")
            if mine and theirs:
                summary[f"ratio/{scenario}/framework:{other}"] = mine["rps"] / theirs["rps"]
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"auth={'on' if AUTH else 'off'}, {args.rounds} rounds of {args.duration}s, "
          f"{args.connections} connections, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'side/scenario':<22}{'req/s':>10}{'p99 ms':>10}  runs")
    for key, value in summary.items():
        if isinstance(value, dict):
            print(f"{key:<22}{value['rps']:>10.0f}{value['p99_ms']:>10.2f}  {value['rps_runs']}")
    for key, value in summary.items():
        if key.startswith("ratio/"):
            print(f"{key:<40}{value:>6.2f}")


if __name__ == "__main__":
    main()

"""Cold start and per-invocation cost of ``lambda_handler(app)`` against a bare Lambda handler.

Run from the repository root (``pip install -e '.[dev]'`` brings aiobotocore and moto)::

    python -m bench.lambda [--rounds 5] [--invocations 2000] [--json]
    python -m bench.lambda --smoke        # a check that it runs, not a measurement

Two function modules do the same work, as their users would write them:

* **framework**: ``bench/lambda_app.py``, an ``App`` with ``POST /orders`` (an ``Order`` body,
  answered 201) and an ``@app.on_queue`` handler of ``Order`` bodies, and
  ``handler = lambda_handler(app)``; its backend is ``aws://`` on moto (``FRAMEWORK_BACKEND``);
* **bare**: ``bench/lambda_bare.py``, a hand-written ``handler(event, context)`` that validates
  the same bodies with the same pydantic model and answers in the same shapes.

Each is run the way Lambda's Python runtime runs it: a **child process per cold start** (a
fresh interpreter that imports the module, then calls ``MODULE.handler(event, context)``), and
in that same, now warm, child ``--invocations`` more calls of the same event. Two events, each
in its own children: an API Gateway HTTP API (payload 2.0) ``POST /orders`` with a JSON order of
about 1 KiB, and an SQS batch of 10 such records (every attribute a string, as AWS sends them).
Each child checks every answer (201 and the order's id; no ``batchItemFailures``).

Reported, as medians over ``--rounds`` children per side and event (sides alternating, the
order rotating each round): the import, the first invocation and their sum (the cold start), in
ms, and the warm per-invocation time in µs; and the ratios framework/bare of those times (so
here **lower is better**: 2.0 means twice the bare handler's time).

moto's server runs in a child of its own on a free loopback port (dummy credentials, never
AWS), for any AWS API the framework's side calls; a successful invocation calls none.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.aws import DUMMY, REGION, moto_server
from bench.lambda_app import QUEUE
from bench.orders import make_orders

SIDES = {"framework": "bench.lambda_app", "bare": "bench.lambda_bare"}
EVENTS = ("http", "sqs")
LABELS = {"http": "HTTP API POST", "sqs": "SQS batch of 10"}
ACCOUNT = "123456789012"
CHILD_TIMEOUT = 120.0
ROOT = Path(__file__).resolve().parents[1]  # the repository: the children import from here

# The child: nothing imported before the clock starts but the standard library, then the
# function's module (the cold start's import) and its first invocation, then the warm calls.
CHILD = r"""
import importlib, json, sys, time
module_name, event_file, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(event_file) as f:
    event = json.load(f)

class Context:
    function_name = "bench-lambda"
    memory_limit_in_mb = 512

    def __init__(self, n):
        self.aws_request_id = "bench-%d" % n
        self.deadline = time.monotonic() + 30.0

    def get_remaining_time_in_millis(self):
        return int((self.deadline - time.monotonic()) * 1000)

def check(answer):
    if "Records" in event:
        if answer.get("batchItemFailures"):
            raise SystemExit("failed records: %r" % (answer,))
    elif answer.get("statusCode") != 201 or json.loads(answer["body"])["id"] != 7:
        raise SystemExit("unexpected answer: %r" % (answer,))

started = time.perf_counter()
module = importlib.import_module(module_name)
imported = time.perf_counter()
check(module.handler(event, Context(0)))
first = time.perf_counter()
contexts = [Context(n) for n in range(1, count + 1)]
warm = []
for context in contexts:
    t = time.perf_counter_ns()
    answer = module.handler(event, context)
    warm.append(time.perf_counter_ns() - t)
    check(answer)
with open(out, "w") as f:
    json.dump({"import_ms": (imported - started) * 1e3, "first_ms": (first - imported) * 1e3,
               "warm_ns": warm}, f)
"""


def http_event(body: str) -> dict[str, Any]:
    """An HTTP API ``POST /orders`` event (payload 2.0), as API Gateway sends it."""
    host = f"abcdef1234.execute-api.{REGION}.amazonaws.com"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/orders",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "content-length": str(len(body.encode())),
            "host": host,
            "user-agent": "bench/1.0",
            "x-forwarded-for": "198.51.100.9",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abcdef1234",
            "domainName": host,
            "domainPrefix": "abcdef1234",
            "http": {
                "method": "POST",
                "path": "/orders",
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.9",
                "userAgent": "bench/1.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "03/Dec/2026:08:00:00 +0000",
            "timeEpoch": 1796284800000,
        },
        "body": body,
        "isBase64Encoded": False,
    }


def sqs_event(bodies: Sequence[str]) -> dict[str, Any]:
    """An SQS event source mapping's batch of ``bodies`` from the app's queue."""
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}"
    return {
        "Records": [
            {
                "messageId": f"00000000-0000-4000-8000-{index:012d}",
                "receiptHandle": f"AQEB-bench-receipt-{index}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1796284800000",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1796284800010",
                },
                "messageAttributes": {},
                "md5OfBody": "0" * 32,
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            }
            for index, body in enumerate(bodies)
        ]
    }


def child_env(endpoint: str) -> dict[str, str]:
    """The environment of a function's process: what Lambda sets, plus the backend on moto."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID=DUMMY,
        AWS_SECRET_ACCESS_KEY=DUMMY,
        AWS_LAMBDA_FUNCTION_NAME="bench-lambda",
        FRAMEWORK_BACKEND=f"aws://{REGION}?endpoint_url={endpoint}",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


def run_child(module: str, event_file: str, count: int, env: dict[str, str]) -> dict[str, Any]:
    """One cold start and ``count`` warm invocations in a fresh interpreter; its figures."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = out.name
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, module, event_file, str(count), path],
            env=env,
            cwd=ROOT,  # ``python -c`` puts the working directory first on sys.path
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the framework's log lines, as CloudWatch would take them
            stderr=subprocess.PIPE,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{module} exited {done.returncode}: {done.stderr[-2000:]}")
        with open(path) as f:
            return dict(json.load(f))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def measure(rounds: int, invocations: int) -> dict[str, Any]:
    """Run the children and return the medians and ratios."""
    orders = make_orders(10)
    bodies = [order.model_copy(update={"id": 7}).model_dump_json() for order in orders]
    cold: dict[tuple[str, str], list[float]] = {}
    imports: dict[tuple[str, str], list[float]] = {}
    firsts: dict[tuple[str, str], list[float]] = {}
    warm: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as directory, moto_server(stock=True) as (endpoint, _):
        files = {}
        for kind, event in (("http", http_event(bodies[0])), ("sqs", sqs_event(bodies))):
            files[kind] = os.path.join(directory, f"{kind}.json")
            with open(files[kind], "w") as f:
                json.dump(event, f)
        env = child_env(endpoint)
        sides = list(SIDES)
        for index in range(rounds):
            order = sides[index % len(sides) :] + sides[: index % len(sides)]
            for kind in EVENTS:
                for side in order:
                    got = run_child(SIDES[side], files[kind], invocations, env)
                    key = (side, kind)
                    imports.setdefault(key, []).append(got["import_ms"])
                    firsts.setdefault(key, []).append(got["first_ms"])
                    cold.setdefault(key, []).append(got["import_ms"] + got["first_ms"])
                    warm.setdefault(key, []).append(statistics.median(got["warm_ns"]) / 1e3)
                    if not QUIET:
                        print(
                            f"round {index + 1} {side:9} {kind}: import {got['import_ms']:.1f} ms, "
                            f"first {got['first_ms']:.1f} ms, warm median "
                            f"{warm[key][-1]:.0f} µs",
                            file=sys.stderr,
                            flush=True,
                        )

    def median(figures: dict[tuple[str, str], list[float]], side: str, kind: str) -> float:
        return statistics.median(figures[(side, kind)])

    medians: dict[str, dict[str, float]] = {}
    ratios: dict[str, float] = {}
    for kind in EVENTS:
        for side in SIDES:
            medians[f"{side} {kind}"] = {
                "import_ms": round(median(imports, side, kind), 2),
                "first_invocation_ms": round(median(firsts, side, kind), 2),
                "cold_start_ms": round(median(cold, side, kind), 2),
                "warm_invocation_us": round(median(warm, side, kind), 1),
            }
        label = LABELS[kind]
        framework, bare = medians[f"framework {kind}"], medians[f"bare {kind}"]
        ratios[f"cold start, {label}, framework/bare time"] = round(
            framework["cold_start_ms"] / bare["cold_start_ms"], 2
        )
        ratios[f"per invocation, {label}, framework/bare time"] = round(
            framework["warm_invocation_us"] / bare["warm_invocation_us"], 2
        )
    figures = {
        f"{side}: cold start, per invocation": (
            f"{value['cold_start_ms']:,.1f} ms, {value['warm_invocation_us']:,.1f} µs"
        )
        for side, value in medians.items()
    }
    return {
        "bench": "lambda",
        "rounds": rounds,
        "invocations": invocations,
        "medians": medians,
        "ratios": ratios,
        "figures": figures,
    }


QUIET = False


def main(argv: Sequence[str] | None = None) -> None:
    global QUIET
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="cold starts per side and event")
    parser.add_argument(
        "--invocations", type=int, default=2_000, help="warm invocations in each child"
    )
    parser.add_argument("--smoke", action="store_true", help="1 round of 50 warm invocations")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.smoke:  # a check that the bench works, not a measurement
        args.rounds, args.invocations = 1, 50
    if min(args.rounds, args.invocations) < 1:
        parser.error("--rounds and --invocations must be positive")
    QUIET = args.json
    started = time.monotonic()
    results = measure(args.rounds, args.invocations)
    if args.json:
        print(json.dumps(results))
        return
    print(
        f"{args.rounds} round(s), {args.invocations} warm invocations per child, "
        f"{time.monotonic() - started:.0f} s"
    )
    print("| side | event | import ms | first invocation ms | cold start ms | warm µs |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, figures in results["medians"].items():
        side, kind = name.split()
        print(
            f"| {side} | {LABELS[kind]} | {figures['import_ms']:.1f} | "
            f"{figures['first_invocation_ms']:.1f} | {figures['cold_start_ms']:.1f} | "
            f"{figures['warm_invocation_us']:.0f} |"
        )
    for label, ratio in results["ratios"].items():
        print(f"{label}: {ratio:.2f}")


if __name__ == "__main__":
    main()

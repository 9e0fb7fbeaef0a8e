"""Run every benchmark, one after another, and write a markdown table of their ratios.

Run from the repository root (needs Debian's ``wrk``, RabbitMQ on ``--rabbitmq-url`` and
``pip install -e '.[dev,bench]'``)::

    python -m bench                      # full runs; the table goes to stdout and --out
    python -m bench --out bench/last.md  # also write the table to a file
    python -m bench --smoke              # each for a few hundred requests/messages: CI's check
    python -m bench --only gateway --only smtp

Each benchmark runs as its own process (``python -m bench.NAME --json``), alternates its
framework and twin rounds itself and reports the medians; this command collects their ratios.
A benchmark that fails (a server that does not start, an error answer, a lost message) makes
the command exit 1 after the others have run, with its output.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

BENCHES = (
    "gateway",
    "smtp",
    "memory_backend",
    "rabbitmq",
    "aws",
    "sqlite",
    "websocket",
    "lambda",
)


def ratios_of(result: dict[str, Any]) -> dict[str, float]:
    """The framework/twin ratios a benchmark's JSON reports, whichever shape it uses."""
    if isinstance(result.get("ratios"), dict):
        return {str(k): float(v) for k, v in result["ratios"].items() if v is not None}
    if result.get("ratio") is not None:
        return {"framework/raw": float(result["ratio"])}
    return {}


def figures_of(result: dict[str, Any]) -> dict[str, str]:
    """The absolute figures a benchmark reports beside its ratios (rates, p99, memory)."""
    figures = result.get("figures")
    return {str(k): str(v) for k, v in figures.items()} if isinstance(figures, dict) else {}


def run(name: str, extra: list[str], timeout: float) -> tuple[dict[str, Any] | None, str, float]:
    """Run one benchmark; return its JSON (None if it failed), its output and its seconds."""
    command = [sys.executable, "-m", f"bench.{name}", "--json", *extra]
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return None, f"timed out after {timeout:.0f}s: {exc.stderr or ''}", timeout
    elapsed = time.monotonic() - started
    output = (done.stderr or "")[-4000:]
    if done.returncode != 0:
        return None, f"exit {done.returncode}\n{output}", elapsed
    try:
        return json.loads(done.stdout.strip().splitlines()[-1]), output, elapsed
    except (json.JSONDecodeError, IndexError):
        return None, f"no JSON line in its output:\n{done.stdout[-2000:]}\n{output}", elapsed


def table(
    rows: list[tuple[str, str, float]], smoke: bool, figures: list[tuple[str, str, str]]
) -> str:
    """The markdown tables (ratios, then the figures), headed with the date and the machine."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    head = [
        f"`python -m bench{' --smoke' if smoke else ''}`, {now}, {os.cpu_count()} CPUs, "
        f"load {load} at the end, CPython {platform.python_version()}",
        "",
    ]
    if smoke:
        head += ["Smoke run: a few hundred requests or messages each, not a measurement.", ""]
    lines = ["| benchmark | ratio | value |", "| --- | --- | ---: |"]
    lines += [f"| {bench} | {label} | {value:.2f} |" for bench, label, value in rows]
    if figures:
        lines += ["", "| benchmark | figure | value |", "| --- | --- | ---: |"]
        lines += [f"| {bench} | {label} | {value} |" for bench, label, value in figures]
    return "\n".join(head + lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="a few hundred of each, to check")
    parser.add_argument("--only", choices=BENCHES, action="append", help="run only these")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--timeout", type=float, help="seconds per benchmark (smoke 60, else 3600)")
    args = parser.parse_args(argv)
    timeout = args.timeout or (60.0 if args.smoke else 3600.0)
    extra = ["--smoke"] if args.smoke else []
    rows: list[tuple[str, str, float]] = []
    figures: list[tuple[str, str, str]] = []
    failed: list[str] = []
    for name in args.only or BENCHES:
        result, output, elapsed = run(name, extra, timeout)
        if result is None:
            failed.append(name)
            print(f"{name}: FAILED after {elapsed:.1f}s: {output}", file=sys.stderr, flush=True)
            continue
        found = ratios_of(result)
        if not found:
            failed.append(name)
            print(f"{name}: FAILED: no ratio in {json.dumps(result)[:500]}", file=sys.stderr)
            continue
        shown = ", ".join(f"{label} {value:.2f}" for label, value in found.items())
        print(f"{name}: {shown} ({elapsed:.1f}s)", flush=True)
        rows += [(name, label, value) for label, value in found.items()]
        figures += [(name, label, value) for label, value in figures_of(result).items()]
    markdown = table(rows, args.smoke, figures)
    print()
    print(markdown, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(markdown)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

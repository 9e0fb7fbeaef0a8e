"""`framework send` with several bodies or `--file`: one batch, one id per line, none on error."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from framework.backends.sqlite import SQLiteBackend
from framework.cli.main import cli
from framework.registry import QueueSpec


def _file_with_queue(tmp_path: Path) -> str:
    """A sqlite file holding an empty queue ``jobs``; return its URL."""
    url = f"sqlite:///{tmp_path}/app.db"

    async def declare() -> None:
        async with SQLiteBackend.from_url(url) as backend:
            await backend.declare_queue(QueueSpec.from_options("jobs"))

    asyncio.run(declare())
    return url


def _depth(url: str) -> int:
    async def depth() -> int:
        async with SQLiteBackend.from_url(url) as backend:
            return (await backend.stats("jobs")).depth

    return asyncio.run(depth())


def test_several_bodies_and_a_file_are_sent_with_one_id_each(tmp_path: Path) -> None:
    """Three bodies on the command line and two lines of a file queue five messages."""
    url = _file_with_queue(tmp_path)
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"id": "d"}\n\n"e"\n', encoding="utf-8")
    runner = CliRunner()
    listed = runner.invoke(cli, ["send", "jobs", '{"id": "a"}', "b", "3", "--backend", url])
    from_file = runner.invoke(cli, ["send", "jobs", "--file", str(bodies), "--backend", url])
    assert listed.exit_code == 0, listed.output
    assert from_file.exit_code == 0, from_file.output
    ids = listed.stdout.split() + from_file.stdout.split()
    assert len(set(ids)) == 5
    assert _depth(url) == 5


def test_stdin_lines_are_bodies_with_file_dash(tmp_path: Path) -> None:
    """``--file -`` reads one body per line from stdin."""
    url = _file_with_queue(tmp_path)
    result = CliRunner().invoke(
        cli, ["send", "jobs", "--file", "-", "--backend", url], input="1\n2\n3\n4\n"
    )
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) == 4
    assert _depth(url) == 4


def test_one_bad_body_of_several_sends_none(tmp_path: Path) -> None:
    """A body over the limit among several is one error line naming it; nothing is queued."""
    url = _file_with_queue(tmp_path)
    big = "x" * (1_048_576 + 1)
    result = CliRunner().invoke(cli, ["send", "jobs", "a", big, "--backend", url])
    assert result.exit_code != 0
    assert "body 1 of 2" in result.stderr
    assert _depth(url) == 0


def test_no_body_at_all_is_a_usage_error() -> None:
    """`framework send QUEUE` without a body or --file says what it needs."""
    result = CliRunner().invoke(cli, ["send", "jobs", "--backend", "memory://"])
    assert result.exit_code == 2
    assert "--file" in result.stderr

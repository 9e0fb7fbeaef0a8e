"""Every CLI failure is one ``error:`` line and a non-zero exit, with URL secrets masked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from framework.cli.main import cli
from tests.conftest import AMQP, free_port, reachable

from .conftest import framework

SECRET = "s3cr3t-Pa55"


def run(*args: str, input: str | None = None) -> Result:
    """Run the CLI in-process; any exception escaping it fails the test (no traceback)."""
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


def assert_one_error_line(result: Result, *, containing: str) -> str:
    """The command failed with exactly one ``error:`` line naming ``containing``, no secret."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert line.startswith("error: "), line
    assert containing in line, line
    assert SECRET not in result.output + result.stderr
    assert "Traceback" not in result.stderr
    return line


@pytest.fixture(autouse=True)
def _no_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from an empty folder: no pyproject profile, no FRAMEWORK_* settings."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("FRAMEWORK_"):
            monkeypatch.delenv(name)


def test_unreachable_broker_is_one_line_with_the_password_masked() -> None:
    """A refused port: one line naming the URL, its password masked."""
    url = f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/"
    line = assert_one_error_line(
        run("queues", "--backend", url, "--queue", "q"), containing="cannot connect to"
    )
    assert "127.0.0.1" in line
    assert SECRET not in line


@pytest.mark.skipif(not reachable(AMQP), reason="RabbitMQ is not reachable")
def test_wrong_broker_credentials_are_one_line() -> None:
    """RabbitMQ refusing the login: one line saying so, the wrong password masked."""
    url = f"amqp://guest:{SECRET}@127.0.0.1:5672/"
    line = assert_one_error_line(
        run("queues", "--backend", url, "--queue", "q"), containing="refused the login"
    )
    assert SECRET not in line


@pytest.mark.parametrize(
    "url", [f"amqp://guest:{SECRET}@127.0.0.1:notaport/", f"aws://:{SECRET}@:x/?profile=p"]
)
def test_malformed_backend_url_is_one_line(url: str) -> None:
    """A URL whose port is not a number is a configuration error, not a traceback."""
    assert_one_error_line(run("queues", "--backend", url, "--queue", "q"), containing="malformed")


def test_unknown_scheme_masks_the_password() -> None:
    """An unknown scheme lists the known ones and never prints the password."""
    line = assert_one_error_line(
        run("queues", "--backend", f"kafka://admin:{SECRET}@broker:9092/"),
        containing="known: amqp://",
    )
    assert "kafka://admin:***@broker:9092/" in line


def test_secret_query_options_are_masked() -> None:
    """A secret in the query string (aws_secret_access_key=...) never appears either."""
    result = run(
        "queues",
        "--backend",
        f"kafka://broker/?aws_secret_access_key={SECRET}&region=eu-west-1",
    )
    line = assert_one_error_line(result, containing="aws_secret_access_key=***")
    assert "region=eu-west-1" in line


@pytest.mark.parametrize(
    ("body", "shown"), [("NaN", "NaN"), ("Infinity", "Infinity"), ('{"total": 1e400}', "1e400")]
)
def test_non_finite_json_bodies_are_refused_not_sent_as_null(body: str, shown: str) -> None:
    """``framework send orders NaN`` is refused before anything is sent (no broker needed)."""
    url = f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/"
    line = assert_one_error_line(
        run("send", "orders", body, "--backend", url), containing="not a finite number"
    )
    assert shown in line


def test_non_finite_attribute_is_refused() -> None:
    """The same holds for an attribute value."""
    url = f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/"
    assert_one_error_line(
        run("send", "orders", "x", "--attribute", "total=-Infinity", "--backend", url),
        containing="attribute 'total'",
    )


def test_a_quoted_nan_is_a_string_body() -> None:
    """Quoted, NaN is an ordinary JSON string: parse_body gives the text, nothing refused."""
    from framework.cli.ops import parse_body

    assert parse_body('"NaN"') == "NaN"
    assert parse_body("1.5e3") == 1500.0
    assert parse_body("not json") == "not json"


def test_redrive_to_itself_is_refused_before_connecting() -> None:
    """``redrive orders-dlq --to orders-dlq`` is refused at once: nothing to connect to."""
    url = f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/"
    assert_one_error_line(
        run("redrive", "orders-dlq", "--to", "orders-dlq", "--backend", url),
        containing="cannot redrive 'orders-dlq' to itself",
    )


def test_an_unexpected_error_is_one_line_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a library raises, the CLI prints its type and message in one line."""
    from framework.cli import ops

    async def broken(self: object, names: object = ()) -> list[dict[str, object]]:
        raise RuntimeError(f"boom\nat amqp://u:{SECRET}@h/ (second line)")

    monkeypatch.setattr(ops.BackendOps, "queues", broken)
    line = assert_one_error_line(
        run("queues", "--backend", "amqp://h/", "--queue", "q"), containing="RuntimeError: boom"
    )
    assert "amqp://u:***@h/" in line


def test_a_real_process_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    """Through the console script in a child process: one line on stderr, exit status 1."""
    result = framework(
        "queues",
        "--backend",
        f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/",
        "--queue",
        "q",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: cannot connect to")
    assert SECRET not in result.stderr + result.stdout

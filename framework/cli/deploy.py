"""``framework provision`` and ``framework export``: the app's resources, made or written down.

Both read what the decorators declare. ``provision`` creates it on a backend once (what
``framework run`` does on every start), for environments that then run with ``--no-declare``;
``export cloudformation`` writes the same resources as a template for AWS deployments.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from framework.aws.function_options import options_for
from framework.aws.sam import template as lambda_template
from framework.backends import from_url
from framework.backends.aws.cloudformation import template
from framework.backends.aws.settings import physical_name
from framework.cli.command import one_line_errors, run_once
from framework.cli.loading import load_app
from framework.exceptions import ConfigError
from framework.settings import load_settings

__all__ = ["export", "package", "provision"]


@click.command()
@click.argument("app_target", metavar="APP")
@click.option("--backend", help="Backend URL: amqp://..., aws://REGION (FRAMEWORK_BACKEND).")
@click.option("--env", "env", help="Profile from [tool.framework.env.NAME] in pyproject.toml.")
@click.option("--check", is_flag=True, help="Create nothing: list what is missing, exit 1 if any.")
@one_line_errors
def provision(app_target: str, backend: str | None, env: str | None, check: bool) -> None:
    """Create APP's queues, dead-letter queues, topics and subscriptions on the backend.

    Idempotent: what exists is kept as it is. Prints each resource as it is done.
    """
    settings = load_settings(env=env, overrides={"backend": backend})
    if settings.backend.startswith("memory:"):
        raise ConfigError(
            "memory:// lives inside one process and keeps nothing: there is nothing to "
            "provision; pass --backend amqp://... or aws://REGION"
        )
    app = load_app(app_target)
    target = from_url(settings.backend_for(app.name))
    runtime = app.run(target, workers=False, declare=not check)
    total = runtime.declarations()
    done = 0

    def progress(what: str) -> None:
        nonlocal done
        done += 1
        click.echo(f"[{done}/{total}] {what}", err=True)

    async def work() -> None:
        await target.__aenter__()
        try:
            await runtime.declare(progress)
        finally:
            await target.__aexit__(None, None, None)

    run_once(work)
    scheme = settings.backend.partition("://")[0]
    if check:
        click.echo(f"all {total} resources exist on {scheme}://")
    else:
        click.echo(f"provisioned {done} resources on {scheme}://")


@click.group()
def export() -> None:
    """Write APP's resources in a deployment format."""


def _lambda_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--memory",
                type=click.IntRange(128, 10240),
                default=512,
                help="Megabytes per function (512).",
            ),
            click.option(
                "--arch",
                "architecture",
                type=click.Choice(["x86_64", "arm64"]),
                default="x86_64",
                help="The functions' architecture (x86_64).",
            ),
            click.option("--python-version", default="3.11", help="Lambda's Python (3.11)."),
        ]
    ):
        command = option(command)
    return command


@export.command()
@click.argument("app_target", metavar="APP")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File (stdout)."
)
@click.option(
    "--lambda",
    "on_lambda",
    is_flag=True,
    help="Add the Lambda functions, triggers, HTTP API and roles (code from S3).",
)
@_lambda_options
@one_line_errors
def cloudformation(
    app_target: str,
    output: str | None,
    on_lambda: bool,
    memory: int,
    architecture: str,
    python_version: str,
) -> None:
    """Print APP's queues, topics, subscriptions and mail rules as a CloudFormation template."""
    app = load_app(app_target)
    if on_lambda:
        options = options_for(
            app,
            app_target,
            memory=memory,
            architecture=architecture,
            python_version=python_version,
        )
        doc = lambda_template(app.registry, options, sam=False, physical=physical_name)
    else:
        doc = template(app.registry, app_name=app.name, physical=physical_name)
    _write(doc, output)


@export.command()
@click.argument("app_target", metavar="APP")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File (stdout)."
)
@click.option("--code-uri", help="The zip `framework package` built (dist/APP.zip).")
@_lambda_options
@one_line_errors
def sam(
    app_target: str,
    output: str | None,
    code_uri: str | None,
    memory: int,
    architecture: str,
    python_version: str,
) -> None:
    """Print a SAM template deploying APP serverless: its resources, functions, API, roles."""
    app = load_app(app_target)
    options = options_for(
        app,
        app_target,
        memory=memory,
        architecture=architecture,
        python_version=python_version,
        code_uri=code_uri,
    )
    _write(lambda_template(app.registry, options, sam=True, physical=physical_name), output)


def _write(doc: dict[str, Any], output: str | None) -> None:
    text = json.dumps(doc, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    with open(output, "w", encoding="utf-8") as file:
        file.write(text)
    click.echo(f"wrote {len(json.loads(text)['Resources'])} resources to {output}", err=True)


@click.command()
@click.argument("app_target", metavar="APP")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), default="dist", help="Folder (dist/)."
)
@click.option(
    "--requirements",
    "requirement_files",
    type=click.Path(dir_okay=False, exists=True),
    multiple=True,
    help="The app's requirements file(s) (requirements.txt if there is one).",
)
@click.option("--arch", "architecture", type=click.Choice(["x86_64", "arm64"]), default="x86_64")
@click.option("--python-version", default="3.11", help="Lambda's Python (3.11).")
@one_line_errors
def package(
    app_target: str,
    out_dir: str,
    requirement_files: tuple[str, ...],
    architecture: str,
    python_version: str,
) -> None:
    """Build dist/APP.zip for AWS Lambda: APP's code and its dependencies for Lambda's platform."""
    from pathlib import Path

    from framework.aws.package import build

    app = load_app(app_target)
    files = [Path(f) for f in requirement_files]
    if not files and Path("requirements.txt").is_file():
        files = [Path("requirements.txt")]
    click.echo(
        f"installing dependencies for Lambda (python{python_version}, {architecture})...", err=True
    )
    built = build(
        app_target,
        Path(out_dir),
        name=app.name,
        requirement_files=files,
        python_version=python_version,
        architecture=architecture,
    )
    left_out = ", ".join(f"{pattern} ({count})" for pattern, count in built.left_out.items())
    click.echo(f"left out: {left_out or 'nothing'}", err=True)
    for warning in built.warnings():
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"built {built.path}: {built.size / 1e6:.1f} MB ({built.unzipped / 1e6:.1f} MB "
        f"unzipped, {built.files} files)"
    )

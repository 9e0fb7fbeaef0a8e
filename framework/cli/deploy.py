"""``framework provision`` and ``framework export``: the app's resources, made or written down.

Both read what the decorators declare. ``provision`` creates it on a backend once (what
``framework run`` does on every start), for environments that then run with ``--no-declare``;
``export cloudformation`` writes the same resources as a template for AWS deployments.
"""

from __future__ import annotations

import json
import sys

import click

from framework.backends import from_url
from framework.backends.aws.cloudformation import template
from framework.backends.aws.settings import physical_name
from framework.cli.command import one_line_errors, run_once
from framework.cli.loading import load_app
from framework.config import load_settings
from framework.exceptions import ConfigError

__all__ = ["export", "provision"]


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


@export.command()
@click.argument("app_target", metavar="APP")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File (stdout)."
)
@one_line_errors
def cloudformation(app_target: str, output: str | None) -> None:
    """Print APP's queues, topics, subscriptions and mail rules as a CloudFormation template."""
    app = load_app(app_target)
    doc = template(app.registry, app_name=app.name, physical=physical_name)
    text = json.dumps(doc, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    with open(output, "w", encoding="utf-8") as file:
        file.write(text)
    click.echo(f"wrote {len(json.loads(text)['Resources'])} resources to {output}", err=True)

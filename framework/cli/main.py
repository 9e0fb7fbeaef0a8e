"""``framework``: the command line. Each command parses, calls one library function, prints."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from framework.cli.command import one_line_errors, run_once
from framework.cli.deploy import export, package, provision
from framework.cli.loading import load_app
from framework.cli.ops import BackendOps, Ops, ServerOps, parse_body, routes_of
from framework.logs import configure
from framework.runtime.operations import check_redrive_target
from framework.settings import load_settings

if TYPE_CHECKING:
    from framework.app import App
    from framework.settings import Settings

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

LOCAL_SERVER = "http://127.0.0.1:8000"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="framework")
def cli() -> None:
    """Run event-driven apps (HTTP, queues, topics, mail) and operate their queues."""


@cli.command()
@click.argument("app_target", metavar="APP")
@click.option(
    "--backend",
    help="Backend URL: sqlite:///PATH (default sqlite:///.framework/{app}.db), memory://, "
    "amqp://..., aws://REGION (FRAMEWORK_BACKEND).",
)
@click.option("--env", "env", help="Profile from [tool.framework.env.NAME] in pyproject.toml.")
@click.option("--host", default=None, help="Address the gateway listens on (default 127.0.0.1).")
@click.option(
    "--http-port", type=click.IntRange(0, 65535), default=None, help="Gateway port (8000)."
)
@click.option("--smtp-port", type=click.IntRange(0, 65535), default=None, help="SMTP port (8025).")
@click.option("--no-http", is_flag=True, help="Do not serve HTTP.")
@click.option("--no-smtp", is_flag=True, help="Do not receive mail.")
@click.option("--workers-only", is_flag=True, help="Only run workers: no HTTP, no SMTP.")
@click.option(
    "--no-declare",
    is_flag=True,
    help="Create nothing on the backend; fail, listing them, if resources are missing.",
)
@click.option(
    "--grace", type=float, default=None, help="Seconds handlers get to finish on stop (30)."
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds an HTTP client gets to send a whole request (10).",
)
@click.option("--log-level", default=None, help="debug, info, warning or error (info).")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
@click.option(
    "--lambda",
    "as_lambda",
    is_flag=True,
    help="Run as AWS Lambda would: SQS event source mappings and an API Gateway front door.",
)
@click.option(
    "--processes",
    default=None,
    help="Run N processes (or auto: one per CPU) sharing the ports and the backend (not memory://).",
)
@click.option("--inherit-sockets", default=None, hidden=True)
@one_line_errors
def run(
    app_target: str,
    backend: str | None,
    env: str | None,
    host: str | None,
    http_port: int | None,
    smtp_port: int | None,
    no_http: bool,
    no_smtp: bool,
    workers_only: bool,
    no_declare: bool,
    grace: float | None,
    read_timeout: float | None,
    log_level: str | None,
    log_json: bool,
    as_lambda: bool = False,
    processes: str | None = None,
    inherit_sockets: str | None = None,
) -> None:
    """Serve APP (module:attribute): gateway, SMTP receiver and workers, until SIGTERM/SIGINT."""
    from framework.cli.http11 import DEFAULT_READ_TIMEOUT
    from framework.cli.run import serve, stop_on_signals

    settings = load_settings(
        env=env,
        overrides={
            "backend": backend,
            "host": host,
            "http_port": http_port,
            "smtp_port": smtp_port,
            "grace": grace,
            "log_level": log_level,
        },
    )
    configure(settings.log_level, json_lines=log_json)
    with stop_on_signals(app_target):
        app = load_app(app_target)
        app.use_settings(settings)
        http = None if (no_http or workers_only) else settings.http_port
        smtp = None if (no_smtp or workers_only) else settings.smtp_port
        if as_lambda:
            from framework.cli.local_lambda import serve_lambda

            run_once(
                lambda: serve_lambda(
                    app,
                    backend_url=settings.backend_for(app.name),
                    host=settings.host,
                    http_port=http,
                )
            )
            return
        if processes is not None:
            _supervise(app, processes, settings.backend_for(app.name), settings, http, smtp)
            return
        http_sock, smtp_sock = _inherited_sockets(inherit_sockets)
        if http_sock is not None:
            http = http_sock.getsockname()[1]
        if smtp_sock is not None:
            smtp = smtp_sock.getsockname()[1]

        async def work() -> None:
            await serve(
                app,
                backend_url=settings.backend_for(app.name),
                host=settings.host,
                http_port=http,
                smtp_port=smtp,
                declare=not no_declare,
                grace=settings.grace,
                read_timeout=read_timeout or DEFAULT_READ_TIMEOUT,
                http_sock=http_sock,
                smtp_sock=smtp_sock,
            )

        run_once(work)


def _supervise(
    app: App,
    processes: str,
    backend_url: str,
    settings: Settings,
    http: int | None,
    smtp: int | None,
) -> None:
    """``run --processes``: bind the ports once, then run and replace the children."""
    from framework.cli.processes import check_backend, child_command, parse_processes, supervise
    from framework.cli.run import bind_socket

    count = parse_processes(processes)
    check_backend(backend_url)
    sockets: list[socket.socket] = []
    fds = ["-", "-"]
    try:
        if http is not None:
            sockets.append(bind_socket(settings.host, http))
            fds[0] = str(sockets[-1].fileno())
        if smtp is not None and app.registry.email_rules:
            sockets.append(bind_socket(settings.host, smtp))
            fds[1] = str(sockets[-1].fileno())
        for sock in sockets:
            sock.set_inheritable(True)
        supervise(child_command(sys.argv[1:], ":".join(fds)), count, sockets, grace=settings.grace)
    finally:
        for sock in sockets:
            sock.close()


def _inherited_sockets(value: str | None) -> tuple[socket.socket | None, socket.socket | None]:
    """The sockets a ``--processes`` supervisor passed down (``HTTP_FD:SMTP_FD``, ``-``: none)."""
    from framework.cli.processes import TakingTurns

    if value is None:
        return None, None
    found = [None if part == "-" else TakingTurns(fileno=int(part)) for part in value.split(":")]
    return found[0], found[1]


def _ops_options(command: F) -> F:
    options = [
        click.option("--server", help="A running `framework run`, e.g. http://127.0.0.1:8000."),
        click.option(
            "--backend",
            help="Talk straight to the backend: sqlite:///PATH, amqp://..., aws://REGION.",
        ),
        click.option("--env", "env", help="Profile from [tool.framework.env.NAME]."),
        click.option("--token", envvar="FRAMEWORK_ADMIN_TOKEN", help="The admin API's token."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _ops(
    server: str | None,
    backend: str | None,
    env: str | None,
    token: str | None,
    app_name: str | None = None,
) -> Ops:
    """Choose where the queues are: an explicit flag, then the profile and environment."""
    if server:
        return ServerOps(server, token)
    settings = load_settings(env=env, overrides={"backend": backend})
    if backend or not settings.backend.startswith("memory:"):
        return BackendOps(settings.backend_for(app_name))
    return ServerOps(settings.server or LOCAL_SERVER, token)


def _run_ops(ops: Ops, work: Callable[[], Awaitable[T]]) -> T:
    """Run a command's ``work`` on ``ops``: a server's admin calls share one HTTP client."""

    async def run() -> T:
        if not isinstance(ops, ServerOps):
            return await work()
        async with ops:
            return await work()

    return run_once(run)


def _attributes(pairs: tuple[str, ...]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--attribute")
        parsed = parse_body(value, what=f"attribute {key!r}")
        attributes[key] = parsed if isinstance(parsed, int | float | bool) else value
    return attributes


@cli.command()
@click.argument("app_target", metavar="[APP]", required=False)
@click.option(
    "--queue", "names", multiple=True, metavar="NAME", help="Only this queue (repeatable)."
)
@_ops_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def queues(
    app_target: str | None,
    names: tuple[str, ...],
    server: str | None,
    backend: str | None,
    env: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """List queues: depth, in flight, delayed and dead letters.

    With APP (module:attribute), its declared queues; with --queue, those. A RabbitMQ broker
    cannot list its queues over AMQP, so name them one of these ways there.
    """
    app = load_app(app_target) if app_target else None
    ops = _ops(server, backend, env, token, app.name if app is not None else None)
    chosen = [*(app.registry.queues if app is not None else ()), *names]
    rows = _run_ops(ops, lambda: ops.queues(chosen))
    if not rows and not chosen:
        click.echo(
            "no queues known here (a RabbitMQ broker cannot list its queues over AMQP: "
            "pass the APP or --queue NAME)",
            err=True,
        )
    if as_json:
        click.echo(json.dumps({"queues": rows}, indent=2))
        return
    headers = ("QUEUE", "DEPTH", "IN FLIGHT", "DELAYED", "DEAD LETTERS")
    table = [(r["name"], r["depth"], r["in_flight"], r["delayed"], r["dead_letters"]) for r in rows]
    width = max([len(headers[0])] + [len(str(r[0])) for r in table])
    click.echo(f"{headers[0]:<{width}}  " + "  ".join(f"{h:>12}" for h in headers[1:]))
    for row in table:
        click.echo(f"{row[0]:<{width}}  " + "  ".join(f"{v:>12}" for v in row[1:]))


@cli.command()
@click.argument("dlq")
@click.option("--to", help="Send every message here instead of its source queue.")
@click.option("--limit", type=click.IntRange(min=1), help="Move at most N messages.")
@_ops_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def redrive(
    dlq: str,
    to: str | None,
    limit: int | None,
    server: str | None,
    backend: str | None,
    env: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Move dead letters from DLQ back to their source queue, oldest first."""
    check_redrive_target(dlq, to)  # before connecting anywhere
    ops = _ops(server, backend, env, token)
    interactive = sys.stderr.isatty()
    shown = 0

    def progress(count: int, total: int) -> None:
        # Every 100 messages and the last: one line each, or one line redrawn on a terminal.
        nonlocal shown
        if count - shown >= 100 or count == total:
            shown = count
            line = f"moved {count}/{total}"
            if interactive:
                click.echo("\r" + line, err=True, nl=False)
            else:
                click.echo(line, err=True)

    moved = _run_ops(ops, lambda: ops.redrive(dlq, to, limit, progress))
    if interactive and shown:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps({"moved": moved}))
    else:
        click.echo(f"moved {moved} message{'s' if moved != 1 else ''} from {dlq}")


def _producer_options(command: F) -> F:
    options = [
        click.option(
            "--attribute",
            "attribute",
            multiple=True,
            metavar="KEY=VALUE",
            help="A message attribute (repeatable).",
        ),
        click.option("--group-id", help="FIFO message group."),
        click.option("--deduplication-id", help="FIFO deduplication id."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command()
@click.argument("queue")
@click.argument("bodies", metavar="[BODY]...", nargs=-1)
@click.option(
    "--file",
    "body_file",
    type=click.File("r", encoding="utf-8"),
    help="Also send one body per non-empty line of this file (- reads stdin).",
)
@_producer_options
@click.option("--delay", type=click.FloatRange(0, 900), default=0, help="Seconds before visible.")
@_ops_options
@one_line_errors
def send(
    queue: str, bodies: tuple[str, ...], body_file: TextIO | None, delay: float, **options: Any
) -> None:
    """Send each BODY (JSON, or text; a lone - reads stdin) to QUEUE; print each id.

    Several bodies, or --file, go as one batch with the same options: every body is checked
    before any is sent.
    """
    texts = list(bodies)
    if body_file is not None:
        texts += [line for line in body_file.read().splitlines() if line.strip()]
    elif texts == ["-"]:
        texts = [sys.stdin.read()]
    if not texts:
        raise click.UsageError("give a BODY, several, or --file FILE")
    if len(texts) == 1 and body_file is None:
        _produce("send", queue, texts[0], {"delay": delay}, **options)
        return
    where = [options.pop(key) for key in ("server", "backend", "env", "token")]
    ops = _ops(*where)
    produced = _options(delay=delay, **options)
    parsed = [parse_body(text) for text in texts]
    for message_id in _run_ops(ops, lambda: ops.send_batch(queue, parsed, produced)):
        click.echo(message_id)


@cli.command()
@click.argument("topic")
@click.argument("body")
@_producer_options
@_ops_options
@one_line_errors
def publish(topic: str, body: str, **options: Any) -> None:
    """Publish BODY (JSON, or text; - reads stdin) to TOPIC."""
    _produce("publish", topic, body, {}, **options)


def _produce(
    verb: str,
    target: str,
    body: str,
    extra: dict[str, Any],
    *,
    attribute: tuple[str, ...],
    group_id: str | None,
    deduplication_id: str | None,
    server: str | None,
    backend: str | None,
    env: str | None,
    token: str | None,
) -> None:
    """Send or publish one message and print its id: the shared body of both commands."""
    ops = _ops(server, backend, env, token)
    options = _options(
        attribute=attribute, group_id=group_id, deduplication_id=deduplication_id, **extra
    )
    text = sys.stdin.read() if body == "-" else body
    produce = ops.send if verb == "send" else ops.publish
    message_id = _run_ops(ops, lambda: produce(target, parse_body(text), options))
    click.echo(message_id)


def _options(
    *, attribute: tuple[str, ...], group_id: str | None, deduplication_id: str | None, **extra: Any
) -> dict[str, Any]:
    """The producer options of the command line, as ``send``/``publish`` take them."""
    return {
        "attributes": _attributes(attribute),
        "group_id": group_id,
        "deduplication_id": deduplication_id,
        **extra,
    }


@cli.command()
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_ops_options
@one_line_errors
def purge(
    queue: str,
    yes: bool,
    server: str | None,
    backend: str | None,
    env: str | None,
    token: str | None,
) -> None:
    """Delete every message in QUEUE."""
    if not yes and not click.confirm(f"delete every message in {queue}?", err=True):
        click.echo("nothing purged", err=True)
        sys.exit(1)
    ops = _ops(server, backend, env, token)
    count = _run_ops(ops, lambda: ops.purge(queue))
    click.echo(f"purged {count} message{'s' if count != 1 else ''} from {queue}")


@cli.command()
@click.argument("app_target", metavar="[APP]", required=False)
@_ops_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def routes(
    app_target: str | None,
    server: str | None,
    backend: str | None,
    env: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """List the HTTP and WebSocket routes of APP (module:attribute), or of the app at --server."""
    if app_target is not None:
        listing = routes_of(load_app(app_target))
    else:
        # Routes belong to a running app, not to a backend's file: without --backend, ask the
        # local `framework run` (or the configured server), as before the SQLite default.
        settings = load_settings(env=env, overrides={"backend": backend})
        ops = (
            _ops(server, backend, env, token)
            if server or backend
            else ServerOps(settings.server or LOCAL_SERVER, token)
        )
        listing = _run_ops(ops, ops.routes)
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    lines = [
        (",".join(row["methods"]), row["path"], row["handler"], row.get("auth"))
        for row in listing["routes"]
    ]
    lines += [
        ("WS", f"{row['path']} {row['route']}", row["handler"], row.get("auth"))
        for row in listing["websocket_routes"]
    ]
    for methods, path, handler, auth in lines:
        guard = f"  auth={auth}" if auth else ""
        click.echo(f"{methods:<12} {path:<40} {handler}{guard}")


cli.add_command(provision)
cli.add_command(export)
cli.add_command(package)


def main() -> None:
    """Entry point of the ``framework`` console script."""
    cli(prog_name="framework")

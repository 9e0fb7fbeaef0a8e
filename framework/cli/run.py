"""``framework run``: the gateway, the SMTP receiver's place, and the workers in one task group."""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import anyio
import uvicorn

from framework.backends import from_url
from framework.cli.http11 import DEFAULT_READ_TIMEOUT
from framework.cli.httpserver import protocol_class
from framework.cli.wsprotocol import WebSocketProtocol
from framework.exceptions import ConfigError
from framework.gateway.admin_access import is_loopback_host
from framework.gateway.origins import any_origin_warnings
from framework.logs import event
from framework.runtime import Runtime
from framework.smtp.receiver import Receiver

if TYPE_CHECKING:
    from framework.app import App
    from framework.backends.base import Backend

__all__ = ["bind_socket", "serve", "stop_on_signals"]

log = logging.getLogger("framework.run")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _StopRequested(BaseException):
    """SIGTERM or SIGINT before ``serve`` took over the signals (while importing the app)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals(app_name: str = "") -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a clean stop (logged, exit status 0) from this instant.

    ``framework run`` enters this before it imports the app, so a signal while the app is
    imported or validated stops the process as one at any later moment would, instead of
    killing it with the signal; ``serve`` installs its own handlers on the event loop.
    """

    def stop(signum: int, frame: object) -> None:
        raise _StopRequested(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except _StopRequested as exc:
        event(log, logging.INFO, "app.stopping", signal=signal.Signals(exc.signum).name)
        event(log, logging.INFO, "app.stopped", app=app_name)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a TCP socket now, so a taken port is a clear error before anything starts.

    The socket is bound but not listening: a client connecting before ``serve`` calls
    ``listen`` is refused at once rather than left waiting on a process that may never be
    ready. Accepted connections get ``TCP_NODELAY``: asyncio sets it only on sockets whose
    protocol is ``IPPROTO_TCP`` (not 0, what ``socket.socket(family, SOCK_STREAM)`` gives),
    and without it a response written in two parts waits ~40 ms for the client's delayed ACK.

    Raises:
        ConfigError: If the port is taken or the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by every accepted socket on Linux; asyncio sets it again per connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is taken: stop what uses it or pass --http-port"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


async def serve(
    app: App,
    *,
    backend_url: str,
    host: str = "127.0.0.1",
    http_port: int | None = 8000,
    smtp_port: int | None = 8025,
    workers: bool = True,
    declare: bool = True,
    grace: float = 30.0,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    http_sock: socket.socket | None = None,
    smtp_sock: socket.socket | None = None,
) -> None:
    """Run ``app`` until SIGTERM or SIGINT, then stop gracefully.

    On a signal: the gateway stops accepting connections and finishes its requests, the
    workers stop receiving, handlers in flight get ``grace`` seconds to finish, and the
    messages of any still running are released for redelivery.

    Args:
        app: The app.
        backend_url: Where queues and topics live.
        host: The gateway's address.
        http_port: The gateway's port, or None for no gateway.
        smtp_port: The SMTP receiver's port, or None for none. It runs only when the app
            has ``@on_email`` handlers.
        workers: Run the queue, topic and mail workers.
        declare: Create missing queues, topics and subscriptions on start; with False,
            check that they exist and refuse to start, listing them, if not.
        grace: Seconds handlers in flight get to finish on shutdown.
        read_timeout: Seconds an HTTP client gets to send a whole request, head and body,
            from connecting or from the request's first byte; a slower one gets 408 and
            its connection is closed.
        http_sock: A socket bound already (``framework run --processes``: the supervisor's,
            shared by every process), used instead of binding ``http_port``.
        smtp_sock: The same for the SMTP receiver.

    Raises:
        ConfigError: For a taken port, an unusable address or a read timeout that is not
            positive; DeclarationError for routes the gateway cannot serve.
    """
    if not read_timeout > 0:
        raise ConfigError(f"read_timeout={read_timeout!r} must be a positive number of seconds")
    scheme = backend_url.partition("://")[0]
    # Signals are caught from the first instant, before anything is bound or started: a
    # SIGTERM at any point (importing done, connecting, declaring, the port just opened)
    # stops the app and exits 0 instead of killing the process with signal 15.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # Everything that can be refused is checked before a port opens: the backend URL,
        # the routes and their options (building the gateway), the port being free.
        backend = from_url(backend_url)
        server: _Server | None = None
        sock: socket.socket | None = None
        if http_port is not None:
            config = uvicorn.Config(
                app.asgi,
                log_config=None,
                lifespan="off",
                access_log=False,
                # The gateway alone decides whom to believe about the client's address
                # (App(trusted_proxies=...)); uvicorn's default trusts X-Forwarded-For from
                # loopback.
                proxy_headers=False,
                timeout_graceful_shutdown=max(1, round(grace)),
                http=protocol_class(read_timeout),
                ws=WebSocketProtocol,
                # Frames over the largest WebSocket message allowed close with 1009 before
                # they are buffered.
                ws_max_size=max(
                    (api.max_message_size for api in app.registry.websocket_apis.values()),
                    default=16_777_216,
                ),
            )
            config.load()
            server = _Server(config)
            sock = http_sock if http_sock is not None else bind_socket(host, http_port)
            # The port bound, which the start lines show: the one the OS chose for port 0.
            http_port = int(sock.getsockname()[1])
            _warn_about_admin(app, host, http_port)
            for path, detail in any_origin_warnings(app.registry).items():
                event(log, logging.WARNING, "websocket.any_origin", api=path, detail=detail)
        try:
            await _run(
                app,
                backend,
                signals,
                server,
                sock,
                host,
                http_port,
                smtp_port,
                scheme=scheme,
                workers=workers,
                declare=declare,
                grace=grace,
                smtp_sock=smtp_sock,
            )
        finally:
            if sock is not None:
                sock.close()
    event(log, logging.INFO, "app.stopped", app=app.name)


async def _run(
    app: App,
    backend: Backend,
    signals: AsyncIterator[int],
    server: _Server | None,
    sock: socket.socket | None,
    host: str,
    http_port: int | None,
    smtp_port: int | None,
    *,
    scheme: str,
    workers: bool,
    declare: bool,
    grace: float,
    smtp_sock: socket.socket | None = None,
) -> None:
    """Start the runtime, then open the ports, then serve until a signal comes."""
    async with anyio.create_task_group() as outer:
        stop = anyio.Event()
        started = False
        failure: Exception | None = None

        async def watch() -> None:
            async for signum in signals:
                event(log, logging.INFO, "app.stopping", signal=signal.Signals(signum).name)
                break
            stop.set()
            if not started:
                outer.cancel_scope.cancel()

        outer.start_soon(watch)
        try:
            async with app.run(backend, workers=workers, declare=declare, grace=grace) as runtime:
                started = True
                # Only now, with the app running, do the ports accept connections: a
                # readiness probe that connects finds an app that can answer.
                receiver = await _start_receiver(app, runtime, host, smtp_port, smtp_sock)
                if sock is not None:
                    sock.listen(2048)
                event(
                    log,
                    logging.INFO,
                    "app.started",
                    app=app.name,
                    backend=f"{scheme}://",
                    http=f"http://{host}:{http_port}" if sock else None,
                    smtp=f"{host}:{receiver.port}" if receiver else None,
                    consumers=len(runtime.workers),
                    routes=len(app.registry.routes),
                )
                async with anyio.create_task_group() as tg:
                    if server is not None and sock is not None:
                        tg.start_soon(server.serve, [sock])
                    await stop.wait()
                    # WebSockets close with 1001 after their handlers, before uvicorn's
                    # shutdown would drop them with 1012.
                    await runtime.close_connections()
                    if server is not None:
                        server.should_exit = True
                    if receiver is not None:
                        await receiver.stop()
                # Leaving the runtime stops the workers within the grace period.
        except Exception as exc:  # raised as itself, not inside an ExceptionGroup
            failure = exc
        outer.cancel_scope.cancel()  # the watcher, when no signal came
    if failure is not None:
        raise failure


def _warn_about_admin(app: App, host: str, port: int) -> None:
    """Say at start how open the admin API is when it has no token (docs: the security page)."""
    if app.admin_token:
        return
    if is_loopback_host(host):
        event(
            log,
            logging.WARNING,
            "admin.no_token",
            detail=f"the admin API under http://{host}:{port}/_framework/ has no token: any "
            "local process can purge, delete and redrive; set FRAMEWORK_ADMIN_TOKEN to require one",
        )
        return
    event(
        log,
        logging.WARNING,
        "admin.loopback_only",
        detail=f"listening on {host} but the admin API has no token, so it answers only "
        "requests to and from loopback addresses (403 for the others); set "
        "FRAMEWORK_ADMIN_TOKEN to operate the app from elsewhere",
    )


async def _start_receiver(
    app: App, runtime: Runtime, host: str, port: int | None, sock: socket.socket | None = None
) -> Receiver | None:
    """Start the SMTP receiver when there is a port and the app has ``@on_email`` handlers."""
    if port is None or not app.registry.email_rules:
        return None
    receiver = Receiver(
        app.registry,
        runtime.backend,
        app.smtp,
        host=host,
        port=port,
        scan_observers=app.events.scan_observers,
        sock=sock,
    )
    try:
        await receiver.start()
    except OSError as exc:
        raise ConfigError(
            f"cannot receive mail on {host}:{port}: {exc.strerror or exc}; "
            "pass --smtp-port or --no-smtp"
        ) from None
    return receiver

"""``framework run``: the gateway, the SMTP receiver's place, and the workers in one task group."""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio
import uvicorn

from framework.backends import from_url
from framework.exceptions import ConfigError
from framework.logs import event
from framework.runtime import Runtime
from framework.smtp.receiver import Receiver

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["bind_socket", "serve"]

log = logging.getLogger("framework.run")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket now, so a taken port is a clear error before anything starts.

    Raises:
        ConfigError: If the port is taken or the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is taken: stop what uses it or pass --http-port"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
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
    """
    backend = from_url(backend_url)
    sock = bind_socket(host, http_port) if http_port is not None else None
    server: _Server | None = None
    if sock is not None:
        config = uvicorn.Config(
            app.asgi,
            log_config=None,
            lifespan="off",
            access_log=False,
            # The gateway alone decides whom to believe about the client's address
            # (App(trusted_proxies=...)); uvicorn's default trusts X-Forwarded-For from loopback.
            proxy_headers=False,
            timeout_graceful_shutdown=max(1, round(grace)),
            # Frames over the largest WebSocket message allowed close with 1009 before buffering.
            ws_max_size=max(
                (api.max_message_size for api in app.registry.websocket_apis.values()),
                default=16_777_216,
            ),
        )
        server = _Server(config)
    scheme = backend_url.partition("://")[0]
    try:
        # Signals are caught from before the start: a SIGTERM while the app is still starting
        # (connecting, declaring) cancels the start and exits 0 instead of killing the process.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
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
                    async with app.run(
                        backend, workers=workers, declare=declare, grace=grace
                    ) as runtime:
                        started = True
                        receiver = await _start_receiver(app, runtime, host, smtp_port)
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
    finally:
        if sock is not None:
            sock.close()
    event(log, logging.INFO, "app.stopped", app=app.name)


async def _start_receiver(
    app: App, runtime: Runtime, host: str, port: int | None
) -> Receiver | None:
    """Start the SMTP receiver when there is a port and the app has ``@on_email`` handlers."""
    if port is None or not app.registry.email_rules:
        return None
    receiver = Receiver(app.registry, runtime.backend, app.smtp, host=host, port=port)
    try:
        await receiver.start()
    except OSError as exc:
        raise ConfigError(
            f"cannot receive mail on {host}:{port}: {exc.strerror or exc}; "
            "pass --smtp-port or --no-smtp"
        ) from None
    return receiver

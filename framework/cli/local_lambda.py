"""``framework run APP --lambda``: the app as Lambda runs it, with an HTTP front door."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio
import uvicorn

from framework.aws.emulator import LocalLambda
from framework.cli.run import bind_socket
from framework.logs import event

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["serve_lambda"]

log = logging.getLogger("framework.run")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve_lambda`` owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_lambda(
    app: App, *, backend_url: str, host: str = "127.0.0.1", http_port: int | None = 8000
) -> None:
    """Run ``app`` under local event source mappings (and an HTTP and WebSocket front door)
    until a signal.

    Args:
        app: The app.
        backend_url: An ``aws://`` URL (an emulator's ``endpoint_url`` for local runs).
        host: The front door's address.
        http_port: Its port, or None for no front door.
    """
    sock = bind_socket(host, http_port) if http_port is not None else None
    public_url = None
    if sock is not None:
        bound_host, bound_port = sock.getsockname()[:2]
        public_url = f"http://{bound_host}:{bound_port}"
    local = LocalLambda(app, backend_url, public_url=public_url)
    server: _Server | None = None
    if sock is not None:
        config = uvicorn.Config(
            local.front_door, interface="asgi3", log_config=None, lifespan="off", access_log=False
        )
        server = _Server(config)
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with local, anyio.create_task_group() as tg:
                event(
                    log,
                    logging.INFO,
                    "lambda.local.serving",
                    app=app.name,
                    http=public_url,
                    mappings=len(app.registry.consumers),
                )
                if server is not None and sock is not None:
                    tg.start_soon(server.serve, [sock])
                async for signum in signals:
                    event(log, logging.INFO, "app.stopping", signal=signal.Signals(signum).name)
                    break
                if server is not None:
                    server.should_exit = True
    finally:
        if sock is not None:
            sock.close()
    event(log, logging.INFO, "app.stopped", app=app.name)

"""``lambda_handler(app)``: the app as one AWS Lambda function, for every trigger it has.

Lambda's Python runtime imports the user's module once per execution environment and then
calls ``MODULE.handler(event, context)`` for each invocation, one at a time. The first call
(the cold start) opens an event loop, connects the backend and builds the gateway; every later
call runs on that loop with those connections, so an invocation pays for its own work only.
Lambda freezes the environment between invocations: nothing runs in the background then.

On Lambda the template (``framework export sam``) has declared every queue, topic,
subscription and mail rule, so the runtime declares nothing and checks nothing on start: each
resource is looked up on first use (the function's role needs no list or describe rights).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from framework.aws.batch import BatchSettlement, run_batch
from framework.aws.event_shapes import (
    EventKind,
    UnknownEventError,
    delivery_of,
    kind_of,
    queue_name_of_arn,
)
from framework.aws.http import respond
from framework.aws.socket_events import LambdaSockets
from framework.aws.telemetry import (
    InvocationMetrics,
    invocation,
    log_invocation,
    tag_framework_logs,
)
from framework.backends import from_url
from framework.backends.aws.management import ManagementAPI
from framework.backends.aws.notifications import unwrap_mail
from framework.backends.aws.settings import AWSSettings
from framework.backends.base import Backend
from framework.exceptions import ConfigError, UnknownQueueError
from framework.logs import event
from framework.messages import Delivery
from framework.registry import ConsumerSpec, WebSocketAPISpec
from framework.runtime import Runtime
from framework.runtime.dispatch import Dispatcher

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["LambdaHandler", "lambda_handler"]

log = logging.getLogger("framework.aws")

# Of the time an invocation has left, this much (at most half of it) is kept back from the
# handlers, so that after a deadline the verdicts still reach SQS before Lambda stops the
# function: ChangeMessageVisibility and SendMessage take milliseconds, not a second.
SETTLE_MARGIN = 1.0


class _DeclaredByTheTemplate(Runtime):
    """The runtime on ``aws://``: the stack declared the resources, so start declares nothing.

    On another backend (``FRAMEWORK_BACKEND=memory://`` in a test, a local run) nothing else
    declares them, so it declares them as ``framework run`` does.
    """

    async def declare(self, progress: Callable[[str], None] | None = None) -> None:
        """On ``aws://``, declare and check nothing: each resource is looked up when used."""
        if type(self.backend).__module__.startswith("framework.backends.aws"):
            return
        await super().declare(progress)


def _backend_url(given: str | None = None) -> str:
    url = given or os.environ.get("FRAMEWORK_BACKEND")
    if url:
        return url
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError(
            "the Lambda handler needs the function's region: AWS_REGION is not set (Lambda "
            "sets it); set FRAMEWORK_BACKEND=aws://REGION to run it elsewhere"
        )
    return f"aws://{region}"


def _remaining(context: Any) -> float:
    """Seconds the invocation has left, or infinity without a Lambda context."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return math.inf
    return max(0.0, float(remaining()) / 1000.0)


class LambdaHandler:
    """The Lambda function of ``app``: call it with ``(event, context)``, as Lambda does.

    Build it with ``lambda_handler(app)``. See SPEC section 8 and docs/operations/serverless.md.

    Args:
        app: The app whose routes and handlers serve the function's triggers.
        backend: The backend URL (default: ``FRAMEWORK_BACKEND``, else ``aws://`` in the
            function's region).
        websocket_endpoints: The connection URL of the app's WebSocket APIs (one for all, or
            one per path); default: ``FRAMEWORK_WEBSOCKET_ENDPOINTS``, else the event's.
    """

    def __init__(
        self,
        app: App,
        *,
        backend: str | None = None,
        websocket_endpoints: str | Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.backend_url = backend
        self.websocket_endpoints = websocket_endpoints
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runtime: Runtime | None = None
        self.backend: Backend | None = None
        self.invocations = 0
        self._settlement: BatchSettlement | None = None
        self._dispatchers: dict[str, Dispatcher] = {}
        self._by_physical: dict[str, ConsumerSpec] = {}
        self._names: dict[str, str] = {}
        self._metrics: InvocationMetrics | None = None
        self._host: asyncio.Task[None] | None = None
        self._release: asyncio.Event | None = None
        self._sockets: LambdaSockets | None = None
        self.management: ManagementAPI | None = None

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Serve one invocation; return the answer its trigger expects.

        Raises:
            UnknownEventError: For an event that is not API Gateway's (REST, HTTP or
                WebSocket) or an SQS batch, or a WebSocket event for an app without one.
        """
        started = time.perf_counter()
        cold = self.runtime is None
        kind: EventKind | str = "unknown"
        with invocation(context):
            try:
                kind = kind_of(event)
                if kind.startswith("websocket") and not self.app.registry.websocket_apis:
                    raise UnknownEventError(
                        f"got a WebSocket API event "
                        f"({event['requestContext'].get('eventType')}): app {self.app.name!r} "
                        "declares no WebSocket API (@app.websocket) for the Lambda handler to "
                        "serve"
                    )
                if cold:
                    self._start()
                assert self.loop is not None
                return self.loop.run_until_complete(self._invoke(kind, event, context))
            finally:
                self.invocations += 1
                seconds = time.perf_counter() - started
                log_invocation(self.app.name, kind, cold, seconds, self._metrics)

    def close(self) -> None:
        """Stop the runtime and close the loop (Lambda never does; local runs and tests do)."""
        loop, runtime = self.loop, self.runtime
        self.runtime = self.backend = None
        self._dispatchers.clear()
        if loop is None:
            return
        management, self.management, self._sockets = self.management, None, None
        try:
            if management is not None:
                loop.run_until_complete(management.aclose())
            if runtime is not None and self._release is not None:
                # The host task leaves the runtime in the task that entered it.
                self._release.set()
                assert self._host is not None
                loop.run_until_complete(self._host)
        finally:
            self._release = self._host = None
            loop.close()
            self.loop = None

    # --- start -----------------------------------------------------------------------------

    def _start(self) -> None:
        """The cold start: logs, a loop, the backend and runtime, the gateway, the consumers."""
        tag_framework_logs()
        loop = self.loop or asyncio.new_event_loop()
        self.loop = loop
        url = _backend_url(self.backend_url)
        backend = from_url(url)
        registry = self.app.registry
        if registry.websocket_apis:
            self.management = _management(url, registry.websocket_apis, self.websocket_endpoints)
        runtime = _DeclaredByTheTemplate(
            registry,
            backend,
            events=self.app.events,
            app=self.app,
            workers=False,
            connections=self.management,
        )
        # The runtime is entered and left in one task (its task groups require it) that lives
        # as long as the execution environment: it starts it, then waits for ``close``. Lambda
        # freezes the loop between invocations, and the host task with it.
        started: asyncio.Future[None] = loop.create_future()
        release = self._release = asyncio.Event()

        async def host() -> None:
            try:
                async with runtime:
                    started.set_result(None)
                    await release.wait()
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                    return
                raise

        self._host = loop.create_task(host(), name="framework.lambda.runtime")
        loop.run_until_complete(started)
        self.backend, self.runtime = backend, runtime
        self._settlement = BatchSettlement(backend, registry.queues)
        from framework.backends.aws.settings import physical_name

        self._by_physical = {physical_name(name): c for name, c in registry.consumers.items()}
        self._names = {physical_name(name): name for name in registry.queues}
        gateway = self.app.gateway()  # built now: the first request pays nothing more for it
        if self.management is not None:
            self._sockets = LambdaSockets(
                gateway.sockets,
                self.management,
                path=os.environ.get("FRAMEWORK_WEBSOCKET_PATH") or None,
                region=self.management.settings.region,
            )
        metrics = getattr(gateway, "metrics", None)
        if metrics is not None:
            self._metrics = InvocationMetrics.of(metrics.registry)
        event(
            log,
            logging.INFO,
            "lambda.started",
            app=self.app.name,
            backend=_backend_url(self.backend_url).partition("://")[0] + "://",
            consumers=len(registry.consumers),
            routes=len(registry.routes),
            websocket_apis=len(registry.websocket_apis),
        )

    # --- one invocation --------------------------------------------------------------------

    async def _invoke(
        self, kind: EventKind, event_: Mapping[str, Any], context: Any
    ) -> dict[str, Any]:
        if kind == "http-v1":
            return await respond(self.app.asgi, event_, "1.0")
        if kind == "http-v2":
            return await respond(self.app.asgi, event_, "2.0")
        if kind == "websocket" or kind == "websocket-authorizer":
            assert self._sockets is not None
            if kind == "websocket":
                return await self._sockets.serve(event_)
            return await self._sockets.authorize(event_)
        return await self._batch(event_, context)

    def _consumer(self, arn: str) -> ConsumerSpec:
        physical = queue_name_of_arn(arn)
        consumer = self._by_physical.get(physical)
        if consumer is None:
            handled = ", ".join(sorted(c.queue.name for c in self._by_physical.values()))
            raise UnknownQueueError(
                f"an SQS batch from {arn!r}, but no handler of app {self.app.name!r} reads "
                f"queue {physical!r} (handled: {handled or 'none'}); map only the app's own "
                "queues to this function"
            )
        return consumer

    def _dispatcher(self, consumer: ConsumerSpec) -> Dispatcher:
        dispatcher = self._dispatchers.get(consumer.queue.name)
        if dispatcher is None:
            assert self._settlement is not None
            dispatcher = Dispatcher(
                self._settlement,  # type: ignore[arg-type]  # it has the primitives dispatch calls
                consumer,
                self.app.events,
                self.app,
            )
            self._dispatchers[consumer.queue.name] = dispatcher
        return dispatcher

    async def _batch(self, event_: Mapping[str, Any], context: Any) -> dict[str, Any]:
        assert self.backend is not None
        assert self._settlement is not None
        records: list[Mapping[str, Any]] = list(event_["Records"])
        by_queue: dict[str, list[Mapping[str, Any]]] = {}
        for record in records:
            by_queue.setdefault(str(record.get("eventSourceARN", "")), []).append(record)
        now = datetime.now(UTC)
        failures: list[dict[str, str]] = []
        clock = self.backend.clock
        remaining = _remaining(context)
        budget = remaining - min(SETTLE_MARGIN, remaining / 2)
        for arn, group in by_queue.items():
            consumer = self._consumer(arn)
            queue = consumer.queue
            dispatcher = self._dispatcher(consumer)
            latest = clock.now() + budget
            deadline = min(clock.now() + queue.visibility_timeout, latest)
            record_ids: dict[str, str] = {}
            deliveries: list[Delivery] = []
            for record in group:
                delivery = delivery_of(
                    queue.name,
                    record,
                    now=now,
                    unwrap=consumer.kind == "topic",
                    names=self._names,
                )
                if queue.carries_mail:  # SES's notification, as the AWS backend hands it over
                    delivery = unwrap_mail(delivery)
                record_ids[delivery.receipt] = str(record.get("messageId", ""))
                deliveries.append(delivery)
                if remaining != math.inf:  # Lambda deletes it after the invocation's end
                    self._settlement.held_until[delivery.receipt] = latest + (remaining - budget)

            try:
                failed = await run_batch(
                    deliveries,
                    functools.partial(dispatcher.run_until, deadline=deadline, latest=latest),
                    self._settlement,
                    fifo=queue.fifo,
                    concurrency=queue.concurrency,
                )
            finally:
                for delivery in deliveries:
                    self._settlement.settled.pop(delivery.receipt, None)
                    self._settlement.held_until.pop(delivery.receipt, None)
            failures += [{"itemIdentifier": record_ids[d.receipt]} for d in failed]
        return {"batchItemFailures": failures}


def _management(
    url: str,
    apis: Mapping[str, WebSocketAPISpec],
    given: str | Mapping[str, str] | None = None,
) -> ManagementAPI:
    """``app.connections`` on Lambda: the management API of the app's WebSocket APIs.

    ``FRAMEWORK_WEBSOCKET_ENDPOINTS`` gives each API's connection URL, as a JSON object by
    path (``{"/ws": "https://ID.execute-api.REGION.amazonaws.com/STAGE"}``) or one URL for
    all; without it, the URL comes from the WebSocket event being served. On an emulator
    (``aws://...?endpoint_url=``) the emulator's endpoint is used.
    """
    settings = (
        AWSSettings.from_url(url)
        if url.startswith("aws:")
        else AWSSettings.from_url(f"aws://{os.environ.get('AWS_REGION') or 'us-east-1'}")
    )
    sizes = {path: api.max_message_size for path, api in apis.items()}
    if isinstance(given, Mapping):
        return ManagementAPI(settings, dict(given), sizes=sizes)
    raw = (given or os.environ.get("FRAMEWORK_WEBSOCKET_ENDPOINTS", "")).strip()
    if not raw.startswith("{"):
        return ManagementAPI(settings, dict.fromkeys(apis, raw) if raw else {}, sizes=sizes)
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"FRAMEWORK_WEBSOCKET_ENDPOINTS is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ConfigError("FRAMEWORK_WEBSOCKET_ENDPOINTS must map API paths to URLs")
    return ManagementAPI(settings, {str(k): str(v) for k, v in parsed.items()}, sizes=sizes)


def lambda_handler(app: App, *, backend: str | None = None) -> LambdaHandler:
    """Return the Lambda function of ``app``: ``handler = lambda_handler(app)`` in its module.

    The function serves API Gateway REST (payload 1.0) and HTTP API or function URL (payload
    2.0) events through the app's gateway, and SQS batches (standard and FIFO) of its queue,
    topic and mail handlers with ``batchItemFailures`` as the answer. The runtime starts on the
    first invocation and is kept for the execution environment's life; the backend is
    ``aws://`` in the function's region (``AWS_REGION``) unless ``FRAMEWORK_BACKEND`` names
    another.

    Args:
        app: The app.
        backend: The backend URL, for runs off Lambda (default: ``FRAMEWORK_BACKEND``, else
            ``aws://`` in ``AWS_REGION``).

    Returns:
        A plain callable ``handler(event, context)``.
    """
    return LambdaHandler(app, backend=backend)

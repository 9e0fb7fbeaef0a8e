"""Local Lambda: the app run the way Lambda runs it, against SQS (or an emulator such as moto).

``LocalLambda`` does Lambda's part around ``lambda_handler``:

- **event source mappings**: one poller per queue handler receives batches of up to
  ``batch_size`` with ``ReceiveMessage`` (all system and message attributes), invokes the
  handler with the event in Lambda's shape (``sqs_event``), then deletes every record the
  answer does not list in ``batchItemFailures``, and leaves the listed ones for their
  visibility timeout or the visibility the function set. An invocation that raises, or an
  answer naming a record not in the batch, fails the whole batch, as on Lambda. Redrive
  policies act as SQS's do.
- **an HTTP front door** (``front_door``): an ASGI app that turns each request into an HTTP API
  event (payload 2.0) and the function's answer back into the response; WebSocket clients
  of the app's WebSocket APIs become WebSocket API events, with API Gateway's management API
  for ``app.connections`` (``socket_door.py``).
- **one execution environment**: the handler runs in one thread, one invocation at a time, and
  its runtime is started by the first invocation and kept, as on Lambda.

Unlike Lambda, the app's resources are declared on start (as ``framework run`` does), since no
template deployed them. ``framework run APP --lambda`` serves it until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

from starlette.types import Receive, Scope, Send

from framework.aws.handler import LambdaHandler
from framework.aws.http import is_text
from framework.aws.local import LambdaContext, sqs_event
from framework.aws.sam import API_TIMEOUT, function_timeout
from framework.aws.socket_door import MANAGEMENT_PREFIX, SocketDoor
from framework.backends import from_url
from framework.exceptions import ConfigError
from framework.gateway.errors import ClientDisconnectedError, HTTPError
from framework.gateway.inputs import header, read_body
from framework.gateway.sockets import deny
from framework.logs import event
from framework.registry import ConsumerSpec

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["LocalLambda"]

log = logging.getLogger("framework.aws.local")

MAX_WAIT = 20
MAX_REQUEST = 6 * 1024 * 1024  # Lambda's limit on a synchronous invocation's payload
TOO_LARGE = {
    "statusCode": 413,
    "headers": {"content-type": "application/json"},
    "body": '{"message":"Request Entity Too Large"}',
}


class LocalLambda:
    """Run ``app``'s Lambda handler with event source mappings and an HTTP front door.

    Use it as an async context manager: entering declares the app's resources and starts
    the pollers; leaving stops them and the handler's runtime.

    Args:
        app: The app.
        backend: An ``aws://`` URL (``?endpoint_url=`` for an emulator).
        poll_wait: Seconds each long poll waits for messages (1 to 20).
        public_url: Where the front door listens (``http://HOST:PORT``): the function's
            ``app.connections`` reaches the local WebSocket clients there.

    Raises:
        ConfigError: For a backend other than ``aws://``: event source mappings read SQS.
    """

    def __init__(
        self,
        app: App,
        backend: str,
        *,
        poll_wait: float = 1.0,
        public_url: str | None = None,
    ) -> None:
        if not backend.startswith("aws:"):
            raise ConfigError(
                f"local Lambda mode needs an aws:// backend (SQS event source mappings read "
                f"SQS), not {backend.partition('://')[0]}://; try "
                "aws://us-east-1?endpoint_url=http://127.0.0.1:5000 with moto's server"
            )
        self.app = app
        self.backend_url = backend
        self.poll_wait = max(1, min(MAX_WAIT, round(poll_wait)))
        # The front door plays API Gateway's management API too: pushes come back to it.
        self.handler = LambdaHandler(
            app, backend=backend, websocket_endpoints=public_url if public_url else None
        )
        self.sockets = SocketDoor(app.registry, self.invoke)
        self.invocations = 0
        self.deleted = 0
        self._environment: ThreadPoolExecutor | None = None
        self._backend: Any = None
        self._pollers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        # What `sam deploy` would have created: declared once, by a runtime of its own.
        async with self.app.run(from_url(self.backend_url), workers=False):
            pass
        self._environment = ThreadPoolExecutor(1, thread_name_prefix="lambda-environment")
        self._backend = from_url(self.backend_url)
        await self._backend.__aenter__()
        for consumer in self.app.registry.consumers.values():
            task = asyncio.get_running_loop().create_task(self._poll(consumer))
            self._pollers.append(task)
        event(log, logging.INFO, "lambda.local.started", mappings=len(self._pollers))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._pollers:
            task.cancel()
        for task in self._pollers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pollers = []
        environment, self._environment = self._environment, None
        if environment is not None:
            await asyncio.get_running_loop().run_in_executor(environment, self.handler.close)
            environment.shutdown()
        if self._backend is not None:
            await self._backend.__aexit__(None, None, None)
            self._backend = None

    async def invoke(self, event_: Mapping[str, Any], context: LambdaContext) -> Any:
        """Invoke the handler in the execution environment, as Lambda does, and wait."""
        if self._environment is None:
            raise RuntimeError("LocalLambda is not running: use 'async with'")
        self.invocations += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._environment, self.handler, event_, context)

    # --- event source mappings -------------------------------------------------------------

    async def _poll(self, consumer: ConsumerSpec) -> None:
        queue = consumer.queue
        sqs = self._backend.sqs
        url = await sqs.url(queue.name)
        arn = await sqs.arn(queue.name)
        timeout = function_timeout(queue)
        while True:
            try:
                response = await sqs.client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=queue.batch_size,
                    WaitTimeSeconds=self.poll_wait,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception as exc:  # a hiccup of the emulator: say so, go on
                event(
                    log,
                    logging.ERROR,
                    "lambda.local.receive_failed",
                    queue=queue.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await asyncio.sleep(1.0)
                continue
            messages = list(response.get("Messages") or [])
            if not messages:
                continue
            await self._deliver(queue.name, url, sqs_event(messages, queue_arn=arn), timeout)

    async def _deliver(self, queue: str, url: str, batch: Mapping[str, Any], seconds: int) -> None:
        records = batch["Records"]
        try:
            answer = await self.invoke(batch, LambdaContext(timeout=seconds))
        except Exception as exc:
            event(
                log,
                logging.ERROR,
                "lambda.local.invocation_failed",
                queue=queue,
                records=len(records),
                error=f"{type(exc).__name__}: {exc}",
            )
            return  # the whole batch becomes visible again after its visibility timeout
        ids = {r["messageId"] for r in records}
        failures = (answer or {}).get("batchItemFailures") or []
        listed = {str(f.get("itemIdentifier")) for f in failures}
        if not listed <= ids:
            event(
                log,
                logging.ERROR,
                "lambda.local.bad_answer",
                queue=queue,
                unknown=sorted(listed - ids),
            )
            return  # Lambda fails the whole batch for an identifier it did not send
        done = [r for r in records if r["messageId"] not in listed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            await self._backend.sqs.client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": r["receiptHandle"]} for n, r in enumerate(chunk)
                ],
            )
        self.deleted += len(done)
        event(
            log,
            logging.INFO,
            "lambda.local.batch",
            queue=queue,
            records=len(records),
            failed=len(listed),
            deleted=len(done),
        )

    # --- the HTTP front door ---------------------------------------------------------------

    async def front_door(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: each HTTP request becomes an HTTP API event (payload 2.0) for the handler,
        and each WebSocket connection at an API's path WebSocket events (``socket_door.py``)."""
        if scope["type"] == "lifespan":
            while True:
                step = await receive()
                if step["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif step["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            if self.sockets.serves(scope["path"]):
                await self.sockets.websocket(scope, receive, send)
            elif (await receive())["type"] == "websocket.connect":
                await deny(scope, send, 404, "no WebSocket API at this path")
            return
        if scope["type"] != "http":
            return
        if MANAGEMENT_PREFIX in scope["path"] and self.app.registry.websocket_apis:
            await self.sockets.management(scope, receive, send)
            return
        try:
            body = await read_body(receive, MAX_REQUEST, header(scope, b"content-length"))
        except ClientDisconnectedError:
            return
        except HTTPError:  # over Lambda's limit: API Gateway answers without invoking
            await _send_answer(send, TOO_LARGE)
            return
        answer = await self.invoke(_http_event(scope, body), LambdaContext(API_TIMEOUT))
        await _send_answer(send, answer)


def _http_event(scope: Scope, body: bytes) -> dict[str, Any]:
    """The HTTP API event (payload 2.0) API Gateway would send for this request."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in scope.get("headers") or ():
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    client = scope.get("client") or ("127.0.0.1", 0)
    query = scope.get("query_string", b"").decode("latin-1")
    now = datetime.now(UTC)
    text = is_text(headers.get("content-type", "")) if body else True
    if text:
        try:
            body_text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = False
    event_: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": (scope.get("raw_path") or quote(scope["path"]).encode()).decode("latin-1"),
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": scope["method"],
                "path": scope["path"],
                "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
                "sourceIp": client[0],
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": not text,
    }
    if cookies:
        event_["cookies"] = cookies
    if query:
        joined: dict[str, str] = {}
        for pair in query.split("&"):
            key, _, value = pair.partition("=")
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        event_["queryStringParameters"] = joined
    if body:
        event_["body"] = body_text if text else base64.b64encode(body).decode("ascii")
    return event_


async def _send_answer(send: Send, answer: Mapping[str, Any]) -> None:
    """Send the function's payload-2.0 answer as API Gateway would."""
    body = answer.get("body") or ""
    data = base64.b64decode(body) if answer.get("isBase64Encoded") else str(body).encode()
    headers = [
        (str(k).lower().encode("latin-1"), str(v).encode("latin-1"))
        for k, v in (answer.get("headers") or {}).items()
        if str(k).lower() != "content-length"
    ]
    headers += [(b"set-cookie", str(c).encode("latin-1")) for c in answer.get("cookies") or ()]
    headers.append((b"content-length", str(len(data)).encode()))
    await send(
        {"type": "http.response.start", "status": int(answer["statusCode"]), "headers": headers}
    )
    await send({"type": "http.response.body", "body": data})

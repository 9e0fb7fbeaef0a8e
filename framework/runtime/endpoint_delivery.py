"""Endpoint subscriptions: topic messages POSTed to HTTP(S) URLs or mailed to an address.

Each endpoint subscription is a queue like any other (``TOPIC.NAME``) whose handler the
framework provides, so deliveries get the same visibility timeout, retries with backoff and
dead-letter queue as a handler the user writes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from framework.context import Context
from framework.exceptions import DeclarationError, FrameworkError
from framework.smtp.outbound import check_address

__all__ = ["EndpointError", "backoff", "endpoint_handler"]


class EndpointError(FrameworkError):
    """An endpoint refused or failed a delivery; it will be retried."""


def backoff(receive_count: int) -> float:
    """Seconds before the next try of an endpoint delivery: 1, 2, 4, ... capped at 60."""
    return float(min(2 ** (receive_count - 1), 60))


def endpoint_handler(
    topic: str, endpoint: str, *, timeout: float = 10.0
) -> Callable[[bytes, Context], Awaitable[None]]:
    """Return the handler that delivers ``topic``'s messages to ``endpoint``.

    A ``mailto:`` delivery is sent by the running app's mailer (``ctx.app.mail``).

    Args:
        topic: The topic, named in the delivery's headers or subject.
        endpoint: ``http://...``, ``https://...`` or ``mailto:ADDRESS``.
        timeout: Seconds an HTTP endpoint gets to answer.

    Raises:
        DeclarationError: For any other kind of endpoint.
    """
    if endpoint.startswith("mailto:"):
        address = endpoint.removeprefix("mailto:")
        try:
            check_address(address)
        except FrameworkError as exc:
            raise DeclarationError(f"topic {topic!r}: endpoint {endpoint!r}: {exc}") from None

        async def mail(body: bytes, ctx: Context) -> None:
            await ctx.app.mail.send(
                to=address,
                subject=f"{topic} notification",
                text=body.decode("utf-8", "replace"),
            )

        return mail
    if not endpoint.startswith(("http://", "https://")):
        raise DeclarationError(
            f"topic {topic!r}: endpoint {endpoint!r} must be http://, https:// or mailto:"
        )

    async def post(body: bytes, ctx: Context) -> None:
        message = ctx.message
        headers: dict[str, Any] = {
            "content-type": message.content_type,
            "x-framework-topic": topic,
            "x-framework-message-id": message.id,
            "x-framework-attributes": json.dumps(dict(message.attributes), default=str),
        }
        try:
            # A client per delivery: nothing to close when the app stops, and endpoint
            # deliveries are rare next to queue traffic.
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
                response = await client.post(endpoint, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise EndpointError(f"POST {endpoint} failed: {type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise EndpointError(f"POST {endpoint} answered {response.status_code}")

    return post

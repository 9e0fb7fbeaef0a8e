"""An unreachable backend is a 503 with Retry-After; a message it cannot carry, a 413."""

from __future__ import annotations

import logging

import pytest

from framework import App
from framework.exceptions import BackendUnavailableError
from framework.gateway.errors import RETRY_AFTER
from framework.testing import TestApp

app = App("backend-errors")
app.queue("orders", max_message_size=1024)


@app.route("/unavailable", methods=["POST"])
async def unavailable() -> None:
    raise BackendUnavailableError("the RabbitMQ connection is not usable (broker at 10.0.0.1)")


@app.route("/large", methods=["POST"])
async def large() -> None:
    await app.send("orders", {"x": "y" * 2000})


async def test_backend_unavailable_in_a_handler_is_503_with_retry_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client is told to come back, without the backend's address; the log has the reason
    as a warning, without a traceback."""
    with caplog.at_level(logging.WARNING, logger="framework.gateway"):
        async with TestApp(app) as t:
            r = await t.http.post("/unavailable")
    assert r.status_code == 503
    assert r.headers["retry-after"] == str(RETRY_AFTER)
    assert r.json() == {"detail": "the message backend is unavailable; retry later"}
    assert "10.0.0.1" not in r.text
    [record] = [rec for rec in caplog.records if rec.getMessage() == "http.backend_error"]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "10.0.0.1" in record.fields["reason"]  # type: ignore[attr-defined]


async def test_message_too_large_in_a_handler_is_413_naming_the_limit() -> None:
    """app.send refusing a message over the queue's size limit answers 413 with the limit."""
    async with TestApp(app) as t:
        r = await t.http.post("/large")
    assert r.status_code == 413
    assert "1024" in r.json()["detail"]

"""URL secrets are masked in messages and in every log line the framework writes."""

from __future__ import annotations

import io
import logging

import pytest

from framework.logs import StructuredFormatter, event
from framework.redact import mask_text, mask_url
from framework.settings import Settings


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"),
        ("amqps://u:p%40ss@host/vhost?heartbeat=5", "amqps://u:***@host/vhost?heartbeat=5"),
        ("amqp://u:p@ss/w?rd@host:bad/", "amqp://u:***@host:bad/"),
        (
            "aws://us-east-1?aws_secret_access_key=SECRET&profile=dev",
            "aws://us-east-1?aws_secret_access_key=***&profile=dev",
        ),
        ("https://h/x?token=T&page=2#top", "https://h/x?token=***&page=2#top"),
        ("smtp://relay:587?password=pw", "smtp://relay:587?password=***"),
        ("amqp://user@host/", "amqp://user@host/"),  # no password: nothing to hide
        ("memory://", "memory://"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    """Passwords and secret query values become ***; everything else stays."""
    assert mask_url(url) == masked


def test_mask_text_masks_every_url_in_a_message() -> None:
    """URLs inside free text (a client library's error) are masked; other text is untouched."""
    text = "could not reach 'amqp://a:one@h1/' nor amqp://b:two@h2/ (x=1)"
    assert mask_text(text) == "could not reach 'amqp://a:***@h1/' nor amqp://b:***@h2/ (x=1)"
    assert mask_text("plain") == "plain"


@pytest.mark.parametrize("json_lines", [False, True])
def test_log_lines_and_tracebacks_are_masked(json_lines: bool) -> None:
    """A log line, its fields and its traceback never carry a URL's password.

    The framework's formatter (what ``configure`` installs) on a logger of this test's own,
    so the framework's logging is left as it was.
    """
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(StructuredFormatter(json_lines=json_lines))
    log = logging.getLogger(f"redact-test-{json_lines}")
    log.addHandler(handler)
    log.propagate = False
    try:
        event(log, logging.WARNING, "backend.connecting", url="amqp://guest:hunter2@h/")
        try:
            raise ConnectionError("refused by amqp://guest:hunter2@h/")
        except ConnectionError:
            log.exception("backend.failed")
    finally:
        log.removeHandler(handler)
    output = stream.getvalue()
    assert "hunter2" not in output
    assert output.count("guest:***@h/") >= 2


def test_settings_repr_masks_the_backend_url() -> None:
    """Settings in a repr (a traceback's locals, a debug print) hide the password."""
    shown = repr(Settings(backend="amqp://guest:hunter2@h/", server="http://u:pw@admin/"))
    assert "hunter2" not in shown
    assert ":pw@" not in shown
    assert "amqp://guest:***@h/" in shown


def test_rabbitmq_settings_repr_hides_the_broker_url() -> None:
    """The RabbitMQ backend's settings keep the URL (with its password) out of their repr."""
    from framework.backends.rabbitmq.settings import RabbitMQSettings as RabbitSettings

    assert "hunter2" not in repr(RabbitSettings.from_url("amqp://guest:hunter2@h/"))

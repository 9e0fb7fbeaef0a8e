"""Structured logs: event names with fields, key=value or JSON, secrets redacted."""

from __future__ import annotations

import json
import logging

from framework.logs import FieldsAdapter, StructuredFormatter, event


def _record(name: str, fields: dict[str, object]) -> logging.LogRecord:
    record = logging.LogRecord("framework.test", logging.INFO, __file__, 1, name, None, None)
    record.fields = fields
    return record


def test_key_value_rendering_quotes_strings() -> None:
    """The default format is the event then key=value pairs, strings quoted."""
    line = StructuredFormatter().format(_record("message.handled", {"queue": "q", "n": 2}))
    assert line.endswith("INFO    message.handled queue='q' n=2")


def test_json_rendering_has_event_and_fields() -> None:
    """With json_lines every record is one JSON object with the event and its fields."""
    line = StructuredFormatter(json_lines=True).format(_record("queue.redriven", {"moved": 3}))
    data = json.loads(line)
    assert data["event"] == "queue.redriven"
    assert data["moved"] == 3
    assert data["level"] == "info"


def test_secret_fields_are_redacted() -> None:
    """Fields whose names suggest secrets are never written out."""
    line = StructuredFormatter().format(
        _record("x", {"admin_token": "s3cret", "password": "p", "api_key": "k"})
    )
    assert "s3cret" not in line
    assert "admin_token='***'" in line


def test_fields_adapter_merges_call_fields_with_its_own() -> None:
    """A handler logger keeps its queue fields and adds the call's fields."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("framework.test.adapter")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    adapter = FieldsAdapter(logger, {"fields": {"queue": "orders"}})
    adapter.info("order.shipped", extra={"fields": {"order": "1"}})
    assert records[0].fields == {"queue": "orders", "order": "1"}  # type: ignore[attr-defined]


def test_event_skips_disabled_levels() -> None:
    """event() does nothing when the level is disabled."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("framework.test.levels")
    logger.addHandler(Keep())
    logger.setLevel(logging.WARNING)
    event(logger, logging.INFO, "quiet", a=1)
    event(logger, logging.WARNING, "loud", a=2)
    assert [r.getMessage() for r in records] == ["loud"]

"""The twin of ``bench/lambda_app.py``: the same work as a hand-written Lambda handler.

An API Gateway HTTP API (payload 2.0) ``POST /orders`` validates its body into ``Order`` and
answers 201 with the order's id and amount (422 for a body that is not an order); an SQS
batch validates each record's body into ``Order`` and lists the records that are not in
``batchItemFailures``. No framework, no AWS client: only pydantic and the standard library.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import ValidationError

from bench.orders import Order

__all__ = ["handler"]

_JSON = {"content-type": "application/json"}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Serve an HTTP API event or an SQS batch."""
    records = event.get("Records")
    if records is not None:
        failures = []
        for record in records:
            try:
                Order.model_validate_json(record["body"])
            except ValidationError:
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    try:
        order = Order.model_validate_json(body)
    except ValidationError as exc:
        detail = json.dumps({"detail": exc.errors(include_url=False)}, default=str)
        return {"statusCode": 422, "headers": _JSON, "body": detail, "isBase64Encoded": False}
    answer = json.dumps({"id": order.id, "amount": order.amount})
    return {"statusCode": 201, "headers": _JSON, "body": answer, "isBase64Encoded": False}

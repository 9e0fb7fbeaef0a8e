"""What Lambda's side of an invocation looks like, for running the handler off Lambda.

``LambdaContext`` has the attributes of the context object Lambda's Python runtime passes
(``aws_request_id``, ``function_name``, ``get_remaining_time_in_millis()``, ...), and
``sqs_event`` builds the event an SQS event source mapping sends from the messages
``ReceiveMessage`` returned: every system attribute a string, message attributes renamed to
``stringValue``/``binaryValue`` (base64)/``dataType``, plus ``eventSource``, ``eventSourceARN``
and ``awsRegion``. See https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LambdaContext", "sqs_event", "sqs_record"]


@dataclass
class LambdaContext:
    """A Lambda context: the invocation's id and how long it has left.

    Args:
        timeout: The function's timeout in seconds; the clock starts when this is built.
        function_name: The function's name.
        region: Its region, for ``invoked_function_arn``.
    """

    timeout: float = 30.0
    function_name: str = "framework-local"
    region: str = "us-east-1"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def invoked_function_arn(self) -> str:
        """The function's ARN (account 000000000000: not a real one)."""
        return f"arn:aws:lambda:{self.region}:000000000000:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        """``$LATEST``, as for an unpublished function."""
        return "$LATEST"

    @property
    def log_group_name(self) -> str:
        """The function's log group name."""
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        left = self.timeout - (time.monotonic() - self._started)
        return max(0, int(left * 1000))


def _attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": str(value.get("DataType", "String")),
    }
    if "StringValue" in value:
        out["stringValue"] = str(value["StringValue"])
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        out["binaryValue"] = base64.b64encode(
            raw if isinstance(raw, bytes) else bytes(raw)
        ).decode()
    return out


def sqs_record(message: Mapping[str, Any], *, queue_arn: str) -> dict[str, Any]:
    """Return the Lambda record of one ``ReceiveMessage`` message from ``queue_arn``."""
    body = str(message.get("Body", ""))
    return {
        "messageId": str(message["MessageId"]),
        "receiptHandle": str(message["ReceiptHandle"]),
        "body": body,
        "attributes": {str(k): str(v) for k, v in (message.get("Attributes") or {}).items()},
        "messageAttributes": {
            str(k): _attribute(v) for k, v in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": str(message.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest()),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }


def sqs_event(messages: Iterable[Mapping[str, Any]], *, queue_arn: str) -> dict[str, Any]:
    """Return the event an SQS event source mapping sends for ``messages`` of ``queue_arn``."""
    return {"Records": [sqs_record(m, queue_arn=queue_arn) for m in messages]}

"""Lambda events as AWS documents them, field for field, with the values a test needs.

Written from AWS's pages: the REST API proxy event (payload 1.0) and HTTP API event (payload
2.0) of https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
and .../set-up-lambda-proxy-integrations.html, the SQS record of
https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html (standard and FIFO), the SNS
notification an SQS queue receives without raw delivery
(https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html) and SES's
"Received" notification (https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-contents.html).
Every SQS system attribute is a string, as AWS sends it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


def rest_event(
    method: str,
    path: str,
    *,
    body: str | None = None,
    headers: dict[str, list[str]] | None = None,
    query: dict[str, list[str]] | None = None,
    base64_body: bool = False,
    source_ip: str = "203.0.113.7",
    resource: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API proxy event (payload 1.0)."""
    multi = {"Host": [f"abcdef1234.execute-api.{REGION}.amazonaws.com"], **(headers or {})}
    multi.setdefault("X-Forwarded-Proto", ["https"])
    multi.setdefault("X-Forwarded-Port", ["443"])
    return {
        "version": "1.0",
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in multi.items()},
        "multiValueHeaders": multi,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query or None,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abcdef1234",
            "authorizer": {"claims": None, "scopes": None},
            "domainName": f"abcdef1234.execute-api.{REGION}.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "extendedRequestId": "BQGojGkBoAMFZrw=",
            "httpMethod": method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": source_ip,
                "user": None,
                "userAgent": "curl/8.5.0",
                "userArn": None,
                "clientCert": None,
            },
            "path": f"/prod{path}",
            "protocol": "HTTP/1.1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTime": "02/Dec/2026:06:30:00 +0000",
            "requestTimeEpoch": 1796106600000,
            "resourceId": "ab12cd",
            "resourcePath": resource or path,
            "stage": "prod",
        },
        "pathParameters": None,
        "stageVariables": None,
        "body": body,
        "isBase64Encoded": base64_body,
    }


def http_event(
    method: str,
    raw_path: str,
    *,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    raw_query: str = "",
    cookies: list[str] | None = None,
    base64_body: bool = False,
    source_ip: str = "198.51.100.9",
) -> dict[str, Any]:
    """An HTTP API or function URL event (payload 2.0): header names lower case."""
    all_headers = {
        "host": f"abcdef1234.execute-api.{REGION}.amazonaws.com",
        "user-agent": "curl/8.5.0",
        "x-forwarded-for": source_ip,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **(headers or {}),
    }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abcdef1234",
            "domainName": f"abcdef1234.execute-api.{REGION}.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "curl/8.5.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "02/Dec/2026:06:30:00 +0000",
            "timeEpoch": 1796106600000,
        },
        "isBase64Encoded": base64_body,
    }
    if raw_query:
        pairs = [p.partition("=") for p in raw_query.split("&")]
        joined: dict[str, str] = {}
        for key, _, value in pairs:
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        event["queryStringParameters"] = joined
    if cookies:
        event["cookies"] = cookies
    if body is not None:
        event["body"] = body
    return event


def queue_arn(queue: str) -> str:
    """The ARN of an SQS queue of the test account."""
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"


def documented_sqs_record(queue: str) -> dict[str, Any]:
    """The standard-queue record of Lambda's SQS page (a message sent by hand, not by us)."""
    return {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": "Test message.",
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {
            "myAttribute": {
                "stringValue": "myValue",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn(queue),
        "awsRegion": REGION,
    }


def sns_notification(topic: str, message: str, attributes: dict[str, str]) -> str:
    """The JSON body SNS puts on an SQS queue subscribed without raw delivery."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}",
            "Subject": None,
            "Message": message,
            "Timestamp": "2026-12-02T06:30:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEpH+..",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:t:0",
            "MessageAttributes": {
                name: {"Type": "String", "Value": value} for name, value in attributes.items()
            },
        }
    )


def ses_received(raw_mail: bytes, *, sender: str, recipients: list[str]) -> str:
    """SES's "Received" notification of an SNS action with ``Base64`` encoding."""
    return json.dumps(
        {
            "notificationType": "Received",
            "mail": {
                "timestamp": "2026-12-02T06:30:00.000Z",
                "source": sender,
                "messageId": "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1x",
                "destination": recipients,
                "headersTruncated": False,
                "headers": [{"name": "From", "value": sender}],
                "commonHeaders": {
                    "returnPath": sender,
                    "from": [sender],
                    "to": recipients,
                    "subject": "help",
                },
            },
            "receipt": {
                "timestamp": "2026-12-02T06:30:00.000Z",
                "processingTimeMillis": 574,
                "recipients": recipients,
                "spamVerdict": {"status": "PASS"},
                "virusVerdict": {"status": "PASS"},
                "spfVerdict": {"status": "PASS"},
                "dkimVerdict": {"status": "GRAY"},
                "dmarcVerdict": {"status": "PASS"},
                "action": {
                    "type": "SNS",
                    "topicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:inbound",
                    "encoding": "BASE64",
                },
            },
            "content": base64.b64encode(raw_mail).decode("ascii"),
        }
    )


# --- WebSocket APIs ---------------------------------------------------------------------------
# From https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-mapping-template-reference.html
# (the requestContext variables of a WebSocket route), .../apigateway-websocket-api-lambda-auth.html
# (the $connect REQUEST authorizer's input) and the Lambda proxy integration's events: CONNECT
# carries the handshake's headers and query string, MESSAGE the frame in ``body``, DISCONNECT
# the close code and reason. ``connectedAt`` and ``requestTimeEpoch`` are epoch milliseconds.

WS_API_ID = "a1b2c3d4e5"
WS_STAGE = "prod"
WS_DOMAIN = f"{WS_API_ID}.execute-api.{REGION}.amazonaws.com"


def _ws_context(
    event_type: str,
    route_key: str,
    connection_id: str,
    *,
    authorizer: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": "Z1AHLFSmoAMFaaA=",
        "requestTime": "02/Dec/2026:10:00:00 +0000",
        "messageDirection": "IN",
        "stage": WS_STAGE,
        "connectedAt": 1796205600000,
        "requestTimeEpoch": 1796205600123,
        "identity": {"userAgent": "websocat/1.12", "sourceIp": "203.0.113.7"},
        "requestId": "Z1AHLFSmoAMFaaA=",
        "domainName": WS_DOMAIN,
        "connectionId": connection_id,
        "apiId": WS_API_ID,
    }
    if message_id is not None:
        context["messageId"] = message_id
    if authorizer is not None:
        context["authorizer"] = authorizer
    return context


def _ws_headers(extra: dict[str, str] | None) -> dict[str, list[str]]:
    headers = {
        "Host": [WS_DOMAIN],
        "Sec-WebSocket-Extensions": ["permessage-deflate; client_max_window_bits"],
        "Sec-WebSocket-Key": ["dGhlIHNhbXBsZSBub25jZQ=="],
        "Sec-WebSocket-Version": ["13"],
        "X-Amzn-Trace-Id": ["Root=1-6760a1b2-0123456789abcdef01234567"],
        "X-Forwarded-For": ["203.0.113.7"],
        "X-Forwarded-Port": ["443"],
        "X-Forwarded-Proto": ["https"],
    }
    headers.update({k: [v] for k, v in (extra or {}).items()})
    return headers


def ws_connect_event(
    connection_id: str,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A WebSocket API's CONNECT event ($connect route, Lambda proxy integration)."""
    multi = _ws_headers(headers)
    event: dict[str, Any] = {
        "headers": {k: v[-1] for k, v in multi.items()},
        "multiValueHeaders": multi,
        "requestContext": _ws_context("CONNECT", "$connect", connection_id, authorizer=authorizer),
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event


def ws_message_event(
    connection_id: str,
    body: str,
    *,
    route_key: str = "$default",
    authorizer: dict[str, Any] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """A WebSocket API's MESSAGE event: one frame, on the route API Gateway selected."""
    return {
        "requestContext": _ws_context(
            "MESSAGE", route_key, connection_id, authorizer=authorizer, message_id="Z1AHxc3"
        ),
        "body": body,
        "isBase64Encoded": base64_body,
    }


def ws_disconnect_event(connection_id: str, *, code: int = 1001) -> dict[str, Any]:
    """A WebSocket API's DISCONNECT event (best-effort, after the connection closed)."""
    context = _ws_context("DISCONNECT", "$disconnect", connection_id)
    context.update(disconnectStatusCode=code, disconnectReason="Going away")
    headers = {"Host": [WS_DOMAIN], "x-api-key": [""], "X-Forwarded-For": [""]}
    return {
        "headers": {k: v[-1] for k, v in headers.items()},
        "multiValueHeaders": headers,
        "requestContext": context,
        "isBase64Encoded": False,
    }


def ws_authorizer_event(
    connection_id: str,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The input of a WebSocket API's $connect REQUEST authorizer (a Lambda authorizer)."""
    multi = _ws_headers(headers)
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{WS_API_ID}/{WS_STAGE}/$connect",
        "headers": {k: v[-1] for k, v in multi.items()},
        "multiValueHeaders": multi,
        "queryStringParameters": dict(query or {}),
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()},
        "stageVariables": {},
        "requestContext": _ws_context("CONNECT", "$connect", connection_id),
    }

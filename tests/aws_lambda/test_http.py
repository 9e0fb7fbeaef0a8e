"""API Gateway events (REST payload 1.0, HTTP API payload 2.0) through lambda_handler's gateway."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from framework import App
from framework.aws import LambdaHandler, UnknownEventError, lambda_handler
from framework.aws.local import LambdaContext
from framework.gateway.auth import APIKeyAuth
from framework.gateway.throttle import Throttle
from tests.aws_lambda.shapes import http_event, rest_event

PNG = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"


class Order(BaseModel):
    id: str
    total: float


def http_app() -> tuple[App, list[str]]:
    app = App("lambda-http")
    app.queue("orders")
    calls: list[str] = []

    @app.route("/orders", methods=["POST"], status_code=202)
    async def create(order: Order) -> dict[str, str]:
        await app.send("orders", order)
        return {"accepted": order.id}

    @app.route("/orders/{order_id}")
    async def show(order_id: str, tag: str = "none") -> dict[str, str]:
        return {"id": order_id, "tag": tag}

    @app.route("/cookies")
    async def cookies() -> Response:
        response = Response("ok", media_type="text/plain")
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    @app.route("/echo-cookie")
    async def echo_cookie(request: Request) -> dict[str, str]:
        return dict(request.cookies)

    @app.route("/binary")
    async def binary() -> Response:
        return Response(PNG, media_type="image/png")

    @app.route("/upload", methods=["POST"])
    async def upload(request: Request) -> dict[str, int]:
        body = await request.body()
        return {"size": len(body), "first": body[0]}

    @app.route("/keyed", auth=APIKeyAuth({"k-1": "alice"}))
    async def keyed() -> dict[str, str]:
        return {"ok": "yes"}

    @app.route("/limited", throttle=Throttle(rate=0.001, burst=1, per="client"))
    async def limited() -> dict[str, str]:
        return {"ok": "yes"}

    @app.route("/cached", cache=60)
    async def cached() -> dict[str, int]:
        calls.append("cached")
        return {"calls": len(calls)}

    return app, calls


@pytest.fixture
def app_and_calls(monkeypatch: pytest.MonkeyPatch) -> tuple[App, list[str]]:
    monkeypatch.setenv("FRAMEWORK_BACKEND", "memory://")
    return http_app()


@pytest.fixture
def handler(app_and_calls: tuple[App, list[str]]) -> Iterator[LambdaHandler]:
    h = lambda_handler(app_and_calls[0])
    yield h
    h.close()


def test_rest_post_is_served_and_sends_to_the_queue(handler: LambdaHandler) -> None:
    """A REST (1.0) POST runs the route, which sends to a queue on the runtime started once."""
    event = rest_event(
        "POST",
        "/orders",
        body=json.dumps({"id": "o-1", "total": 9.5}),
        headers={"Content-Type": ["application/json"]},
    )
    answer = handler(event, LambdaContext())
    assert answer["statusCode"] == 202
    assert json.loads(answer["body"]) == {"accepted": "o-1"}
    assert answer["isBase64Encoded"] is False
    assert answer["headers"]["content-type"] == "application/json"
    assert "multiValueHeaders" in answer
    runtime = handler.runtime
    assert runtime is not None
    handler(event, LambdaContext())
    assert handler.runtime is runtime  # started once, reused
    assert handler.loop is not None
    stats = handler.loop.run_until_complete(runtime.stats())
    assert stats["orders"].depth == 2


def test_rest_event_without_a_version_field_is_served(handler: LambdaHandler) -> None:
    """Some senders of payload 1.0 omit ``version``: the shape alone says what it is."""
    event = rest_event("GET", "/orders/o-9")
    del event["version"]
    answer = handler(event, LambdaContext())
    assert answer["statusCode"] == 200
    assert "multiValueHeaders" in answer


def test_rest_invalid_body_is_422_with_field_errors(handler: LambdaHandler) -> None:
    """A body that fails validation answers 422 naming the field, never 500."""
    event = rest_event(
        "POST",
        "/orders",
        body=json.dumps({"id": "o-1", "total": "lots"}),
        headers={"Content-Type": ["application/json"]},
    )
    answer = handler(event, LambdaContext())
    assert answer["statusCode"] == 422
    assert "total" in answer["body"]


def test_rest_path_and_multi_value_query_reach_the_route(handler: LambdaHandler) -> None:
    """Path parameters and (decoded, then re-encoded) query values reach the handler."""
    event = rest_event("GET", "/orders/o 7", query={"tag": ["a&b", "last"]})
    answer = handler(event, LambdaContext())
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"]) == {"id": "o 7", "tag": "last"}


def test_rest_set_cookies_go_to_multi_value_headers(handler: LambdaHandler) -> None:
    """Two Set-Cookie headers travel in multiValueHeaders, single ones in headers."""
    answer = handler(rest_event("GET", "/cookies"), LambdaContext())
    assert answer["statusCode"] == 200
    assert [c.split(";")[0] for c in answer["multiValueHeaders"]["set-cookie"]] == ["a=1", "b=2"]
    assert "set-cookie" not in answer["headers"]
    assert answer["body"] == "ok"


def test_http_v2_cookies_in_and_out(handler: LambdaHandler) -> None:
    """Payload 2.0: request cookies arrive in ``cookies``; Set-Cookie leaves in ``cookies``."""
    answer = handler(http_event("GET", "/echo-cookie", cookies=["x=1", "y=2"]), LambdaContext())
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"]) == {"x": "1", "y": "2"}
    answer = handler(http_event("GET", "/cookies"), LambdaContext())
    assert [c.split(";")[0] for c in answer["cookies"]] == ["a=1", "b=2"]
    assert "set-cookie" not in answer["headers"]
    assert "multiValueHeaders" not in answer


def test_http_v2_raw_query_and_post(handler: LambdaHandler) -> None:
    """Payload 2.0: the raw query string and a JSON body reach the route."""
    answer = handler(http_event("GET", "/orders/o%202", raw_query="tag=x%26y"), LambdaContext())
    assert json.loads(answer["body"]) == {"id": "o 2", "tag": "x&y"}
    answer = handler(
        http_event(
            "POST",
            "/orders",
            body=json.dumps({"id": "o-3", "total": 1}),
            headers={"content-type": "application/json"},
        ),
        LambdaContext(),
    )
    assert answer["statusCode"] == 202


def function_url_event(method: str, raw_path: str, body: str, raw_query: str) -> dict[str, Any]:
    """A Lambda function URL event (payload 2.0) as AWS's function URL page shows it: the
    URL's own domain, an IAM authorizer block, and null path parameters and stage variables."""
    domain = "abcdefg.lambda-url.us-east-1.on.aws"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "cookies": ["cookie1=value1"],
        "headers": {
            "host": domain,
            "content-type": "application/json",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            "x-forwarded-for": "123.123.123.123",
            "user-agent": "agent",
        },
        "queryStringParameters": dict(p.split("=", 1) for p in raw_query.split("&") if p),
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdefg",
            "authentication": None,
            "authorizer": {
                "iam": {
                    "accessKey": "AKIA...",
                    "accountId": "111122223333",
                    "callerId": "AIDA...",
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": "arn:aws:iam::111122223333:user/example-user",
                    "userId": "AIDA...",
                }
            },
            "domainName": domain,
            "domainPrefix": "abcdefg",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "123.123.123.123",
                "userAgent": "agent",
            },
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": "$default",
            "time": "12/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390,
        },
        "body": body,
        "pathParameters": None,
        "isBase64Encoded": False,
        "stageVariables": None,
    }


def test_function_url_events_reach_the_routes(handler: LambdaHandler) -> None:
    """A function URL's event (payload 2.0, nulls where it has nothing) is served as HTTP API's."""
    created = handler(
        function_url_event("POST", "/orders", json.dumps({"id": "u-1", "total": 2}), ""),
        LambdaContext(),
    )
    assert (created["statusCode"], json.loads(created["body"])) == (202, {"accepted": "u-1"})
    shown = handler(function_url_event("GET", "/orders/u-1", "", "tag=t"), LambdaContext())
    assert json.loads(shown["body"]) == {"id": "u-1", "tag": "t"}
    invalid = handler(
        function_url_event("POST", "/orders", json.dumps({"id": "u-2", "total": "x"}), ""),
        LambdaContext(),
    )
    assert invalid["statusCode"] == 422
    assert "total" in invalid["body"]


def test_binary_bodies_are_base64_both_ways(handler: LambdaHandler) -> None:
    """A binary response is base64 with isBase64Encoded; a base64 request body is decoded."""
    for event in (rest_event("GET", "/binary"), http_event("GET", "/binary")):
        answer = handler(event, LambdaContext())
        assert answer["isBase64Encoded"] is True
        assert base64.b64decode(answer["body"]) == PNG
    upload = http_event(
        "POST",
        "/upload",
        body=base64.b64encode(PNG).decode(),
        base64_body=True,
        headers={"content-type": "application/octet-stream"},
    )
    answer = handler(upload, LambdaContext())
    assert json.loads(answer["body"]) == {"size": len(PNG), "first": PNG[0]}


def test_authorizer_throttle_and_cache_work_as_in_the_gateway(
    handler: LambdaHandler, app_and_calls: tuple[App, list[str]]
) -> None:
    """API keys (401/200), per-client throttles (by the event's sourceIp) and the GET cache."""
    assert handler(rest_event("GET", "/keyed"), LambdaContext())["statusCode"] == 401
    keyed = rest_event("GET", "/keyed", headers={"X-API-Key": ["k-1"]})
    assert handler(keyed, LambdaContext())["statusCode"] == 200
    first = handler(http_event("GET", "/limited", source_ip="192.0.2.1"), LambdaContext())
    second = handler(http_event("GET", "/limited", source_ip="192.0.2.1"), LambdaContext())
    other = handler(http_event("GET", "/limited", source_ip="192.0.2.2"), LambdaContext())
    assert (first["statusCode"], second["statusCode"], other["statusCode"]) == (200, 429, 200)
    assert "retry-after" in second["headers"]
    for _ in range(3):
        answer = handler(rest_event("GET", "/cached"), LambdaContext())
        assert json.loads(answer["body"]) == {"calls": 1}
    assert app_and_calls[1] == ["cached"]


def test_unknown_route_is_404_json(handler: LambdaHandler) -> None:
    """A path no route serves is the gateway's 404, as JSON."""
    answer = handler(http_event("GET", "/nowhere"), LambdaContext())
    assert answer["statusCode"] == 404
    assert "detail" in json.loads(answer["body"])


def test_invocations_are_counted_and_logged_with_the_request_id(
    handler: LambdaHandler, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cold start and durations are in /metrics; each invocation's log line has its request id."""
    monkeypatch.setenv("FRAMEWORK_LAMBDA_EMF", "1")  # as on Lambda: CloudWatch's metric format
    context = LambdaContext(aws_request_id="req-1")
    with caplog.at_level(logging.INFO, logger="framework.aws"):
        handler(rest_event("GET", "/orders/a"), context)
        handler(rest_event("GET", "/orders/b"), LambdaContext(aws_request_id="req-2"))
    invoked = [r for r in caplog.records if r.getMessage() == "lambda.invoked"]
    assert [r.fields["aws_request_id"] for r in invoked] == ["req-1", "req-2"]  # type: ignore[attr-defined]
    assert [r.fields["cold_start"] for r in invoked] == [True, False]  # type: ignore[attr-defined]
    assert all(r.fields["duration_ms"] > 0 for r in invoked)  # type: ignore[attr-defined]
    assert invoked[0].fields["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "framework"  # type: ignore[attr-defined]
    metrics = handler(http_event("GET", "/metrics"), LambdaContext())["body"]
    assert 'framework_lambda_invocations_total{cold_start="true",event="http-v1"} 1.0' in metrics
    assert 'framework_lambda_invocations_total{cold_start="false",event="http-v1"} 1.0' in metrics
    assert "framework_lambda_invocation_duration_seconds_count" in metrics


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"detail-type": "Scheduled Event", "source": "aws.events"}, "detail-type"),
        ({"Records": [{"eventSource": "aws:sns", "Sns": {}}]}, "aws:sns"),
        ({"requestContext": {"eventType": "CONNECT", "connectionId": "c"}}, "WebSocket"),
        ([1, 2], "list"),
    ],
)
def test_unknown_event_shape_names_what_it_got(
    handler: LambdaHandler, event: Any, named: str
) -> None:
    """An event that is neither API Gateway's nor SQS's raises an error naming its shape."""
    with pytest.raises(UnknownEventError, match=named):
        handler(event, LambdaContext())
    assert handler.runtime is None  # nothing was started for it


def test_a_cold_http_invocation_on_aws_loads_no_aws_client(tmp_path: Path) -> None:
    """In a fresh interpreter, as on Lambda: an HTTP request that sends nothing imports neither
    aiobotocore (no AWS client is made) nor httpx (no JWKS is fetched)."""
    code = (
        "import json, sys\n"
        "from framework import App\n"
        "from framework.aws import lambda_handler\n"
        "from tests.aws_lambda.shapes import http_event\n"
        "app = App('cold')\n"
        "@app.route('/hello')\n"
        "async def hello() -> dict:\n"
        "    return {'hello': 'world'}\n"
        "handler = lambda_handler(app)\n"
        "answer = handler(http_event('GET', '/hello'), None)\n"
        "assert answer['statusCode'] == 200, answer\n"
        "assert handler.backend.clients_made == ()\n"
        "loaded = [m for m in ('aiobotocore', 'aiohttp', 'httpx') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    env = {
        **os.environ,
        # Nothing listens there: any AWS request would fail the test.
        "FRAMEWORK_BACKEND": "aws://us-east-1?endpoint_url=http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr

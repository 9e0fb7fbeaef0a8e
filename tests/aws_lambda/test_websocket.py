"""API Gateway WebSocket API events through lambda_handler: the routes of ``framework run``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from pydantic import BaseModel

from framework import App, Connection, Refuse
from framework.aws import LambdaHandler, UnknownEventError, lambda_handler
from framework.aws.event_shapes import kind_of
from framework.aws.function_options import options_for
from framework.aws.local import LambdaContext
from framework.aws.sam import template
from framework.aws.socket_events import UnauthorizedError
from framework.backends.aws.settings import physical_name
from framework.gateway.auth import APIKeyAuth, JWTAuth, JWTKey
from framework.principal import Principal
from tests.aws_lambda.conftest import SQS
from tests.aws_lambda.shapes import (
    WS_DOMAIN,
    ws_authorizer_event,
    ws_connect_event,
    ws_disconnect_event,
    ws_message_event,
)

SECRET = "s" * 32


class Say(BaseModel):
    action: str
    text: str
    times: int = 1


def socket_app() -> tuple[App, list[tuple[str, Any]]]:
    app = App("lambda-ws")
    seen: list[tuple[str, Any]] = []

    @app.websocket("/chat", "$connect", auth=APIKeyAuth({"k-1": "ann"}))
    async def connect(conn: Connection) -> None:
        if conn.query.get("room") == "closed":
            raise Refuse(409, "that room is closed")
        if conn.query.get("room") == "broken":
            raise RuntimeError("boom")
        seen.append(("connect", (conn.id, conn.principal.id if conn.principal else None)))

    @app.websocket("/chat", "say")
    async def say(message: Say, conn: Connection) -> dict[str, Any]:
        seen.append(("say", message.text))
        return {"echo": message.text * message.times, "by": conn.principal and conn.principal.id}

    @app.websocket("/chat", "quiet")
    async def quiet(message: Say) -> None:
        seen.append(("quiet", message.text))

    @app.websocket("/chat", "$default")
    async def default(message: str, conn: Connection) -> str:
        return f"default: {message}"

    @app.websocket("/chat", "$disconnect")
    async def gone(conn: Connection) -> None:
        seen.append(("disconnect", conn.id))

    return app, seen


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LambdaHandler, list[Any]]]:
    monkeypatch.setenv("FRAMEWORK_BACKEND", "memory://")
    app, seen = socket_app()
    handler = lambda_handler(app)
    yield handler, seen
    handler.close()


def test_websocket_events_are_recognised_by_their_event_type() -> None:
    """CONNECT, MESSAGE and DISCONNECT events are WebSocket events, the authorizer's its own."""
    assert kind_of(ws_connect_event("c1")) == "websocket"
    assert kind_of(ws_message_event("c1", "{}")) == "websocket"
    assert kind_of(ws_disconnect_event("c1")) == "websocket"
    assert kind_of(ws_authorizer_event("c1")) == "websocket-authorizer"
    with_method = {**ws_connect_event("c1"), "httpMethod": "POST"}  # as some fixtures have it
    assert kind_of(with_method) == "websocket"


def test_connect_with_an_api_key_in_the_header_or_query_is_accepted(
    served: tuple[LambdaHandler, list[Any]],
) -> None:
    """The $connect authorizer takes the key from its header or the query string."""
    handler, seen = served
    by_header = handler(ws_connect_event("c1", headers={"X-API-Key": "k-1"}), LambdaContext())
    by_query = handler(ws_connect_event("c2", query={"x-api-key": "k-1"}), LambdaContext())
    assert by_header == {"statusCode": 200}
    assert by_query == {"statusCode": 200}
    assert seen == [("connect", ("c1", "ann")), ("connect", ("c2", "ann"))]


def test_connect_refusals_answer_their_status(served: tuple[LambdaHandler, list[Any]]) -> None:
    """No key is 401, a wrong key 403, Refuse(409) 409, a failing $connect 500: no connection."""
    handler, seen = served
    missing = handler(ws_connect_event("c1"), LambdaContext())
    wrong = handler(ws_connect_event("c2", headers={"X-API-Key": "nope"}), LambdaContext())
    refused = handler(
        ws_connect_event("c3", headers={"X-API-Key": "k-1"}, query={"room": "closed"}),
        LambdaContext(),
    )
    broken = handler(
        ws_connect_event("c4", headers={"X-API-Key": "k-1"}, query={"room": "broken"}),
        LambdaContext(),
    )
    assert [a["statusCode"] for a in (missing, wrong, refused, broken)] == [401, 403, 409, 500]
    assert json.loads(refused["body"]) == {"detail": "that room is closed"}
    assert "WWW-Authenticate" in missing["headers"]
    assert seen == []


def test_a_page_of_another_origin_is_refused_by_the_authorizer_and_at_connect(
    served: tuple[LambdaHandler, list[Any]],
) -> None:
    """A foreign ``Origin`` is a Deny policy and a 403 CONNECT answer; the API's own host
    and clients without ``Origin`` pass, as under ``framework run``."""
    handler, seen = served
    foreign = {"X-API-Key": "k-1", "Origin": "https://evil.example"}
    policy = handler(ws_authorizer_event("c1", headers=foreign), LambdaContext())
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    answer = handler(ws_connect_event("c1", headers=foreign), LambdaContext())
    assert answer["statusCode"] == 403
    assert "evil.example" in json.loads(answer["body"])["detail"]
    own = {"X-API-Key": "k-1", "Origin": f"https://{WS_DOMAIN}"}
    policy = handler(ws_authorizer_event("c2", headers=own), LambdaContext())
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert handler(ws_connect_event("c2", headers=own), LambdaContext()) == {"statusCode": 200}
    assert seen == [("connect", ("c2", "ann"))]


def test_a_message_route_validates_and_returns_its_value_as_the_body(
    served: tuple[LambdaHandler, list[Any]],
) -> None:
    """The route named by ``action`` gets the validated model; its return value is the body."""
    handler, seen = served
    body = json.dumps({"action": "say", "text": "hi", "times": 2})
    answer = handler(ws_message_event("c1", body, route_key="say"), LambdaContext())
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"echo": "hihi", "by": None}
    assert seen == [("say", "hi")]


def test_a_validation_error_is_answered_with_the_field_errors(
    served: tuple[LambdaHandler, list[Any]],
) -> None:
    """A message failing the route's model answers ``validation`` naming the field."""
    handler, seen = served
    body = json.dumps({"action": "say", "text": "hi", "times": "many"})
    answer = handler(ws_message_event("c1", body, route_key="say"), LambdaContext())
    reply = json.loads(answer["body"])
    assert reply["error"] == "validation"
    assert reply["errors"][0]["loc"] == ["times"]
    assert seen == []


def test_a_route_returning_none_answers_without_a_body(
    served: tuple[LambdaHandler, list[Any]],
) -> None:
    """A handler returning None sends nothing back: the answer has no body."""
    handler, seen = served
    body = json.dumps({"action": "quiet", "text": "sh"})
    assert handler(ws_message_event("c1", body, route_key="quiet"), LambdaContext()) == {
        "statusCode": 200
    }
    assert seen == [("quiet", "sh")]


def test_other_messages_go_to_default(served: tuple[LambdaHandler, list[Any]]) -> None:
    """Text that is not JSON, or names no route, goes to $default."""
    handler, _ = served
    plain = handler(ws_message_event("c1", "hello"), LambdaContext())
    unknown = handler(ws_message_event("c1", json.dumps({"action": "dance"})), LambdaContext())
    assert plain["body"] == "default: hello"
    assert unknown["body"] == 'default: {"action": "dance"}'


def test_disconnect_runs_the_disconnect_handler(served: tuple[LambdaHandler, list[Any]]) -> None:
    """A DISCONNECT event runs $disconnect with the connection's id."""
    handler, seen = served
    assert handler(ws_disconnect_event("c9"), LambdaContext()) == {"statusCode": 200}
    assert seen == [("disconnect", "c9")]


def test_the_authorizer_event_puts_the_principal_on_every_later_event(
    served: tuple[LambdaHandler, list[Any]],
) -> None:
    """The $connect authorizer answers a policy whose context carries the principal, which
    later events bring back as ``conn.principal``."""
    handler, _ = served
    policy = handler(ws_authorizer_event("c1", query={"x-api-key": "k-1"}), LambdaContext())
    statement = policy["policyDocument"]["Statement"][0]
    assert (policy["principalId"], statement["Effect"]) == ("ann", "Allow")
    assert statement["Resource"].endswith("/prod/$connect")
    authorizer = {"principalId": policy["principalId"], **policy["context"]}
    body = json.dumps({"action": "say", "text": "x"})
    answer = handler(
        ws_message_event("c1", body, route_key="say", authorizer=authorizer), LambdaContext()
    )
    assert json.loads(answer["body"])["by"] == "ann"
    denied = handler(ws_authorizer_event("c2", headers={"X-API-Key": "bad"}), LambdaContext())
    assert denied["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    with pytest.raises(UnauthorizedError, match=r"^Unauthorized$"):
        handler(ws_authorizer_event("c3"), LambdaContext())


def test_a_jwt_in_the_access_token_query_parameter_connects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A JWT may come as ``?access_token=`` (browsers cannot set headers on a WebSocket)."""
    monkeypatch.setenv("FRAMEWORK_BACKEND", "memory://")
    app = App("lambda-ws-jwt")
    names: list[str] = []

    @app.websocket("/me", "$connect", auth=JWTAuth(JWTKey(SECRET, "HS256")))
    async def connect(conn: Connection) -> None:
        assert conn.principal is not None
        assert "access_token" not in conn.query
        names.append(conn.principal.id)

    token = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    handler = lambda_handler(app)
    try:
        ok = handler(ws_connect_event("c1", query={"access_token": token}), LambdaContext())
        bad = handler(ws_connect_event("c2", query={"access_token": token + "x"}), LambdaContext())
    finally:
        handler.close()
    assert (ok["statusCode"], bad["statusCode"], names) == (200, 403, ["bob"])


def test_a_websocket_event_for_an_app_without_websocket_apis_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An app that declares no WebSocket API says so, and starts nothing."""
    monkeypatch.setenv("FRAMEWORK_BACKEND", "memory://")
    handler = lambda_handler(App("plain"))
    with pytest.raises(UnknownEventError, match="declares no WebSocket API"):
        handler(ws_connect_event("c1"), LambdaContext())
    assert handler.runtime is None


def pushing_app(prefix: str, found: list[Any]) -> App:
    app = App(f"lambda-{prefix}")
    queue = f"{prefix}-work"

    @app.websocket("/live", "$default")
    async def start(message: str, conn: Connection) -> None:
        if message == "bye":
            await app.connections.close(conn.id)
            return
        await app.connections.send(conn.id, {"started": message})
        found.append(await app.connections.info(conn.id))
        await app.send(queue, conn.id)

    @app.on_queue(queue, visibility_timeout=5)
    async def work(connection_id: str) -> None:
        await app.connections.send(connection_id, "done")
        found.append(await app.connections.info(connection_id))

    return app


@pytest.mark.aws
def test_pushes_from_a_route_and_a_queue_handler_reach_the_management_api(
    start: Any, sqs: SQS, prefix: str
) -> None:
    """app.connections.send/info/close go to API Gateway's management API (moto's), from the
    WebSocket event's function and from a queue handler's."""
    moto_api = pytest.importorskip("moto.apigatewaymanagementapi.models")
    found: list[Any] = []
    handler = start(pushing_app(prefix, found))
    connection_id = f"{prefix}Conn="
    assert handler(ws_message_event(connection_id, "go"), LambdaContext()) == {"statusCode": 200}
    assert handler(sqs.event(f"{prefix}-work"), LambdaContext()) == {"batchItemFailures": []}
    backend = moto_api.apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
    # A moto gap: it keys connections by the id as it appears in the URL, percent-encoded.
    stored = quote(connection_id, safe="")
    assert backend.connections[stored].data == b'{"started":"go"}done'
    route_info, queue_info = found
    assert (route_info.id, route_info.path) == (connection_id, "/live")  # the event's own
    assert (queue_info.id, queue_info.path) == (connection_id, "/live")  # GetConnection's
    assert queue_info.headers == {"user-agent": "Moto Mocks"}
    assert handler(ws_message_event(connection_id, "bye"), LambdaContext()) == {"statusCode": 200}
    assert stored not in backend.connections  # DeleteConnection


class GuestsWelcome:
    """A user's own authorizer with optional credentials: no key is a guest, not a refusal."""

    header = "X-API-Key"

    def security_scheme(self) -> dict[str, Any]:
        return {"type": "apiKey", "in": "header", "name": self.header}

    async def authorize(self, scope: Any, now: float) -> Principal:
        for key, value in scope["headers"]:
            if key == b"x-api-key":
                return Principal(f"key-{value.decode()}")
        return Principal("guest")


def connect_app(auth: Any) -> App:
    app = App("lambda-ws-auth")

    @app.websocket("/chat", "$connect", auth=auth)
    async def connect(conn: Connection) -> None:
        pass

    return app


def token() -> str:
    return jwt.encode({"sub": "ann", "exp": time.time() + 60}, SECRET)


AUTHS: dict[str, Callable[[], tuple[Any, dict[str, str], dict[str, str]]]] = {
    "api key": lambda: (APIKeyAuth({"k-1": "ann"}), {"X-API-Key": "k-1"}, {"x-api-key": "k-1"}),
    "jwt": lambda: (
        JWTAuth(JWTKey(SECRET, algorithm="HS256")),
        {"Authorization": f"Bearer {token()}"},
        {"access_token": token()},
    ),
    "optional": lambda: (GuestsWelcome(), {"X-API-Key": "k-1"}, {"x-api-key": "k-1"}),
}


@pytest.mark.parametrize("kind", sorted(AUTHS))
def test_the_connect_authorizer_declares_no_identity_source_and_reads_header_or_query(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API Gateway answers 401 without calling a REQUEST authorizer unless *every* identity
    source is present, but the credential may come in a header or the query string (and an
    authorizer may take none): so the template declares none, and the function decides."""
    auth, headers, query = AUTHS[kind]()
    app = connect_app(auth)
    options = options_for(app, "tests.aws_lambda.test_websocket:app")
    doc = template(app.registry, options, physical=physical_name)
    (authorizer,) = [
        r["Properties"]
        for r in doc["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Authorizer"
    ]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert "IdentitySource" not in authorizer
    monkeypatch.setenv("FRAMEWORK_BACKEND", "memory://")
    handler = lambda_handler(app)
    try:
        for n, (by_header, by_query) in enumerate([(headers, None), (None, query)]):
            event = ws_authorizer_event(f"c{n}", headers=by_header, query=by_query)
            policy = handler(event, LambdaContext())
            assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow", (kind, n)
        bare = ws_authorizer_event("c9")
        if kind == "optional":
            assert handler(bare, LambdaContext())["principalId"] == "guest"
        else:
            with pytest.raises(UnauthorizedError):
                handler(bare, LambdaContext())
    finally:
        handler.close()

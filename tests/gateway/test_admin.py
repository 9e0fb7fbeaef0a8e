"""The admin API under /_framework/: the contract `framework --server URL` is written against."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from framework import App, Connection, Context
from framework.gateway import APIKeyAuth
from framework.registry import QueueSpec
from framework.testing import TestApp


class Order(BaseModel):
    id: str


def make_app(admin_token: str | None = None) -> tuple[App, list[Any]]:
    """Return an app with a handled queue, a parked queue and a topic, and what they received."""
    app = App("ops", admin_token=admin_token)
    received: list[Any] = []
    app.queue("parked")
    app.queue("parked.fifo", fifo=True)

    @app.on_queue("orders", max_receive_count=1)
    async def process(order: Order, ctx: Context) -> None:
        if order.id == "poison" and "healed" not in received:  # a test appends it to heal
            raise ValueError("poison")
        received.append(("orders", order.id, dict(ctx.message.attributes)))

    @app.on_queue("notes")
    async def note(body: Any) -> None:
        received.append(("notes", body))

    @app.on_topic("events", name="audit")
    async def audit(body: Any) -> None:
        received.append(("events", body))

    @app.route("/orders/{order_id}", methods=["GET", "DELETE"], version="v1", status_code=200)
    async def get_order(order_id: str) -> None: ...

    return app, received


async def test_health_reports_ok_and_the_app_name() -> None:
    """GET /_framework/health returns status ok and the app's name."""
    app, _ = make_app()
    async with TestApp(app) as t:
        r = await t.http.get("/_framework/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "app": "ops"}


async def test_queues_lists_every_backend_queue_sorted_with_stats() -> None:
    """GET /_framework/queues returns QueueStats.as_dict() for every queue, sorted by name."""
    app, _ = make_app()
    async with TestApp(app, workers=False) as t:
        await app.send("parked", "one")
        r = await t.http.get("/_framework/queues")
    queues = r.json()["queues"]
    names = [q["name"] for q in queues]
    assert names == sorted(names)
    assert {"orders", "orders-dlq", "parked", "events.audit"} <= set(names)
    parked = next(q for q in queues if q["name"] == "parked")
    assert parked == {
        "name": "parked",
        "depth": 1,
        "in_flight": 0,
        "delayed": 0,
        "dead_letters": 0,
        "dead_letter_queue": "parked-dlq",
    }


async def test_message_sent_through_admin_reaches_the_queue_handler() -> None:
    """POST /_framework/queues/{name}/messages is 201 with an id and the handler gets the body."""
    app, received = make_app()
    async with TestApp(app) as t:
        r = await t.http.post(
            "/_framework/queues/orders/messages",
            json={"body": {"id": "o-1"}, "attributes": {"source": "cli"}},
        )
        await t.drain()
    assert r.status_code == 201
    assert isinstance(r.json()["message_id"], str)
    assert r.json()["message_id"]
    assert received == [("orders", "o-1", {"source": "cli"})]


async def test_bodies_are_sent_as_one_batch_with_every_id() -> None:
    """POST .../messages with ``bodies`` is 201 with one id per body, each body handled."""
    app, received = make_app()
    async with TestApp(app) as t:
        r = await t.http.post(
            "/_framework/queues/orders/messages",
            json={"bodies": [{"id": "b-1"}, {"id": "b-2"}], "attributes": {"source": "bulk"}},
        )
        await t.drain()
    assert r.status_code == 201
    assert len(set(r.json()["message_ids"])) == 2
    assert sorted(received) == [
        ("orders", "b-1", {"source": "bulk"}),
        ("orders", "b-2", {"source": "bulk"}),
    ]


async def test_bodies_with_one_too_large_send_none() -> None:
    """A list of bodies with one over the limit is 413 naming it, and nothing is queued."""
    app, _ = make_app()
    async with TestApp(app, workers=False) as t:
        r = await t.http.post(
            "/_framework/queues/parked/messages", json={"bodies": ["a", "x" * 300_000]}
        )
        stats = (await t.stats())["parked"]
    assert r.status_code == 413
    assert "body 1 of 2" in r.json()["detail"]
    assert stats.depth == 0


@pytest.mark.parametrize(
    "payload", [{"body": 1, "bodies": [1]}, {"attributes": {}}, {"bodies": "x"}]
)
async def test_body_and_bodies_together_or_neither_are_refused(payload: dict[str, Any]) -> None:
    """Both ``body`` and ``bodies``, neither, or ``bodies`` not a list: 422."""
    app, _ = make_app()
    async with TestApp(app, workers=False) as t:
        r = await t.http.post("/_framework/queues/parked/messages", json=payload)
    assert r.status_code == 422


async def test_bodies_to_a_queue_the_app_does_not_declare_go_to_the_backend() -> None:
    """A list of bodies to a queue only the backend has is queued there as one batch."""
    app, _ = make_app()
    async with TestApp(app, workers=False) as t:
        await t.backend.declare_queue(QueueSpec.from_options("elsewhere"))
        r = await t.http.post("/_framework/queues/elsewhere/messages", json={"bodies": [1, 2, 3]})
        stats = await t.backend.stats("elsewhere")
    assert r.status_code == 201
    assert stats.depth == 3


async def test_explicit_nulls_for_every_option_are_accepted() -> None:
    """A send, publish and redrive with every option null (as the CLI sends them) succeed."""
    app, _ = make_app()
    nulls = {"attributes": None, "group_id": None, "deduplication_id": None}
    async with TestApp(app, workers=False) as t:
        sent = await t.http.post(
            "/_framework/queues/parked/messages", json={"body": [1], "delay": None, **nulls}
        )
        published = await t.http.post(
            "/_framework/topics/events/messages", json={"body": 1, **nulls}
        )
        redriven = await t.http.post(
            "/_framework/queues/parked-dlq/redrive", json={"to": None, "limit": None}
        )
    assert (sent.status_code, published.status_code) == (201, 201)
    assert redriven.json() == {"moved": 0}


async def test_json_string_body_is_sent_as_text_and_other_json_as_json() -> None:
    """A JSON string body arrives as str; a number arrives as JSON."""
    app, received = make_app()
    async with TestApp(app) as t:
        await t.http.post("/_framework/queues/notes/messages", json={"body": "hello"})
        await t.drain()
        await t.http.post("/_framework/queues/notes/messages", json={"body": 42})
        await t.drain()
    assert received == [("notes", "hello"), ("notes", 42)]


async def test_delayed_message_waits_for_its_delay() -> None:
    """A message sent with delay is delayed on the queue, not visible."""
    app, _ = make_app()
    async with TestApp(app, workers=False) as t:
        r = await t.http.post("/_framework/queues/parked/messages", json={"body": 1, "delay": 60})
        stats = (await t.stats())["parked"]
    assert r.status_code == 201
    assert (stats.depth, stats.delayed) == (0, 1)


async def test_message_to_a_queue_the_app_does_not_declare_goes_to_the_backend() -> None:
    """A queue the backend has but the app does not declare still receives the message."""
    app, _ = make_app()
    async with TestApp(app, workers=False) as t:
        await t.backend.declare_queue(QueueSpec.from_options("elsewhere"))
        r = await t.http.post("/_framework/queues/elsewhere/messages", json={"body": {"a": 1}})
        stats = await t.backend.stats("elsewhere")
    assert r.status_code == 201
    assert stats.depth == 1


async def test_message_published_through_admin_reaches_the_subscriber() -> None:
    """POST /_framework/topics/{name}/messages is 201 and the subscription handler gets it."""
    app, received = make_app()
    async with TestApp(app) as t:
        r = await t.http.post("/_framework/topics/events/messages", json={"body": {"kind": "x"}})
        await t.drain()
    assert r.status_code == 201
    assert r.json()["message_id"]
    assert received == [("events", {"kind": "x"})]


async def test_topic_message_refuses_a_delay() -> None:
    """A topic message with a delay field is malformed: 422 at ["body", "delay"]."""
    app, _ = make_app()
    async with TestApp(app) as t:
        r = await t.http.post("/_framework/topics/events/messages", json={"body": 1, "delay": 5})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "delay"]


async def test_redrive_moves_dead_letters_back_to_their_source() -> None:
    """POST /_framework/queues/{dlq}/redrive returns how many moved, and they are handled."""
    app, received = make_app()
    async with TestApp(app) as t:
        await app.send("orders", Order(id="poison"))
        await t.drain()
        dead = (await t.stats())["orders"].dead_letters
        received.append("healed")
        r = await t.http.post("/_framework/queues/orders-dlq/redrive", json={})
        await t.drain()
        after = (await t.stats())["orders"].dead_letters
    assert dead == 1
    assert r.status_code == 200
    assert r.json() == {"moved": 1}
    assert after == 0
    assert received == ["healed", ("orders", "poison", {})]


async def test_redrive_honours_to_and_limit_and_accepts_no_body() -> None:
    """Redrive with to and limit moves that many to that queue; an empty JSON body: defaults."""
    app, _ = make_app()
    async with TestApp(app, workers=False) as t:
        for n in range(3):
            await app.send("orders-dlq", {"id": str(n)})
        r = await t.http.post(
            "/_framework/queues/orders-dlq/redrive", json={"to": "parked", "limit": 2}
        )
        rest = await t.http.post(
            "/_framework/queues/orders-dlq/redrive", headers={"content-type": "application/json"}
        )
        parked = (await t.stats())["parked"].depth
    assert r.json() == {"moved": 2}
    assert rest.json() == {"moved": 1}
    assert parked == 2


async def test_purge_deletes_the_queued_messages() -> None:
    """POST /_framework/queues/{name}/purge returns the count and empties the queue."""
    app, _ = make_app()
    async with TestApp(app, workers=False) as t:
        await app.send("parked", "a")
        await app.send("parked", "b")
        r = await t.http.post("/_framework/queues/parked/purge", json={})
        depth = (await t.stats())["parked"].depth
    assert r.json() == {"purged": 2}
    assert depth == 0


async def test_routes_lists_the_apps_routes() -> None:
    """GET /_framework/routes describes each route with methods, full path and handler."""
    app, _ = make_app()
    async with TestApp(app) as t:
        r = await t.http.get("/_framework/routes")
    assert r.json() == {
        "routes": [
            {
                "methods": ["GET", "DELETE"],
                "path": "/v1/orders/{order_id}",
                "handler": f"{__name__}.make_app.<locals>.get_order",
                "version": "v1",
                "status_code": 200,
                "auth": None,
            }
        ],
        "websocket_routes": [],
    }


async def test_routes_lists_websocket_routes_with_their_auth() -> None:
    """GET /_framework/routes lists each WebSocket route key, its handler and its authorizer."""
    app = App("sockets")

    @app.route("/me", methods=["GET"], auth=APIKeyAuth({"k-1": "ops"}))
    async def me() -> str:
        return "ops"

    @app.websocket("/live", "$connect", auth=APIKeyAuth({"k-1": "ops"}))
    async def join(conn: Connection) -> None: ...

    @app.websocket("/live", "$default")
    async def echo(body: str) -> str:
        return body

    async with TestApp(app) as t:
        r = await t.http.get("/_framework/routes")
    listing = r.json()
    assert [(x["path"], x["auth"]) for x in listing["routes"]] == [("/me", "APIKeyAuth")]
    assert listing["websocket_routes"] == [
        {
            "path": "/live",
            "route": "$connect",
            "handler": f"{__name__}.{join.__qualname__}",
            "auth": "APIKeyAuth",
        },
        {
            "path": "/live",
            "route": "$default",
            "handler": f"{__name__}.{echo.__qualname__}",
            "auth": None,
        },
    ]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/_framework/queues/nope/messages", {"body": 1}),
        ("POST", "/_framework/topics/nope/messages", {"body": 1}),
        ("POST", "/_framework/queues/nope/redrive", {}),
        ("POST", "/_framework/queues/orders-dlq/redrive", {"to": "nope"}),
        ("POST", "/_framework/queues/nope/purge", {}),
    ],
)
async def test_unknown_queue_or_topic_is_404(method: str, path: str, body: Any) -> None:
    """Operations on a queue or topic that does not exist give 404 naming it."""
    app, _ = make_app()
    async with TestApp(app) as t:
        r = await t.http.request(method, path, json=body)
    assert r.status_code == 404
    assert "'nope'" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/_framework/queues/parked.fifo/messages", {"body": 1}, 400),  # FIFO without group_id
        ("/_framework/queues/parked/messages", {"body": 1, "delay": 901}, 400),
        ("/_framework/queues/parked/messages", {"body": 1, "attributes": {"a": {"b": 1}}}, 400),
        ("/_framework/queues/parked/messages", {"body": "x" * 300_000}, 413),
        ("/_framework/topics/events/messages", {"body": "x" * 300_000}, 413),
    ],
)
async def test_message_the_queue_refuses_is_400_or_413(path: str, body: Any, status: int) -> None:
    """A message breaking the queue's rules is 400, one over its size limit 413, with detail."""
    app, _ = make_app()
    async with TestApp(app) as t:
        r = await t.http.post(path, json=body)
    assert r.status_code == status
    assert isinstance(r.json()["detail"], str)


@pytest.mark.parametrize(
    ("content", "loc"),
    [(b"{not json", ["body"]), (b'{"attributes": {}}', ["body", "body"]), (b"", ["body"])],
)
async def test_malformed_admin_request_is_422(content: bytes, loc: list[str]) -> None:
    """A send request that is not JSON or lacks "body" gives 422 with its location."""
    app, _ = make_app()
    async with TestApp(app) as t:
        r = await t.http.post(
            "/_framework/queues/parked/messages",
            content=content,
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == loc


async def test_admin_request_with_form_body_is_415() -> None:
    """A send request that is not JSON by content type gives 415."""
    app, _ = make_app()
    async with TestApp(app) as t:
        r = await t.http.post("/_framework/queues/parked/messages", data={"body": "x"})
    assert r.status_code == 415


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/_framework/queues"), ("POST", "/_framework/queues/parked/messages")],
)
async def test_admin_api_without_a_running_app_is_503(method: str, path: str) -> None:
    """Operations needing the runtime give 503 while the app is not running."""
    app, _ = make_app()
    transport = httpx.ASGITransport(app=app.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
        r = await http.request(method, path, json={"body": 1})
        health = await http.get("/_framework/health")
    assert r.status_code == 503
    assert "not running" in r.json()["detail"]
    assert health.status_code == 200


async def test_admin_token_missing_is_401_with_bearer_challenge() -> None:
    """With an admin token set, a request without Authorization is 401 WWW-Authenticate: Bearer."""
    app, _ = make_app(admin_token="s3cret-token")
    async with TestApp(app) as t:
        r = await t.http.get("/_framework/queues")
        basic = await t.http.get("/_framework/queues", headers={"Authorization": "Basic eDp5"})
    assert r.status_code == basic.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in r.json()["detail"]


async def test_admin_token_wrong_is_403(caplog: pytest.LogCaptureFixture) -> None:
    """A wrong bearer token is 403, and neither token appears in the logs."""
    app, _ = make_app(admin_token="s3cret-token")
    with caplog.at_level(logging.DEBUG):
        async with TestApp(app) as t:
            r = await t.http.get("/_framework/health", headers={"Authorization": "Bearer guess-1"})
            ok = await t.http.get(
                "/_framework/health", headers={"Authorization": "Bearer s3cret-token"}
            )
    assert r.status_code == 403
    assert "s3cret-token" not in r.text
    assert ok.status_code == 200
    assert "s3cret-token" not in caplog.text
    assert "guess-1" not in caplog.text


async def test_admin_token_right_allows_every_operation() -> None:
    """The right bearer token (any case of the scheme) lets a send through to the handler."""
    app, received = make_app(admin_token="s3cret-token")
    async with TestApp(app) as t:
        r = await t.http.post(
            "/_framework/queues/notes/messages",
            json={"body": "hi"},
            headers={"Authorization": "bearer s3cret-token"},
        )
        await t.drain()
    assert r.status_code == 201
    assert received == [("notes", "hi")]


async def test_user_routes_do_not_need_the_admin_token() -> None:
    """The admin token guards /_framework/ only, not the app's own routes."""
    app, _ = make_app(admin_token="s3cret-token")
    async with TestApp(app) as t:
        r = await t.http.get("/v1/orders/1")
    assert r.status_code == 204

"""Who may call the admin API: content types, origins, hosts, loopback, tokens, CORS, logs."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from framework import App
from framework.gateway import CORS
from framework.messages import DLQ_RECEIVE_COUNT, DLQ_SOURCE, Outgoing
from framework.testing import TestApp

FORM = {"content-type": "application/x-www-form-urlencoded"}


def make_app(token: str | None = None, cors: CORS | None = None) -> App:
    """An app with a queue holding nothing yet and a public route."""
    app = App("admin-security", admin_token=token, cors=cors)
    app.queue("orders")

    @app.route("/public")
    async def public() -> dict[str, str]:
        return {"hello": "world"}

    return app


def on(app: App, url: str, client: tuple[str, int] = ("127.0.0.1", 40000)) -> httpx.AsyncClient:
    """A client reaching the app's gateway as if over a connection to ``url`` from ``client``."""
    transport = httpx.ASGITransport(app=app.asgi, client=client)
    return httpx.AsyncClient(transport=transport, base_url=url)


@pytest.mark.parametrize(
    ("path", "headers", "content"),
    [
        ("/_framework/queues/orders/purge", FORM, b"x=1"),  # a plain HTML form
        ("/_framework/queues/orders/purge", {}, b""),  # a no-cors fetch without a body
        ("/_framework/queues/orders/redrive", {}, b""),
        ("/_framework/queues/orders/messages", {"content-type": "text/plain"}, b'{"body":1}'),
        ("/_framework/queues/orders/messages/delete", {}, b'{"message_ids":[]}'),
    ],
)
async def test_every_admin_post_must_be_json(
    path: str, headers: dict[str, str], content: bytes
) -> None:
    """A POST without Content-Type: application/json is 415 and changes nothing."""
    app = make_app()
    async with TestApp(app, workers=False) as t:
        await app.send("orders", {"id": 1})
        r = await t.http.post(path, content=content, headers=headers)
        depth = (await t.stats())["orders"].depth
    assert r.status_code == 415
    assert "application/json" in r.json()["detail"]
    assert depth == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "http://localhost:3000"},  # another local dev server: another origin
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
@pytest.mark.parametrize("token", [None, "s3cret"])
async def test_requests_from_other_origins_pages_are_refused(
    headers: dict[str, str], token: str | None
) -> None:
    """A browser request from another origin or site is 403, token or not."""
    app = make_app(token)
    auth = {"authorization": f"Bearer {token}"} if token else {}
    async with TestApp(app, workers=False) as t, on(app, "http://127.0.0.1:8000") as http:
        await app.send("orders", {"id": 1})
        r = await http.post("/_framework/queues/orders/purge", json={}, headers={**headers, **auth})
        depth = (await t.stats())["orders"].depth
    assert r.status_code == 403
    assert "other" in r.json()["detail"]
    assert depth == 1


async def test_the_dashboards_own_origin_is_served() -> None:
    """A same-origin request (the dashboard's) passes the origin check."""
    app = make_app()
    async with TestApp(app, workers=False), on(app, "http://127.0.0.1:8000") as http:
        r = await http.get(
            "/_framework/queues",
            headers={"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"},
        )
    assert r.status_code == 200


@pytest.mark.parametrize("host", ["rebind.attacker.example:8000", "0.0.0.0:8000", "10.1.2.3"])
async def test_a_foreign_host_header_is_refused_without_a_token(host: str) -> None:
    """DNS rebinding: a page at attacker.example resolving to 127.0.0.1 sends its own Host."""
    app = make_app()
    async with TestApp(app, workers=False), on(app, "http://127.0.0.1:8000") as http:
        r = await http.get("/_framework/queues", headers={"host": host})
    assert r.status_code == 403
    assert "DNS rebinding" in r.json()["detail"]


@pytest.mark.parametrize(
    "host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "app.localhost"]
)
async def test_loopback_host_names_are_served_without_a_token(host: str) -> None:
    """localhost, *.localhost and loopback addresses are served without a token."""
    app = make_app()
    async with TestApp(app, workers=False), on(app, "http://127.0.0.1:8000") as http:
        r = await http.get("/_framework/queues", headers={"host": host})
    assert r.status_code == 200


async def test_configured_admin_hosts_are_served() -> None:
    """A name in App.admin_hosts is served like a loopback name."""
    app = make_app()
    app.admin_hosts = ["shop.test"]
    async with TestApp(app, workers=False), on(app, "http://127.0.0.1:8000") as http:
        r = await http.get("/_framework/queues", headers={"host": "shop.test:8000"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("url", "client"),
    [
        ("http://192.0.2.10:8000", ("192.0.2.99", 40000)),  # another machine
        ("http://192.0.2.10:8000", ("127.0.0.1", 40000)),  # the machine's public address
        ("http://127.0.0.1:8000", ("192.0.2.99", 40000)),  # a forwarded port
    ],
)
async def test_no_token_means_loopback_connections_only(url: str, client: tuple[str, int]) -> None:
    """Without a token, a connection not both to and from loopback is 403, saying why."""
    app = make_app()
    async with TestApp(app, workers=False), on(app, url, client) as http:
        r = await http.get("/_framework/queues")
        public = await http.get("/public")
    assert r.status_code == 403
    assert "FRAMEWORK_ADMIN_TOKEN" in r.json()["detail"]
    assert public.status_code == 200  # the app's own routes are not affected


async def test_with_a_token_any_address_and_host_may_call() -> None:
    """With the token, a request from another machine for another Host name is served."""
    app = make_app("s3cret")
    async with (
        TestApp(app, workers=False),
        on(app, "http://192.0.2.10:8000", ("192.0.2.99", 1)) as http,
    ):
        refused = await http.get("/_framework/queues", headers={"host": "ops.example"})
        r = await http.get(
            "/_framework/queues",
            headers={"host": "ops.example", "authorization": "Bearer s3cret"},
        )
    assert refused.status_code == 401
    assert r.status_code == 200


async def test_cors_for_the_apps_routes_never_covers_the_admin_api() -> None:
    """With CORS(allow_origins=["*"]), public routes get CORS headers; /_framework/ gets none."""
    app = make_app(cors=CORS(allow_origins=["*"]))
    origin = {"origin": "https://elsewhere.example"}
    async with TestApp(app, workers=False) as t:
        await app.send("orders", {"secret": "card"})
        public = await t.http.get("/public", headers=origin)
        peek = await t.http.get("/_framework/queues/orders/messages", headers=origin)
        preflight = await t.http.options(
            "/_framework/queues/orders/purge",
            headers={**origin, "access-control-request-method": "POST"},
        )
        dashboard = await t.http.get("/_framework/dashboard", headers=origin)
    assert public.headers["access-control-allow-origin"] == "*"
    for r in (peek, preflight, dashboard):
        assert not [k for k in r.headers if k.startswith("access-control-")], r.headers
    assert peek.status_code == 403
    assert "card" not in peek.text


async def test_purge_redrive_and_delete_are_logged_with_their_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each destructive admin operation logs a structured event with how many it touched."""
    app = make_app()
    app.queue("orders-dlq")
    async with TestApp(app, workers=False) as t:
        for n in range(3):
            await app.send("orders", {"id": n})
            await app.send("orders-dlq", {"id": n})
        with caplog.at_level(logging.INFO):
            await t.http.post("/_framework/queues/orders/purge", json={})
            await t.http.post("/_framework/queues/orders-dlq/redrive", json={"to": "orders"})
            await t.http.post(
                "/_framework/queues/orders/messages/delete", json={"message_ids": ["x"]}
            )
    fields = {r.getMessage(): getattr(r, "fields", {}) for r in caplog.records}
    assert fields["queue.purged"] == {"queue": "orders", "purged": 3}
    assert fields["queue.redriven"]["moved"] == 3
    assert fields["queue.messages_deleted"] == {"queue": "orders", "deleted": 0}


async def test_metrics_can_be_protected_by_the_admin_token() -> None:
    """With protect_metrics, /metrics needs the admin token; without it, it stays open."""
    open_app = make_app("s3cret")
    app = make_app("s3cret")
    app.protect_metrics = True
    async with TestApp(open_app, workers=False) as t:
        assert (await t.http.get("/metrics")).status_code == 200
    async with TestApp(app, workers=False) as t:
        anonymous = await t.http.get("/metrics")
        wrong = await t.http.get("/metrics", headers={"authorization": "Bearer nope"})
        scraped = await t.http.get("/metrics", headers={"authorization": "Bearer s3cret"})
    assert anonymous.status_code == 401
    assert wrong.status_code == 403
    assert scraped.status_code == 200
    assert "framework_http_requests_total" in scraped.text


def test_protect_metrics_without_a_token_is_refused() -> None:
    """protect_metrics with no admin token cannot protect anything: refused when built."""
    app = make_app()
    app.protect_metrics = True
    with pytest.raises(Exception, match="protect_metrics = True needs an admin token"):
        _ = app.asgi


# --- item 9: bad input is a 4xx with a reason; output is valid JSON ------------------------


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def test_a_stored_nan_attribute_is_shown_as_valid_json() -> None:
    """A message some other producer stored with a NaN attribute peeks as valid JSON."""
    app = make_app()
    async with TestApp(app, workers=False) as t:
        await t.backend.send(
            "orders",
            Outgoing(body=b"{}", attributes={"total": float("nan")}),
        )
        r = await t.http.get("/_framework/queues/orders/messages")
    assert r.status_code == 200
    [message] = _strict_json(r.text)["messages"]
    assert message["attributes"]["total"] == "NaN"


@pytest.mark.parametrize(
    "content",
    [
        b'{"body":{"total":NaN}}',
        b'{"body":{"total":Infinity}}',
        b'{"body":[-Infinity]}',
        b'{"body":{"total":1e400}}',
        b'{"body":1,"attributes":{"total":NaN}}',
    ],
)
async def test_non_finite_numbers_sent_to_the_admin_api_are_422(content: bytes) -> None:
    """NaN, Infinity and 1e400 in an admin send are 422 with a reason, never a 500."""
    app = make_app()
    async with TestApp(app, workers=False) as t:
        r = await t.http.post(
            "/_framework/queues/orders/messages",
            content=content,
            headers={"content-type": "application/json"},
        )
        depth = (await t.stats())["orders"].depth
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["type"] == "finite_number"
    assert depth == 0


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A3", "0", "101", "x", "-1", "1.5"])
async def test_a_bad_peek_limit_is_422(limit: str) -> None:
    """?limit= must be ASCII digits from 1 to 100: '²' (isdigit() but not int()) is 422."""
    app = make_app()
    async with TestApp(app, workers=False) as t:
        r = await t.http.get(f"/_framework/queues/orders/messages?limit={limit}")
    assert r.status_code == 422
    assert "limit must be a whole number" in r.text


async def test_a_dead_letter_header_with_a_non_ascii_digit_still_peeks() -> None:
    """A receive-count header of '²' (isdigit() but not int()) peeks as 200, count unknown."""
    app = make_app()
    async with TestApp(app, workers=False) as t:
        await t.backend.send(
            "orders",
            Outgoing(body=b"{}", headers={DLQ_SOURCE: "orders", DLQ_RECEIVE_COUNT: "²"}),
        )
        r = await t.http.get("/_framework/queues/orders/messages")
    assert r.status_code == 200
    assert r.json()["messages"][0]["dead_letter"]["receive_count"] is None


@pytest.mark.parametrize(
    "headers", [{"host": "[evil"}, {"origin": "http://[evil"}, {"host": "", "origin": "x"}]
)
async def test_malformed_host_and_origin_headers_are_403_not_500(headers: dict[str, str]) -> None:
    """An unparseable Host or Origin is refused like a foreign one."""
    app = make_app()
    async with TestApp(app, workers=False), on(app, "http://127.0.0.1:8000") as http:
        r = await http.get("/_framework/queues", headers=headers)
    assert r.status_code == 403

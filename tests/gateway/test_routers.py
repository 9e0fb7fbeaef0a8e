"""Routers (blueprints): a prefix, a version and shared gateway options for a group of routes."""

from __future__ import annotations

import pytest

from framework import App
from framework.exceptions import DeclarationError
from framework.gateway.auth import APIKeyAuth, Principal
from framework.gateway.routers import PUBLIC
from framework.gateway.throttle import Throttle
from tests.gateway.helpers import client


def router_app() -> App:
    app = App("routers")
    admin = app.router("/admin", version="v2", auth=APIKeyAuth({"k": "root"}), cache=30)

    @admin.route("/users/{user_id}")
    async def user(user_id: int, principal: Principal) -> dict[str, object]:
        return {"user": user_id, "by": principal.id}

    @admin.route("/users", methods=["POST"], status_code=201)
    async def create_user(principal: Principal) -> dict[str, str]:
        return {"by": principal.id}

    @admin.route("/ping", auth=PUBLIC, throttle=Throttle(rate=1, burst=1))
    async def ping() -> str:
        return "pong"

    @admin.route("/")
    async def index() -> str:
        return "index"

    plain = app.router("/plain")

    @plain.route("/x", version="v3")
    async def x() -> str:
        return "x"

    return app


async def test_router_routes_are_served_under_version_and_prefix() -> None:
    """A router's routes live at /VERSION/PREFIX/PATH, and its root at /VERSION/PREFIX."""
    async with client(router_app()) as c:
        r = await c.get("/v2/admin/users/7", headers={"X-API-Key": "k"})
        root = await c.get("/v2/admin", headers={"X-API-Key": "k"})
        unversioned = await c.get("/admin/users/7", headers={"X-API-Key": "k"})
    assert r.json() == {"user": 7, "by": "root"}
    assert root.text == "index"
    assert unversioned.status_code == 404


async def test_router_auth_applies_to_every_route_but_public_ones() -> None:
    """The router's authorizer guards its routes; auth=PUBLIC opens one of them."""
    async with client(router_app()) as c:
        guarded = await c.post("/v2/admin/users")
        opened = await c.get("/v2/admin/ping")
    assert guarded.status_code == 401
    assert opened.text == "pong"


async def test_router_cache_applies_only_to_its_get_routes() -> None:
    """A router's cache= caches its GET routes and leaves POST routes alone."""
    async with client(router_app()) as c:
        await c.get("/v2/admin/users/1", headers={"X-API-Key": "k"})
        hit = await c.get("/v2/admin/users/1", headers={"X-API-Key": "k"})
        post = await c.post("/v2/admin/users", headers={"X-API-Key": "k"})
    assert hit.headers["x-cache"] == "hit"
    assert post.status_code == 201
    assert "x-cache" not in post.headers


async def test_route_version_overrides_the_routers() -> None:
    """A route's own version wins over its router's."""
    async with client(router_app()) as c:
        r = await c.get("/v3/plain/x")
    assert r.text == "x"


@pytest.mark.parametrize("prefix", ["admin", "/admin/"])
def test_malformed_prefix_is_refused(prefix: str) -> None:
    """A prefix must start with / and not end with one."""
    with pytest.raises(DeclarationError, match="prefix"):
        App("bad").router(prefix)


def test_router_route_clashing_with_an_app_route_is_refused() -> None:
    """A router's route at a path the app already serves fails at declaration."""
    app = App("clash")

    @app.route("/api/x")
    async def x() -> None: ...

    api = app.router("/api")
    with pytest.raises(DeclarationError, match="already served"):

        @api.route("/x")
        async def y() -> None: ...

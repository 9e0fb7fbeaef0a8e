"""The OpenAPI document at /openapi.json and the interactive page at /docs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.responses import Response

from framework import App
from framework.gateway.auth import APIKeyAuth, JWTAuth, JWTKey, Principal
from framework.gateway.throttle import Throttle
from tests.gateway.helpers import client


class Order(BaseModel):
    id: str
    total: float


class Receipt(BaseModel):
    order: Order
    paid: bool


def openapi_app() -> App:
    app = App("shop")
    keys = APIKeyAuth({"k": "me"}, header="X-Key")

    @app.route("/orders", methods=["POST"], status_code=202, auth=keys)
    async def create_order(order: Order, principal: Principal, dry_run: bool = False) -> Receipt:
        """Place an order."""
        return Receipt(order=order, paid=not dry_run)

    @app.route("/orders/{order_id:int}", throttle=Throttle(rate=5))
    async def get_order(order_id: int, tag: list[str] | None = None) -> dict[str, Any]:
        return {"id": order_id}

    @app.route("/orders/{order_id}", version="v2", auth=JWTAuth(JWTKey("x" * 32, "HS256")))
    async def get_order_v2(order_id: str) -> str:
        return order_id

    @app.route("/orders/{order_id}", methods=["DELETE"])
    async def delete_order(order_id: int) -> None:
        return None

    @app.route("/raw")
    async def raw() -> Response:
        return Response(b"")

    return app


async def document() -> dict[str, Any]:
    async with client(openapi_app()) as c:
        r = await c.get("/openapi.json")
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


async def test_document_lists_every_route_with_plain_path_templates() -> None:
    """Each route appears under its full path, convertors stripped, with its methods."""
    doc = await document()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "shop"
    assert set(doc["paths"]) == {"/orders", "/orders/{order_id}", "/v2/orders/{order_id}", "/raw"}
    assert set(doc["paths"]["/orders/{order_id}"]) == {"get", "delete"}
    assert "/metrics" not in doc["paths"]
    assert not any(p.startswith("/_framework") for p in doc["paths"])


async def test_body_and_response_models_are_pydantic_schemas_in_components() -> None:
    """The request body and the return annotation are described by pydantic's JSON schemas."""
    doc = await document()
    op = doc["paths"]["/orders"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Order"}
    assert op["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Receipt"
    }
    schemas = doc["components"]["schemas"]
    assert schemas["Order"]["required"] == ["id", "total"]
    assert schemas["Receipt"]["properties"]["order"] == {"$ref": "#/components/schemas/Order"}
    assert op["summary"] == "Place an order."


async def test_path_and_query_parameters_are_typed_and_principal_is_not_one() -> None:
    """Path parameters are required, query ones only without default; Principal is omitted."""
    doc = await document()
    post = {p["name"]: p for p in doc["paths"]["/orders"]["post"]["parameters"]}
    assert post == {
        "dry_run": {
            "name": "dry_run",
            "in": "query",
            "required": False,
            "schema": {"type": "boolean"},
        }
    }
    get = {p["name"]: p for p in doc["paths"]["/orders/{order_id}"]["get"]["parameters"]}
    assert get["order_id"]["in"] == "path"
    assert get["order_id"]["required"] is True
    assert get["order_id"]["schema"] == {"type": "integer"}
    assert get["tag"]["schema"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}}


async def test_authorizers_are_security_schemes_and_errors_are_listed() -> None:
    """Authorized routes name their security scheme and list 401, 403, 422 and 429."""
    doc = await document()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["APIKeyAuth1"] == {"type": "apiKey", "in": "header", "name": "X-Key"}
    assert schemes["JWTAuth2"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    post = doc["paths"]["/orders"]["post"]
    assert post["security"] == [{"APIKeyAuth1": []}]
    assert {"401", "403", "422", "429"} <= set(post["responses"])
    assert "security" not in doc["paths"]["/orders/{order_id}"]["delete"]


async def test_versions_are_tags_and_operation_ids_differ() -> None:
    """Each version's routes carry its tag and operation ids are unique across versions."""
    doc = await document()
    assert [t["name"] for t in doc["tags"]] == ["unversioned", "v2"]
    v2 = doc["paths"]["/v2/orders/{order_id}"]["get"]
    assert v2["tags"] == ["v2"]
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert v2["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}


async def test_none_and_response_results_are_described_without_a_schema() -> None:
    """A None result documents 204 and a Response result documents no schema."""
    doc = await document()
    assert doc["paths"]["/orders/{order_id}"]["delete"]["responses"]["204"] == {
        "description": "No content"
    }
    assert "content" not in doc["paths"]["/raw"]["get"]["responses"]["200"]


async def test_docs_page_is_served_from_the_package_without_external_scripts() -> None:
    """/docs is HTML that loads openapi.json from this server and nothing from a CDN."""
    async with client(openapi_app()) as c:
        r = await c.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "openapi.json" in r.text
    assert "https://" not in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]


async def test_openapi_off_serves_neither_and_app_routes_win() -> None:
    """openapi = False drops both endpoints; an app's own /docs route replaces the page."""
    app = openapi_app()

    @app.route("/docs")
    async def own_docs() -> str:
        return "mine"

    async with client(app) as c:
        assert (await c.get("/docs")).text == "mine"
    app.openapi = False
    async with client(app) as c:
        assert (await c.get("/openapi.json")).status_code == 404

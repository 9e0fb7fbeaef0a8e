"""Numbers in request bodies: NaN, Infinity and 1e400 are refused, booleans are not numbers."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field

from framework import App
from framework.cli.ops import parse_body
from framework.codec import encode
from framework.exceptions import InvalidMessageError
from framework.testing import TestApp


class Order(BaseModel):
    id: str
    total: float
    items: list[float] = []
    count: int = 0


class Measurement(BaseModel):
    model_config = ConfigDict(allow_inf_nan=True)

    value: float


class Reading(BaseModel):
    value: float = Field(allow_inf_nan=True)


def make_app() -> App:
    """An app queueing orders, and routes whose models ask for NaN and Infinity."""
    app = App("numbers")

    @app.route("/orders", methods=["POST"], status_code=202)
    async def create(order: Order) -> dict[str, str]:
        await app.send("orders", order)
        return {"accepted": order.id}

    @app.route("/anything", methods=["POST"], status_code=202)
    async def anything(body: dict[str, Any]) -> dict[str, str]:
        await app.send("orders", body)
        return {"accepted": "yes"}

    @app.route("/measurements", methods=["POST"])
    async def measure(m: Measurement) -> str:
        return repr(m.value)

    @app.route("/readings", methods=["POST"])
    async def read(r: Reading) -> str:
        return repr(r.value)

    app.queue("orders")
    return app


JSON = {"content-type": "application/json"}


async def post(path: str, content: bytes | str) -> tuple[httpx.Response, int]:
    """POST ``content`` as JSON to ``path`` of a fresh numbers app; return the response and
    how many messages the orders queue holds afterwards."""
    async with TestApp(make_app(), workers=False) as t:
        r = await t.http.post(path, content=content, headers=JSON)
        depth = (await t.stats())["orders"].depth
    return r, depth


@pytest.mark.parametrize(
    ("content", "loc"),
    [
        (b'{"id":"a","total":NaN}', ["body", "total"]),
        (b'{"id":"a","total":Infinity}', ["body", "total"]),
        (b'{"id":"a","total":-Infinity}', ["body", "total"]),
        (b'{"id":"a","total":1e400}', ["body", "total"]),
        (b'{"id":"a","total":1,"items":[1,2,-1E+999]}', ["body", "items", 2]),
    ],
)
async def test_non_finite_numbers_in_a_model_body_are_422(content: bytes, loc: list[Any]) -> None:
    """A body number that is NaN, infinite or past float's range is 422 and nothing is queued."""
    r, depth = await post("/orders", content)
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == loc
    assert error["type"] == "finite_number"
    assert "finite" in error["msg"]
    assert depth == 0


@pytest.mark.parametrize(
    "content", [b'{"total":NaN}', b'{"x":{"y":[Infinity]}}', b'{"total":1e400}']
)
async def test_non_finite_numbers_in_an_untyped_body_are_422(content: bytes) -> None:
    """A dict body gets the same check: NaN would otherwise be queued (or fail with a 500)."""
    r, depth = await post("/anything", content)
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "finite_number"
    assert depth == 0


@pytest.mark.parametrize("path", ["/measurements", "/readings"])
@pytest.mark.parametrize(("token", "value"), [("NaN", math.nan), ("-Infinity", -math.inf)])
async def test_a_model_that_allows_inf_nan_gets_them(path: str, token: str, value: float) -> None:
    """allow_inf_nan=True on the model or the field lets NaN and Infinity through."""
    r, _ = await post(path, f'{{"value":{token}}}')
    assert r.status_code == 200
    assert r.text == repr(value)


async def test_finite_numbers_and_numbers_in_strings_are_untouched() -> None:
    """Ordinary exponents, 'NaN' inside strings and tiny numbers are accepted as sent."""
    app = make_app()
    async with TestApp(app, workers=False) as t:
        r = await t.http.post(
            "/orders",
            content=b'{"id":"NaN Infinity 1e400","total":1.5e300,"items":[1e-400]}',
            headers=JSON,
        )
        [message] = await t.backend.receive("orders", limit=1, wait=0)
    assert r.status_code == 202, r.text
    assert Order.model_validate_json(message.body) == Order(
        id="NaN Infinity 1e400", total=1.5e300, items=[0.0]
    )


@pytest.mark.parametrize(
    ("content", "loc"),
    [
        (b'{"id":"a","total":false}', ["body", "total"]),
        (b'{"id":"a","total":1,"count":true}', ["body", "count"]),
        (b'{"id":"a","total":1,"items":[1,true]}', ["body", "items", 1]),
    ],
)
async def test_a_boolean_for_a_number_is_422(content: bytes, loc: list[Any]) -> None:
    """false for a number field is refused, as the OpenAPI document (type: number) says."""
    r, depth = await post("/orders", content)
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == loc
    assert "boolean" in error["msg"]
    assert depth == 0


def test_a_model_holding_nan_is_not_sent_as_null() -> None:
    """pydantic writes NaN as null; encode refuses rather than change the value."""
    with pytest.raises(TypeError, match="NaN or Infinity"):
        encode(Measurement(value=math.nan))


def test_a_model_asking_for_nan_as_strings_is_sent_so() -> None:
    """A model with ser_json_inf_nan='strings' is sent as it asks."""

    class Loud(BaseModel):
        model_config = ConfigDict(allow_inf_nan=True, ser_json_inf_nan="strings")
        value: float

    assert encode(Loud(value=math.inf)) == (b'{"value":"Infinity"}', "application/json")


@pytest.mark.parametrize("value", [math.nan, math.inf, [1.0, -math.inf]])
async def test_non_finite_attributes_are_refused(value: Any) -> None:
    """An attribute number must be finite: SQS and JSON have no NaN."""
    app = make_app()
    async with TestApp(app, workers=False):
        with pytest.raises(InvalidMessageError, match="must be finite"):
            await app.send("orders", {"id": 1}, attributes={"x": value})


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e400", "[1, NaN]"])
def test_the_cli_refuses_non_json_numbers(text: str) -> None:
    """`framework send q NaN` is refused with a reason (quote it to send text), never sent as
    a float JSON cannot carry."""
    with pytest.raises(InvalidMessageError, match="not a finite number"):
        parse_body(text)


def test_the_cli_still_parses_json() -> None:
    """Finite JSON is still parsed as JSON."""
    assert parse_body('{"total": 1.5e3}') == {"total": 1500.0}


@pytest.mark.parametrize("query", ["min=nan", "min=inf", "min=-Infinity", "many=1&many=nan"])
async def test_non_finite_query_parameters_are_422(query: str) -> None:
    """pydantic reads 'nan' and 'inf' as floats; a float query parameter refuses them."""
    app = App("query")

    @app.route("/search")
    async def search(min: float = 0.0, many: list[float] | None = None) -> dict[str, Any]:
        return {"min": min, "many": many}

    async with TestApp(app, workers=False) as t:
        r = await t.http.get(f"/search?{query}")
        ok = await t.http.get("/search?min=1.5&many=2")
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["type"] == "finite_number"
    assert error["loc"][0] == "query"
    assert ok.json() == {"min": 1.5, "many": [2.0]}

"""Tests for framework.binding: which parameter gets the body, context, mail, request, path."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel
from starlette.requests import Request

from framework.binding import Binder, PoisonBodyError, bind
from framework.codec import JSON, OCTETS, TEXT, encode
from framework.context import Context
from framework.exceptions import DeclarationError
from framework.smtp.parsing import Email


class Order(BaseModel):
    """A body model for binding tests."""

    id: str
    total: float


class Opaque:
    """A plain class pydantic has no schema for."""


def sources(binder: Binder) -> dict[str, str]:
    """Return each bound parameter's source, by parameter name."""
    return {p.name: p.source for p in binder.params}


# --- queue handlers -------------------------------------------------------------------------


def test_model_parameter_gets_the_body() -> None:
    """A pydantic-model parameter is the body, validated by an adapter."""

    async def handler(order: Order) -> None: ...

    binder = bind(handler, kind="queue")
    assert binder.body is not None
    assert binder.body.name == "order"
    assert binder.body.annotation is Order
    assert binder.body_adapter is not None


def test_context_parameter_gets_the_context_beside_the_body() -> None:
    """``ctx: Context`` is bound to the context wherever it stands, and the other is the body."""

    async def handler(ctx: Context, order: Order) -> None: ...

    binder = bind(handler, kind="queue")
    assert sources(binder) == {"ctx": "context", "order": "body"}
    assert binder.param("context") is not None


@pytest.mark.parametrize("annotation", [str, bytes, dict, list[int], int])
def test_plain_type_parameter_gets_the_body(annotation: Any) -> None:
    """A str, bytes, dict, list or int parameter is the body."""

    async def handler(body: Any) -> None: ...

    handler.__annotations__["body"] = annotation
    binder = bind(handler, kind="queue")
    assert binder.body is not None
    assert binder.body.annotation == annotation


def test_unannotated_parameter_gets_the_raw_body() -> None:
    """A parameter without annotation is the body, decoded by content type without validation."""

    async def handler(body):  # type: ignore[no-untyped-def]
        ...

    binder = bind(handler, kind="queue")
    assert binder.body is not None
    assert binder.body.annotation is Any
    assert binder.body_adapter is None


def test_handler_without_parameters_binds_nothing() -> None:
    """A handler taking no parameters has no body and decodes to None."""

    async def handler() -> None: ...

    binder = bind(handler, kind="queue")
    assert binder.params == ()
    assert binder.decode(b"anything", TEXT) is None


def test_sync_handler_is_bound_and_marked_sync() -> None:
    """A plain function is accepted and marked not async."""

    def handler(order: Order) -> None: ...

    assert not bind(handler, kind="queue").is_async
    assert bind(_async_handler, kind="queue").is_async


async def _async_handler(order: Order) -> None: ...


def test_second_body_parameter_is_refused_naming_both() -> None:
    """Two body candidates are refused, naming the handler and both parameters."""

    async def handler(order: Order, other: Order) -> None: ...

    with pytest.raises(DeclarationError, match=r"handler.*'other'.*already 'order'"):
        bind(handler, kind="queue")


def test_parameter_with_default_after_body_is_still_refused() -> None:
    """Only one body: a second plain parameter is refused even with a default."""

    async def handler(order: Order, retries: int = 3) -> None: ...

    with pytest.raises(DeclarationError, match="'retries' cannot be bound"):
        bind(handler, kind="queue")


def test_var_positional_parameters_are_refused() -> None:
    """``*args`` cannot be bound and is refused at decoration."""

    async def handler(*args: Any) -> None: ...

    with pytest.raises(DeclarationError, match=r"\*args and \*\*kwargs cannot be bound"):
        bind(handler, kind="queue")


def test_var_keyword_parameters_are_refused() -> None:
    """``**kwargs`` cannot be bound and is refused at decoration."""

    async def handler(order: Order, **kwargs: Any) -> None: ...

    with pytest.raises(DeclarationError, match=r"\*args and \*\*kwargs"):
        bind(handler, kind="queue")


def test_unresolvable_annotation_is_refused_naming_the_handler() -> None:
    """An annotation that names nothing importable is refused with the handler's name."""

    async def handler(order: NoSuchModel) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(DeclarationError, match="handler: cannot resolve its annotations"):
        bind(handler, kind="queue")


def test_annotation_pydantic_cannot_validate_is_refused() -> None:
    """A body type pydantic has no schema for is refused at decoration, not on the first message."""

    async def handler(body: Any) -> None: ...

    handler.__annotations__["body"] = Opaque
    with pytest.raises(DeclarationError, match="pydantic cannot validate"):
        bind(handler, kind="queue")


def test_non_callable_handler_is_refused() -> None:
    """Binding something that is not a function fails with a DeclarationError."""
    with pytest.raises(DeclarationError, match="a handler must be a function"):
        bind(42, kind="queue")  # type: ignore[arg-type]


# --- email handlers -------------------------------------------------------------------------


def test_email_handler_gets_mail_and_context() -> None:
    """An email handler's ``Email`` parameter gets the mail and ``Context`` the context."""

    async def handler(mail: Email, ctx: Context) -> None: ...

    binder = bind(handler, kind="email")
    assert sources(binder) == {"mail": "mail", "ctx": "context"}
    assert binder.body is None


def test_email_handler_without_email_parameter_is_refused() -> None:
    """An @on_email handler must take a parameter annotated ``Email``."""

    async def handler(mail: str) -> None: ...

    with pytest.raises(DeclarationError, match="needs a parameter annotated Email"):
        bind(handler, kind="email")


def test_email_handler_with_extra_body_parameter_is_refused() -> None:
    """An email handler cannot also take a body."""

    async def handler(mail: Email, extra: str) -> None: ...

    with pytest.raises(DeclarationError, match="'extra' cannot be bound"):
        bind(handler, kind="email")


# --- decoding -------------------------------------------------------------------------------


def binder_for(annotation: Any) -> Binder:
    """Bind a queue handler whose body parameter has ``annotation``."""

    async def handler(body: Any) -> None: ...

    if annotation is not None:
        handler.__annotations__["body"] = annotation
    else:
        del handler.__annotations__["body"]
    return bind(handler, kind="queue")


def test_model_body_is_validated_from_json() -> None:
    """A JSON body is validated into the handler's model."""
    order = binder_for(Order).decode(b'{"id": "o1", "total": "9.5"}', JSON)
    assert order == Order(id="o1", total=9.5)


def test_invalid_json_is_poison() -> None:
    """A body that is not JSON is poison for a model handler."""
    with pytest.raises(PoisonBodyError) as info:
        binder_for(Order).decode(b"{not json", JSON)
    assert info.value.error_type == "ValidationError"
    assert "json" in str(info.value).lower()


def test_validation_failure_is_poison_naming_the_field() -> None:
    """A body failing validation is poison whose message names the bad field."""
    with pytest.raises(PoisonBodyError, match="total") as info:
        binder_for(Order).decode(b'{"id": "o1", "total": "lots"}', JSON)
    assert info.value.error_type == "ValidationError"


def test_missing_field_is_poison_naming_the_field() -> None:
    """A body missing a required field is poison whose message names the field."""
    with pytest.raises(PoisonBodyError, match=r"total: Field required"):
        binder_for(Order).decode(b'{"id": "o1"}', JSON)


def test_poison_message_summarises_at_most_five_errors() -> None:
    """A body with many errors gets a short message that says how many more there were."""
    with pytest.raises(PoisonBodyError, match=r"\(and 2 more\)"):
        binder_for(list[int]).decode(b'["a","b","c","d","e","f","g"]', JSON)


def test_str_body_with_text_content_type_is_the_text() -> None:
    """A text body for a ``str`` handler is decoded as UTF-8, not parsed as JSON."""
    assert binder_for(str).decode("héllo {".encode(), TEXT) == "héllo {"


@pytest.mark.parametrize("annotation", [str | None, Literal["a", "b"]])
def test_text_body_validates_against_str_like_annotations(annotation: Any) -> None:
    """A text body for a ``str | None`` or ``Literal`` handler is validated as the text it is."""
    data, content_type = encode("a")
    assert binder_for(annotation).decode(data, content_type) == "a"


def test_str_body_with_json_content_type_is_the_json_string() -> None:
    """A JSON string body for a ``str`` handler is the string it encodes."""
    assert binder_for(str).decode(b'"hello"', JSON) == "hello"


def test_str_body_that_is_not_utf8_is_poison() -> None:
    """Undecodable text is poison with the decoding error's type."""
    with pytest.raises(PoisonBodyError) as info:
        binder_for(str).decode(b"\xff\xfe", TEXT)
    assert info.value.error_type == "UnicodeDecodeError"


def test_bytes_body_is_passed_raw_whatever_the_content_type() -> None:
    """A ``bytes`` handler receives the body unchanged, even for JSON."""
    assert binder_for(bytes).decode(b"\x00\xff", OCTETS) == b"\x00\xff"
    assert binder_for(bytes).decode(b'{"a":1}', JSON) == b'{"a":1}'


def test_dict_body_is_parsed_json() -> None:
    """A ``dict`` handler gets the parsed JSON object."""
    assert binder_for(dict).decode(b'{"a": [1, 2]}', JSON) == {"a": [1, 2]}


def test_unannotated_body_is_decoded_by_content_type() -> None:
    """Without annotation: JSON is parsed, text is str, anything else stays bytes."""
    binder = binder_for(None)
    assert binder.decode(b'{"a": 1}', JSON) == {"a": 1}
    assert binder.decode(b"plain", TEXT) == "plain"
    assert binder.decode(b"\x01\x02", OCTETS) == b"\x01\x02"


def test_unannotated_body_with_invalid_json_is_poison() -> None:
    """Without annotation, a JSON content type with a malformed body is poison."""
    with pytest.raises(PoisonBodyError) as info:
        binder_for(None).decode(b"{oops", JSON)
    assert info.value.error_type == "JSONDecodeError"


# --- routes ---------------------------------------------------------------------------------


def test_route_path_parameters_are_bound_by_template_name() -> None:
    """Parameters named in the path template, typed or not, come from the path."""

    async def handler(shop: str, order_id: int) -> None: ...

    binder = bind(handler, kind="route", path="/shops/{shop}/orders/{order_id:int}")
    assert sources(binder) == {"shop": "path", "order_id": "path"}


def test_route_plain_parameters_outside_the_path_are_query_parameters() -> None:
    """Scalar parameters not in the path are query parameters."""

    async def handler(item: str, limit: int = 10, q: str | None = None) -> None: ...

    binder = bind(handler, kind="route", path="/items/{item}", methods=("GET",))
    assert sources(binder) == {"item": "path", "limit": "query", "q": "query"}
    limit = next(p for p in binder.params if p.name == "limit")
    assert not limit.required
    assert limit.default == 10


def test_route_model_parameter_is_the_request_body_on_post() -> None:
    """A model parameter of a POST route is the request body."""

    async def handler(order: Order, request: Request) -> None: ...

    binder = bind(handler, kind="route", path="/orders", methods=("POST",))
    assert sources(binder) == {"order": "body", "request": "request"}
    assert binder.body_adapter is not None
    assert binder.body_adapter.validate_json(b'{"id": "a", "total": 1}') == Order(id="a", total=1)


def test_route_body_on_get_is_refused() -> None:
    """A request body on a GET-only route is refused, naming the parameter and methods."""

    async def handler(order: Order) -> None: ...

    with pytest.raises(DeclarationError, match=r"'order' is a request body.*only accepts GET"):
        bind(handler, kind="route", path="/orders", methods=("GET",))


def test_route_path_parameter_missing_from_handler_is_refused() -> None:
    """A path placeholder with no parameter of that name is refused, naming it."""

    async def handler(shop: str) -> None: ...

    with pytest.raises(DeclarationError, match=r"\{order_id\} but the handler"):
        bind(handler, kind="route", path="/shops/{shop}/orders/{order_id}")

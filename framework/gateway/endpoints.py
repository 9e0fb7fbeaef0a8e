"""One RouteSpec as an endpoint: validate path, query and body, call the handler, send its result.

Everything that depends only on the route is worked out once, when the gateway is built: the
validator of path and query parameters (one pydantic-core call per request for all of them),
the body's validator, which parameter gets the request, whether the handler runs in a thread.
"""

from __future__ import annotations

import copy
import functools
import typing
from types import NoneType, UnionType
from typing import Any, NotRequired
from urllib.parse import parse_qsl

import anyio.to_thread
from pydantic import TypeAdapter, ValidationError
from pydantic_core import SchemaValidator
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from typing_extensions import TypedDict

from framework.binding import Param
from framework.codec import allows_inf_nan, find_non_finite, is_finite_value
from framework.exceptions import DeclarationError
from framework.gateway.auth import Principal
from framework.gateway.errors import (
    FieldError,
    RequestValidationError,
    field_errors,
    missing_body,
    non_finite,
    non_finite_parameter,
)
from framework.gateway.inputs import check_json_content_type, read_body, replay
from framework.gateway.responses import send_result
from framework.gateway.routing import Endpoint
from framework.registry import RouteSpec

__all__ = ["Parameters", "is_principal", "route_endpoint"]

_REPEATABLE = (list, tuple, set, frozenset)
_IMMUTABLE = (NoneType, bool, int, float, str, bytes, tuple, frozenset)


class Parameters:
    """Validates a route's path, query and header parameters together, typed by annotations.

    Args:
        params: The handler's parameters whose source is ``"path"``, ``"query"`` or
            ``"header"``.
        where: The handler's name, for errors.

    Raises:
        DeclarationError: If pydantic cannot validate one of the annotations.
    """

    def __init__(self, params: list[Param], where: str) -> None:
        self.sources = {p.name: p.source for p in params}
        self.path_names = [p.name for p in params if p.source == "path"]
        self.query_names = {p.name for p in params if p.source == "query"}
        self.repeated = {p.name for p in params if p.source == "query" and _repeats(p.annotation)}
        headers = [p for p in params if p.source == "header"]
        self.header_names = {p.name: p.alias or p.name for p in headers}
        self.headers = {v.encode("latin-1"): k for k, v in self.header_names.items()}
        self.repeated_headers = {p.name for p in headers if _repeats(p.annotation)}
        self.defaults = {p.name: p.default for p in params if not p.required}
        # pydantic reads "nan" and "inf" as floats; like a body's, they are refused (422).
        self.finite = [p.name for p in params if _wants_finite_float(p.annotation)]
        # Mutable defaults are copied per request, so a handler appending to one cannot leak.
        self.fresh = [k for k, v in self.defaults.items() if not isinstance(v, _IMMUTABLE)]
        fields = {p.name: p.annotation if p.required else NotRequired[p.annotation] for p in params}
        try:
            # Dynamic TypedDict: mypy only accepts a literal dict of fields.
            shape = TypedDict(f"{where}_params", fields)  # type: ignore[misc]
            self.validator = _validator(TypeAdapter(shape))
        except Exception as exc:
            raise DeclarationError(
                f"{where}: pydantic cannot validate its parameters ({exc})"
            ) from exc

    def validate(self, scope: Scope) -> tuple[dict[str, Any], list[FieldError]]:
        """Return the parameters' values from the request, or the field errors."""
        raw: dict[str, Any] = {}
        if self.path_names:
            path_params = scope["path_params"]
            for name in self.path_names:
                raw[name] = path_params[name]
        query_string: bytes = scope["query_string"]
        if self.query_names and query_string:
            repeated = self.repeated
            for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
                if key in repeated:
                    raw.setdefault(key, []).append(value)
                elif key in self.query_names:
                    raw[key] = value
        if self.headers:
            self._read_headers(scope, raw)
        try:
            values: dict[str, Any] = self.validator.validate_python(raw)
        except ValidationError as exc:
            errors = field_errors(exc, self.sources)
            if self.header_names:
                for error in errors:  # a header's error names the header, not the parameter
                    if error["loc"][0] == "header":
                        error["loc"][1] = self.header_names[error["loc"][1]]
            return {}, errors
        if self.finite:
            errors = [
                non_finite_parameter(self.sources[name], self.header_names.get(name, name))
                for name in self.finite
                if name in values and not is_finite_value(values[name])
            ]
            if errors:
                return {}, errors
        if self.defaults:
            values = {**self.defaults, **values}
            for name in self.fresh:
                if name not in raw:
                    values[name] = copy.copy(values[name])
        return values, []

    def _read_headers(self, scope: Scope, raw: dict[str, Any]) -> None:
        # ASGI servers lowercase header names, but the scope is not bound to, so compare again.
        found: dict[str, list[str]] = {}
        wanted = self.headers
        for key, value in scope["headers"]:
            name = wanted.get(key) or wanted.get(key.lower())
            if name is not None:
                found.setdefault(name, []).append(value.decode("latin-1"))
        for name, values in found.items():
            raw[name] = values if name in self.repeated_headers else ", ".join(values)


def route_endpoint(spec: RouteSpec, max_body_size: int, *, authorized: bool = False) -> Endpoint:
    """Return the endpoint serving ``spec``.

    Args:
        spec: The route.
        max_body_size: The largest request body accepted, in bytes.
        authorized: Whether an authorizer puts a ``Principal`` in the scope's state first.

    Raises:
        DeclarationError: If the handler takes something a route cannot give (a Context, or
            a ``Principal`` on a route without ``auth=``).
    """
    binder = spec.binder
    where = binder.handler_name
    for p in binder.params:
        if p.source not in ("path", "query", "header", "body", "request"):
            raise DeclarationError(
                f"{where}: parameter {p.name!r} ({p.source}) cannot be bound on an HTTP route; "
                "routes take path, query and header parameters, a body and `request: Request`"
            )
    # Binding sees a Principal as a query parameter; here it is the authorizer's answer.
    principal_name = next((p.name for p in binder.params if is_principal(p.annotation)), None)
    if principal_name is not None and not authorized:
        raise DeclarationError(
            f"{where}: parameter {principal_name!r} is the authorized Principal but the route "
            "has no auth=; add one (see the gateway's Authorizers docs)"
        )
    params = [
        p
        for p in binder.params
        if p.source in ("path", "query", "header") and p.name != principal_name
    ]
    parameters = Parameters(params, where) if params else None
    body = binder.body
    body_name = body.name if body is not None else ""
    body_required = body is not None and body.required
    body_default = None if body is None else body.default
    validate_body: typing.Callable[[bytes], Any] = _no_body
    if body is not None:
        if binder.body_adapter is None:  # binding never makes an Any or bytes parameter a body
            raise DeclarationError(f"{where}: the request body {body.name!r} needs a type")
        body_validator = _validator(binder.body_adapter)
        validate_body = body_validator.validate_json
    # NaN, Infinity and 1e400 parse, but cannot be sent on as JSON: refused unless asked for.
    finite_body = body is not None and not allows_inf_nan(body.annotation)
    request_param = binder.param("request")
    request_name = request_param.name if request_param is not None else None
    status = spec.status_code
    handler = spec.handler
    is_async = binder.is_async
    limit = max_body_size

    async def endpoint(scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        if parameters is not None:
            kwargs, errors = parameters.validate(scope)
        else:
            kwargs, errors = {}, []
        if body is not None:
            content_type = content_length = None
            for key, value in scope["headers"]:
                if key == b"content-type":
                    content_type = value
                elif key == b"content-length":
                    content_length = value
            check_json_content_type(content_type)
            raw = await read_body(receive, limit, content_length)
            if raw:
                try:
                    value = kwargs[body_name] = validate_body(raw)
                except ValidationError as exc:
                    errors += field_errors(exc, "body")
                else:
                    if finite_body and (loc := find_non_finite(raw, value)) is not None:
                        errors.append(non_finite(loc))
                    if b"true" in raw or b"false" in raw:
                        errors += _booleans_as_numbers(body_validator, raw)
            elif body_required:
                errors.append(missing_body())
            else:
                kwargs[body_name] = body_default
            if request_name is not None:
                receive = replay(raw, receive)
        if errors:
            raise RequestValidationError(errors)
        if principal_name is not None:
            kwargs[principal_name] = scope["state"]["principal"]
        if request_name is not None:
            scope.setdefault("state", {})["request_id"] = request_id
            kwargs[request_name] = Request(scope, receive)
        if is_async:
            result = await handler(**kwargs)
        else:
            result = await anyio.to_thread.run_sync(functools.partial(handler, **kwargs))
        await send_result(scope, receive, send, result, status, request_id)

    return endpoint


_NUMBER_TYPES = ("int_type", "float_type")


def _booleans_as_numbers(validator: SchemaValidator, raw: bytes) -> list[FieldError]:
    """Return an error for each JSON ``true``/``false`` given where the body wants a number.

    pydantic's lax mode reads ``false`` as ``0.0`` for a ``float`` field, while the OpenAPI
    document says ``number``: a client sending a boolean there has a bug worth a 422. Strict
    validation finds them (its other refusals, such as ``"3"`` for an int, are left to lax).
    """
    try:
        validator.validate_json(raw, strict=True)
    except ValidationError as exc:
        return [
            {
                "loc": ["body", *error["loc"]],
                "msg": "Input should be a number, not a boolean",
                "type": error["type"],
            }
            for error in exc.errors(include_url=False, include_context=False)
            if error["type"] in _NUMBER_TYPES and isinstance(error.get("input"), bool)
        ]
    return []


def _no_body(raw: bytes) -> Any:
    raise AssertionError("this route takes no body")


def _validator(adapter: TypeAdapter[Any]) -> SchemaValidator:
    validator = adapter.validator
    if not isinstance(validator, SchemaValidator):  # a deferred build: complete it now
        adapter.rebuild(force=True, raise_errors=True)
        validator = adapter.validator
    assert isinstance(validator, SchemaValidator)
    return validator


def is_principal(annotation: Any) -> bool:
    """True for ``Principal`` and ``Principal | None``: the authorizer's answer, not a query."""
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        return Principal in typing.get_args(annotation)
    return annotation is Principal


def _wants_finite_float(annotation: Any) -> bool:
    """True for ``float``, also optional or in a list: ``nan`` and ``inf`` are refused for it."""
    if annotation is float:
        return True
    return any(_wants_finite_float(a) for a in typing.get_args(annotation))


def _repeats(annotation: Any) -> bool:
    """True for ``list[str]``-like annotations (optional too): they get every repeated value."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is UnionType:
        return any(_repeats(a) for a in typing.get_args(annotation) if a is not NoneType)
    origin = origin or annotation
    return isinstance(origin, type) and issubclass(origin, _REPEATABLE)

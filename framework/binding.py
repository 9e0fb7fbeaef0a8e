"""Handler signatures to binders: which parameter gets the body, the context, the mail, the request.

Binding is decided once, at decoration time, so a signature the framework cannot serve fails at
import with the handler's name, and the per-message work is a dict lookup and one validation.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from framework.codec import JSON, decode_any
from framework.exceptions import DeclarationError

__all__ = ["Binder", "Header", "Param", "PoisonBodyError", "bind"]


class _NoMail:
    """Stands for ``Email`` while the mail parser is not imported: no annotation is it."""


_PATH_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?}")
# RFC 9110 5.1: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True)
class Header:
    """Marks a route parameter as read from a request header, in ``Annotated[T, Header()]``.

    The header's name is the parameter's with underscores as hyphens (``x_request_source``
    reads ``X-Request-Source``) unless ``alias`` names it; either way it is matched without
    regard to case. The value is validated against ``T`` as a query parameter is: a required
    header that is missing, or a value that fails validation, is a 422 whose field error is at
    ``["header", "<name in lowercase>"]``. A ``list[str]`` parameter gets every value of a
    repeated header; any other type gets repeated values joined with ``", "`` (RFC 9110 5.3).

    Args:
        alias: The header's name, when it is not the parameter's (``"X-Trace"``).

    Raises:
        DeclarationError: From the route's decorator, for an alias that is not a valid header
            name, or ``Header()`` on a handler that is not a route.
    """

    alias: str | None = None

    def name_for(self, parameter: str) -> str:
        """Return the lowercase header name this marker reads for ``parameter``."""
        return (parameter.replace("_", "-") if self.alias is None else self.alias).lower()


class PoisonBodyError(Exception):
    """A body that can never be handled: undecodable or failing validation."""

    def __init__(self, message: str, *, error_type: str = "ValidationError") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True, slots=True)
class Param:
    """One bound parameter: its name, annotation, default and where its value comes from."""

    name: str
    annotation: Any
    default: Any
    source: str  # "body", "context", "mail", "request", "connection", "path", "query", "header"
    alias: str | None = None  # the lowercase header name, for source "header"

    @property
    def required(self) -> bool:
        """True when the parameter has no default."""
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class Binder:
    """How to call one handler: parameters by source, and the body's validator."""

    handler_name: str
    params: tuple[Param, ...]
    body: Param | None
    body_adapter: TypeAdapter[Any] | None
    is_async: bool

    def param(self, source: str) -> Param | None:
        """Return the first parameter taking its value from ``source``, if any."""
        return next((p for p in self.params if p.source == source), None)

    def decode(self, body: bytes, content_type: str) -> Any:
        """Decode and validate a message body for this handler.

        Raises:
            PoisonBodyError: If the body cannot be decoded or fails validation.
        """
        if self.body is None:
            return None
        annotation = self.body.annotation
        try:
            if annotation is bytes:
                return body
            if annotation is str and not content_type.startswith(JSON):
                return body.decode()
            if self.body_adapter is None:  # no annotation: JSON parsed, text as str, else bytes
                return decode_any(body, content_type)
            if content_type.startswith("text/"):
                # Text validates as a str (str | None, Literal["a"], constrained strings); text
                # that only makes sense as JSON (a model sent as text) is tried as JSON next.
                text = body.decode()
                try:
                    return self.body_adapter.validate_python(text)
                except ValidationError:
                    return self.body_adapter.validate_json(body)
        except ValidationError as exc:
            raise PoisonBodyError(_summarise(exc)) from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PoisonBodyError(str(exc), error_type=type(exc).__name__) from exc
        return self.decode_json(body)

    def decode_json(self, body: bytes) -> Any:
        """Validate a JSON ``body`` with the body parameter's validator (it must have one).

        ``decode``'s last step, and the dispatcher's per-message path for JSON bodies: the
        adapter's own validator, without ``TypeAdapter.validate_json``'s layer of keyword
        defaults.

        Raises:
            PoisonBodyError: If the body fails validation (invalid JSON included).
        """
        assert self.body_adapter is not None
        try:
            return self.body_adapter.validator.validate_json(body)
        except ValidationError as exc:
            raise PoisonBodyError(_summarise(exc)) from exc


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{loc}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


# Which handler kinds each special parameter can be given to, and what to use instead.
_SPECIAL_KINDS = {
    "context": ({"queue", "topic", "email"}, "a route has no message; use request: Request"),
    "mail": ({"email"}, "only an @on_email handler gets the mail"),
    "request": ({"route"}, "only a route has a request; use ctx: Context"),
    "connection": ({"websocket"}, "only a WebSocket handler has a connection"),
}


def _check_special(name: str, kind: str, param: str, special: str) -> None:
    kinds, instead = _SPECIAL_KINDS[special]
    if kind == "websocket" and special != "connection":
        instead = "a WebSocket handler gets the message and conn: Connection"
    if kind not in kinds:
        raise DeclarationError(f"{name}: parameter {param!r} cannot be bound: {instead}")


def bind(
    handler: Callable[..., Any],
    *,
    kind: str,
    path: str | None = None,
    methods: tuple[str, ...] = (),
) -> Binder:
    """Work out how to call ``handler`` for a ``kind``: "queue", "topic", "email", "route" or
    "websocket" (a parameter annotated ``Connection`` gets the connection; the first other
    one gets the validated message).

    Raises:
        DeclarationError: If a parameter cannot be bound, naming the handler and the parameter.
    """
    from starlette.requests import Request

    from framework.context import Context
    from framework.websocket import Connection

    # A parameter annotated Email needs the mail parser imported already (its annotation
    # resolves to the class): until then no handler can ask for a mail, and binding an HTTP
    # or queue handler leaves the parser (and the stdlib's email package) unloaded.
    parsing = sys.modules.get("framework.smtp.parsing")
    Email = parsing.Email if parsing is not None else _NoMail

    name = f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', handler)}"
    if not callable(handler):
        raise DeclarationError(f"{name}: a handler must be a function")
    try:
        hints = typing.get_type_hints(handler)
        extras = typing.get_type_hints(handler, include_extras=True)
    except (NameError, TypeError) as exc:
        raise DeclarationError(f"{name}: cannot resolve its annotations ({exc})") from exc
    signature = inspect.signature(handler)
    path_names = set(_PATH_PARAM.findall(path or ""))
    params: list[Param] = []
    body: Param | None = None
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DeclarationError(
                f"{name}: *args and **kwargs cannot be bound; name each parameter"
            )
        annotation, marker = _split_header(extras.get(p.name, Any))
        if marker is not None:
            params.append(_header_param(name, kind, p, annotation, marker))
            continue
        annotation = hints.get(p.name, Any)
        special = {
            Context: "context",
            Email: "mail",
            Request: "request",
            Connection: "connection",
        }.get(annotation)
        if special is not None:
            _check_special(name, kind, p.name, special)
            source = special
        elif kind == "route" and p.name in path_names:
            source = "path"
        elif kind == "route" and (not _is_body_type(annotation) or _is_scalar_list(annotation)):
            source = "query"
        elif body is None:
            source = "body"
        else:
            raise DeclarationError(
                f"{name}: parameter {p.name!r} cannot be bound: the body is already "
                f"{body.name!r}; annotate it as Context{', Email' if kind == 'email' else ''} "
                "or give it a default"
            )
        param = Param(p.name, annotation, p.default, source)
        params.append(param)
        if source == "body":
            body = param
    if kind == "email" and not any(p.source == "mail" for p in params):
        raise DeclarationError(f"{name}: an @on_email handler needs a parameter annotated Email")
    if kind == "email" and body is not None:
        raise DeclarationError(f"{name}: parameter {body.name!r} cannot be bound (mail is Email)")
    missing = path_names - {p.name for p in params if p.source == "path"}
    if missing:
        raise DeclarationError(
            f"{name}: path {path!r} has {{{', '.join(sorted(missing))}}} but the handler "
            "has no parameter of that name"
        )
    if kind == "route" and body is not None and not set(methods) & {"POST", "PUT", "PATCH"}:
        raise DeclarationError(
            f"{name}: parameter {body.name!r} is a request body but the route only accepts "
            f"{', '.join(methods)}"
        )
    adapter = None
    if body is not None and body.annotation not in (Any, bytes):
        try:
            adapter = TypeAdapter(body.annotation)
        except Exception as exc:
            raise DeclarationError(
                f"{name}: parameter {body.name!r}: pydantic cannot validate "
                f"{body.annotation!r} ({exc})"
            ) from exc
    return Binder(
        handler_name=name,
        params=tuple(params),
        body=body,
        body_adapter=adapter,
        is_async=inspect.iscoroutinefunction(handler),
    )


def _split_header(annotation: Any) -> tuple[Any, Header | None]:
    """Split ``Annotated[T, Header(), *rest]`` into ``Annotated[T, *rest]`` and the marker.

    A header keeps its other metadata (``Field(max_length=...)``) for validation; an annotation
    without a ``Header`` is returned as is, with no marker.
    """
    if typing.get_origin(annotation) is not typing.Annotated:
        return annotation, None
    base, *extras = typing.get_args(annotation)
    markers = [m for m in extras if isinstance(m, Header) or m is Header]
    if not markers:
        return base, None
    marker = markers[0] if isinstance(markers[0], Header) else Header()
    rest = [m for m in extras if not (isinstance(m, Header) or m is Header)]
    return (typing.Annotated[(base, *rest)] if rest else base), marker


def _header_param(
    name: str, kind: str, p: inspect.Parameter, annotation: Any, marker: Header
) -> Param:
    if kind != "route":
        raise DeclarationError(
            f"{name}: parameter {p.name!r} reads a request header, which only routes have"
        )
    header = marker.name_for(p.name)
    if not isinstance(marker.alias, str | None) or not _TOKEN.fullmatch(header):
        raise DeclarationError(
            f"{name}: parameter {p.name!r}: {marker.alias!r} is not a header name "
            "(letters, digits and !#$%&'*+.^_`|~-)"
        )
    return Param(p.name, annotation, p.default, "header", alias=header)


def _is_body_type(annotation: Any) -> bool:
    """True for annotations that only a request body can carry: models, dicts, lists (or None)."""
    origin = typing.get_origin(annotation) or annotation
    if origin is typing.Union or origin is types.UnionType:
        return any(_is_body_type(a) for a in typing.get_args(annotation) if a is not types.NoneType)
    if isinstance(origin, type):
        return issubclass(origin, BaseModel | Mapping | list | tuple | set)
    return False


def _is_scalar_list(annotation: Any) -> bool:
    """True for ``list[str]``, ``list[int] | None`` and the like: a route's repeated query key."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not types.NoneType]
    if origin is typing.Union or origin is types.UnionType:
        return len(args) == 1 and _is_scalar_list(args[0])
    return origin is list and len(args) == 1 and args[0] in _SCALARS


_SCALARS = (str, int, float, bool)

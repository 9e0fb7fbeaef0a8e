"""Handler signatures to binders: which parameter gets the body, the context, the mail, the request.

Binding is decided once, at decoration time, so a signature the framework cannot serve fails at
import with the handler's name, and the per-message work is a dict lookup and one validation.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from framework.codec import JSON, decode_any
from framework.exceptions import DeclarationError

__all__ = ["Binder", "Param", "PoisonBodyError", "bind"]

_PATH_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?}")


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
    source: str  # "body", "context", "mail", "request", "path", "query"

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
            return self.body_adapter.validate_json(body)
        except ValidationError as exc:
            raise PoisonBodyError(_summarise(exc)) from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PoisonBodyError(str(exc), error_type=type(exc).__name__) from exc

    def decode_request(self, raw: bytes) -> Any:
        """Validate an HTTP request body as JSON against the body parameter.

        Raises:
            ValidationError: With field errors, for malformed JSON too.
        """
        assert self.body is not None
        if self.body_adapter is None:
            return raw
        return self.body_adapter.validate_json(raw)


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{loc}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def bind(
    handler: Callable[..., Any],
    *,
    kind: str,
    path: str | None = None,
    methods: tuple[str, ...] = (),
) -> Binder:
    """Work out how to call ``handler`` for a ``kind``: "queue", "topic", "email" or "route".

    Raises:
        DeclarationError: If a parameter cannot be bound, naming the handler and the parameter.
    """
    from starlette.requests import Request

    from framework.context import Context
    from framework.smtp.parsing import Email

    name = f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', handler)}"
    if not callable(handler):
        raise DeclarationError(f"{name}: a handler must be a function")
    try:
        hints = typing.get_type_hints(handler)
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
        annotation = hints.get(p.name, Any)
        special = {Context: "context", Email: "mail", Request: "request"}.get(annotation)
        if special is not None:
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


def call_args(binder: Binder, values: Mapping[str, Any]) -> dict[str, Any]:
    """Return keyword arguments for the handler from values keyed by source."""
    return {p.name: values[p.source] for p in binder.params if p.source in values}

"""The OpenAPI 3.1 document at ``/openapi.json``, and the interactive page at ``/docs``.

The document is made from the RouteSpecs when it is first asked for, then kept: path, query and
header parameters typed by their annotations, the request body's and the response's JSON schemas
from pydantic, the authorizers as security schemes, and each version's routes tagged with it. The
page is a small HTML file shipped in the package (``static/docs.html``): no CDN, so it works on
machines without internet access.
"""

from __future__ import annotations

import re
import typing
from importlib import resources
from types import NoneType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_json
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from framework.gateway.auth import Authorizer
from framework.gateway.endpoints import is_principal
from framework.gateway.responses import JSON, send_bytes
from framework.registry import RouteSpec

if TYPE_CHECKING:
    from framework.registry import Registry

__all__ = ["DOCS_PATH", "OPENAPI_PATH", "OpenAPI", "document"]

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
_REF = "#/components/schemas/{model}"
_CONVERTOR = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*):[a-z]+}")
_FIELD_ERROR = {
    "type": "object",
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
    },
    "required": ["loc", "msg", "type"],
}
_ERROR = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}


class _Schemas:
    """JSON schemas with their ``$defs`` hoisted into ``components.schemas``."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {
            "Error": _ERROR,
            "ValidationError": {
                "type": "object",
                "properties": {"detail": {"type": "array", "items": _FIELD_ERROR}},
            },
        }

    def of(self, annotation: Any, mode: typing.Literal["validation", "serialization"]) -> Any:
        try:
            schema = TypeAdapter(annotation).json_schema(ref_template=_REF, mode=mode)
        except Exception:  # an annotation pydantic cannot describe is documented as anything
            return {}
        self.components.update(schema.pop("$defs", {}))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            # A model is named in components, as its nested models are, not inlined.
            self.components[annotation.__name__] = schema
            return {"$ref": _REF.format(model=annotation.__name__)}
        return schema


def _response(spec: RouteSpec, schemas: _Schemas) -> tuple[str, dict[str, Any]]:
    hints = typing.get_type_hints(spec.handler)
    returned = hints.get("return", Any)
    status = spec.status_code
    if returned is None or returned is NoneType:
        return str(204 if status == 200 else status), {"description": "No content"}
    if returned is str:
        content: dict[str, Any] = {"text/plain": {"schema": {"type": "string"}}}
    elif returned is bytes:
        content = {"application/octet-stream": {}}
    elif isinstance(returned, type) and issubclass(returned, Response):
        return str(status), {"description": "The handler's own response"}
    else:
        content = {"application/json": {"schema": schemas.of(returned, "serialization")}}
    return str(status), {"description": "Success", "content": content}


def _error(description: str, schema: str = "Error") -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _operation(
    spec: RouteSpec, method: str, schemas: _Schemas, security: dict[int, str]
) -> dict[str, Any]:
    binder = spec.binder
    params = []
    for p in binder.params:
        if p.source not in ("path", "query", "header") or is_principal(p.annotation):
            continue
        param: dict[str, Any] = {
            "name": p.alias if p.source == "header" and p.alias else p.name,
            "in": p.source,
            "required": p.source == "path" or p.required,
            "schema": schemas.of(p.annotation, "validation"),
        }
        params.append(param)
    op: dict[str, Any] = {
        "operationId": "_".join(filter(None, (spec.version, spec.name, method.lower()))),
        "summary": (spec.handler.__doc__ or spec.name).strip().splitlines()[0],
        "tags": [spec.version or "unversioned"],
        "parameters": params,
    }
    if binder.body is not None:
        schema = (
            {} if binder.body_adapter is None else schemas.of(binder.body.annotation, "validation")
        )
        op["requestBody"] = {
            "required": binder.body.required,
            "content": {"application/json": {"schema": schema}},
        }
    status, response = _response(spec, schemas)
    responses: dict[str, Any] = {status: response}
    if params or binder.body is not None:
        responses["422"] = _error("Invalid input", "ValidationError")
    if spec.auth is not None:
        responses["401"] = _error("Credentials missing")
        responses["403"] = _error("Credentials wrong")
        op["security"] = [{security[id(spec.auth)]: []}]
    if spec.auth is not None or spec.throttle is not None:
        responses["429"] = _error("Too many requests; see Retry-After")
    op["responses"] = responses
    return op


def document(registry: Registry) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of an app's routes.

    Args:
        registry: The app; its routes are valid (checked when they were declared).

    Returns:
        The document as JSON-ready data.
    """
    schemas = _Schemas()
    security: dict[int, str] = {}
    schemes: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for spec in registry.routes:
        if spec.auth is not None and id(spec.auth) not in security:
            authorizer: Authorizer = spec.auth
            name = f"{type(authorizer).__name__}{len(schemes) + 1}"
            security[id(spec.auth)] = name
            schemes[name] = authorizer.security_scheme()
        path = _CONVERTOR.sub(r"{\1}", spec.full_path)
        for method in spec.methods:
            paths.setdefault(path, {})[method.lower()] = _operation(spec, method, schemas, security)
    versions = sorted({spec.version or "unversioned" for spec in registry.routes})
    components: dict[str, Any] = {"schemas": dict(sorted(schemas.components.items()))}
    if schemes:
        components["securitySchemes"] = schemes
    return {
        "openapi": "3.1.0",
        "info": {"title": registry.name, "version": "0.1.0"},
        "tags": [{"name": v} for v in versions],
        "paths": paths,
        "components": components,
    }


class OpenAPI:
    """The endpoints of ``/openapi.json`` and ``/docs`` for an app; the document is made once.

    Args:
        registry: The app to describe.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._json: bytes | None = None
        self._page: bytes | None = None

    async def document(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """Serve ``GET /openapi.json``."""
        if self._json is None:
            self._json = to_json(document(self.registry))
        await send_bytes(send, 200, self._json, JSON, request_id)

    async def page(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """Serve ``GET /docs``, the interactive page, with a policy allowing only this origin."""
        if self._page is None:
            self._page = (
                resources.files("framework.gateway") / "static" / "docs.html"
            ).read_bytes()
        csp = b"default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
        headers = [(b"content-security-policy", csp)]
        await send_bytes(send, 200, self._page, b"text/html; charset=utf-8", request_id, headers)

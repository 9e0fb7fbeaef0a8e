"""One RouteSpec as a starlette endpoint: bind path, query and body, validate, call, render."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ValidationError, create_model
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from framework.binding import Binder
from framework.registry import RouteSpec

__all__ = ["endpoint"]

log = logging.getLogger("framework.gateway")


def _param_model(spec: RouteSpec, source: str) -> type[BaseModel] | None:
    fields: dict[str, Any] = {}
    for p in spec.binder.params:
        if p.source == source:
            default = ... if p.required else p.default
            fields[p.name] = (p.annotation, default)
    if not fields:
        return None
    model: type[BaseModel] = create_model(f"{spec.name}_{source}", **fields)  # type: ignore[call-overload]
    return model


def _errors(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    return [
        {"loc": [where, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False)
    ]


def unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    """Return the 422 response with field errors."""
    return JSONResponse({"detail": errors}, status_code=422)


def endpoint(spec: RouteSpec) -> Any:
    """Return the starlette endpoint serving ``spec``."""
    binder: Binder = spec.binder
    path_model = _param_model(spec, "path")
    query_model = _param_model(spec, "query")
    body = binder.body
    request_param = binder.param("request")
    handler = spec.handler

    async def serve(request: Request) -> Response:
        kwargs: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        if path_model is not None:
            try:
                kwargs.update(path_model.model_validate(request.path_params).__dict__)
            except ValidationError as exc:
                errors += _errors(exc, "path")
        if query_model is not None:
            query = {k: v for k, v in request.query_params.items()}
            try:
                kwargs.update(query_model.model_validate(query).__dict__)
            except ValidationError as exc:
                errors += _errors(exc, "query")
        if body is not None:
            raw = await request.body()
            if not raw and not body.required:
                kwargs[body.name] = body.default
            else:
                try:
                    kwargs[body.name] = binder.decode_request(raw)
                except ValidationError as exc:
                    errors += _errors(exc, "body")
        if errors:
            return unprocessable(errors)
        if request_param is not None:
            kwargs[request_param.name] = request
        result = await handler(**kwargs) if binder.is_async else handler(**kwargs)
        return render(result, spec.status_code)

    return serve


def render(result: Any, status_code: int) -> Response:
    """Turn a handler's return value into a response."""
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(status_code=204 if status_code == 200 else status_code)
    if isinstance(result, BaseModel):
        return Response(
            result.model_dump_json(), status_code=status_code, media_type="application/json"
        )
    if isinstance(result, str | bytes):
        return Response(result, status_code=status_code, media_type="text/plain")
    return Response(
        json.dumps(result, separators=(",", ":"), default=str),
        status_code=status_code,
        media_type="application/json",
    )

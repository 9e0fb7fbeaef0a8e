"""What a failed request looks like: HTTP errors with a JSON ``detail``, and field errors for 422.

Every error response is ``{"detail": ...}``: a sentence for 4xx errors, a list of field errors
(``loc``, ``msg``, ``type``) for 422, and ``"internal server error"`` plus the request id for a
500, whose traceback goes to the log only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from framework.exceptions import BackendUnavailableError, MessageTooLargeError

__all__ = [
    "RETRY_AFTER",
    "ClientDisconnectedError",
    "FieldError",
    "HTTPError",
    "RequestValidationError",
    "ResponseAbortedError",
    "backend_error",
    "field_errors",
    "missing_body",
    "non_finite",
    "non_finite_parameter",
]

FieldError = dict[str, Any]


class HTTPError(Exception):
    """An error the gateway answers with ``status`` and the JSON body ``{"detail": detail}``.

    Args:
        status: The HTTP status code.
        detail: A sentence saying what was wrong and how to fix it, or a list of field errors.
        headers: Extra response headers (``Allow``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        detail: str | list[FieldError],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail if isinstance(detail, str) else f"{len(detail)} field error(s)")
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """Return the extra headers as ASGI (lowercase name, value) byte pairs."""
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]


class RequestValidationError(HTTPError):
    """Invalid input: a 422 with the field errors of the body, path and query together.

    Args:
        errors: Field errors, each ``{"loc": [source, field, ...], "msg": ..., "type": ...}``.
    """

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(422, errors)
        self.errors = errors


class ClientDisconnectedError(Exception):
    """The client went away before its request body arrived; there is no one to answer."""


class ResponseAbortedError(Exception):
    """A handler's own ``Response`` failed after it started sending: the connection is cut.

    The original exception is the ``__cause__``.
    """


# Seconds a client is told to wait after a 503: about one reconnect attempt of a backend.
RETRY_AFTER = 5


def backend_error(exc: Exception) -> HTTPError | None:
    """Return the answer to a backend error a handler let through, or None for a 500.

    An unreachable backend is a 503 with ``Retry-After`` (the backend reconnects by itself);
    a message the backend cannot carry is a 413 naming the limit. Every other error a handler
    raises is a bug in the server: a 500.
    """
    if isinstance(exc, BackendUnavailableError):
        return HTTPError(
            503,
            "the message backend is unavailable; retry later",
            {"Retry-After": str(RETRY_AFTER)},
        )
    if isinstance(exc, MessageTooLargeError):
        return HTTPError(413, str(exc))
    return None


def field_errors(exc: ValidationError, source: str | Mapping[str, str]) -> list[FieldError]:
    """Return pydantic's errors as field errors located under ``source``.

    Args:
        exc: The validation error.
        source: ``"body"``, or a mapping from a parameter's name to its source (``"path"`` or
            ``"query"``) when the first element of each location is that name.

    Returns:
        The errors, each ``{"loc": [...], "msg": ..., "type": ...}``; the input is never echoed.
    """
    out: list[FieldError] = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = list(error["loc"])
        where = source if isinstance(source, str) else source.get(str(loc[0]), "query")
        out.append({"loc": [where, *loc], "msg": error["msg"], "type": error["type"]})
    return out


def non_finite(loc: list[str | int]) -> FieldError:
    """Return the field error of a NaN, an Infinity or an out-of-range number in the body."""
    return {
        "loc": ["body", *loc],
        "msg": "Input should be a finite number (NaN, Infinity and numbers past a 64-bit "
        "float's range, such as 1e400, are not accepted)",
        "type": "finite_number",
    }


def non_finite_parameter(source: str, name: str) -> FieldError:
    """Return the field error of a path, query or header parameter that is NaN or infinite."""
    return {
        "loc": [source, name],
        "msg": "Input should be a finite number (not nan or inf)",
        "type": "finite_number",
    }


def missing_body() -> FieldError:
    """Return the field error of a required request body that was not sent."""
    return {"loc": ["body"], "msg": "Field required", "type": "missing"}

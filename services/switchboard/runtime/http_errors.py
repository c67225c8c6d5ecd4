"""The one error body of switchboard's HTTP APIs: `{"error": "<kind>", "detail": ...}`.

`error` is a fixed word per kind (below) a client may branch on; `detail` says what was wrong in a sentence, or, for
a body or parameter out of its schema (422), lists every problem as `"<where>: <what>"`
(`"body.capacity.chat: Input should be less than or equal to 1000"`). `install_error_shapes` makes an app answer
every HTTPException and every validation error in this shape; `ERROR_RESPONSES` documents it in an OpenAPI document.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

ErrorKind = Literal[
    "invalid_json",
    "too_deep",
    "invalid_text",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "too_large",
    "invalid_field",
    "rate_limited",
    "unavailable",
    "error",
]

KIND_OF_STATUS: dict[int, ErrorKind] = {
    400: "invalid_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid_field",
    429: "rate_limited",
    502: "unavailable",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    """What every 4xx (and 503) answer of the API holds."""

    error: ErrorKind
    detail: str | list[str]


def _described(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# The error answers every route of an API documents (a route adds its own 404/409/422 meanings on top).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _described("`invalid_json`: the body is not JSON (or not UTF-8)"),
    401: _described("`unauthorized`: no bearer token, another scheme, or an unknown token"),
    403: _described("`forbidden`: the token is not granted this tenant"),
    422: _described(
        "`invalid_field`: a parameter or a field of the body is missing or out of bounds; `detail` lists each"
    ),
    503: _described("`unavailable`: the store is unavailable; retry after `Retry-After` seconds"),
}


def error_response(status: int, detail: str | list[str], headers: dict[str, str] | None = None) -> JSONResponse:
    """An answer in the one error shape, its kind from the status."""
    body = ErrorBody(error=KIND_OF_STATUS.get(status, "error"), detail=detail)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _where(location: tuple[int | str, ...] | list[int | str]) -> str:
    return ".".join(str(part) for part in location)


def problems(exc: RequestValidationError) -> list[str]:
    """Every problem of a validation error, as `"<where>: <what>"`."""
    return [f"{_where(err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()]


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, (str, list)) else str(exc.detail)
    return error_response(exc.status_code, detail, dict(exc.headers) if exc.headers else None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return error_response(400, "the body is not valid JSON")
    return error_response(422, problems(exc))


def install_error_shapes(app: FastAPI) -> None:
    """Answer every HTTPException and validation error of `app` with an ErrorBody."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

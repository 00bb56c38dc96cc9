"""API errors: every error answers {"error": {"code", "message"}} with a message that says how to fix it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("bpd_rag.api")

EXAMPLE_BODY = '{"message": "What dose was used in the pilot trial?", "history": []}'


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. message_too_long.")
    message: str = Field(description="What went wrong and how to fix it.")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """An error a client can act on, returned as JSON with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body with its status."""
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


# OpenAPI documentation of the error responses the routes may give.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "Malformed JSON or a body that is not UTF-8."},
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Empty or too long message, history over the limit, wrong roles."},
    429: {"model": ErrorResponse, "description": "Too many requests from this client; see Retry-After."},
    503: {"model": ErrorResponse, "description": "The index or model is not available; the message says why."},
}


def _location(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            reason = ctx.get("error", "it could not be parsed")
            return (
                400,
                "invalid_json",
                f"The request body is not valid JSON ({reason}). Send Content-Type: application/json "
                f"and a body like {EXAMPLE_BODY}",
            )
    problems = []
    for err in errors[:5]:
        where = _location(tuple(err.get("loc", ())))
        problems.append(f"{where}: {err.get('msg', 'invalid value')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return (
        422,
        "invalid_request",
        "The request does not match the expected format: " + "; ".join(problems) + more + f". Example: {EXAMPLE_BODY}",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Turn every error into the JSON error body (and never a stack trace)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = _validation_message(exc)
        return error_response(status, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(404, "not_found", f"No such endpoint: {request.url.path}. See /docs for the API.")
        if exc.status_code == 405:
            return error_response(
                405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}. See /docs."
            )
        if exc.status_code == 400:
            return error_response(
                400, "invalid_body", f"The request body could not be read ({exc.detail}). Send UTF-8 JSON."
            )
        return error_response(exc.status_code, "http_error", str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "")
        log.exception("request_id=%s unexpected error", request_id)
        return error_response(
            500,
            "internal_error",
            f"Something went wrong on the server (request id {request_id}). Please try again; if it keeps "
            "happening, give the clinic this request id.",
        )

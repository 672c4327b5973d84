"""How failures look over HTTP: one status and one JSON shape per failure domain.

``QueryError`` is the caller's fault (400); an unusable index, embedder or
LLM is the service's (503, with the reason, which already says what to do);
a timeout is 504. Anything unexpected becomes a 500 that carries the request
id and never a stack trace (see ``observability.RequestContext``).

Errors raised inside Ray Serve replicas arrive wrapped in ``RayTaskError``
subclasses of the original type; ``root_cause`` unwraps them so the client
reads the original message, not a remote traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ragserve.errors import (
    ConfigError,
    EmbedderError,
    IndexNotFoundError,
    LLMError,
    QueryError,
    RagserveError,
    SchemaMismatchError,
    StoreError,
)
from ragserve.serve.observability import Metrics, request_id_var

logger = logging.getLogger(__name__)

#: Most specific first: the first isinstance match wins.
_RAGSERVE_STATUS: tuple[tuple[type[RagserveError], int, str], ...] = (
    (QueryError, 400, "invalid_query"),
    (IndexNotFoundError, 503, "index_not_found"),
    (SchemaMismatchError, 503, "schema_mismatch"),
    (StoreError, 503, "store_unavailable"),
    (EmbedderError, 503, "embedder_unavailable"),
    (LLMError, 502, "llm_failed"),
    (ConfigError, 500, "configuration_error"),
)

_HTTP_TYPES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
    504: "timeout",
}


class ApiError(HTTPException):
    """An HTTP error with a more specific type than its status (``invalid_api_key``)."""

    def __init__(
        self, status_code: int, error_type: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code, detail, headers)
        self.error_type = error_type


#: OpenAI's error ``type`` per status; clients branch on it (``code`` carries ours).
_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_error_body(status: int, error_type: str, message: str) -> dict[str, Any]:
    """OpenAI's error shape (``message``, ``type``, ``param``, ``code``) plus ``request_id``.

    The ``openai`` SDKs read ``error.message`` and ``error.code``; ``code``
    carries this service's own error type, so nothing is lost for /v1 clients.
    """
    kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {
        "error": {
            "message": message,
            "type": kind,
            "param": None,
            "code": error_type,
            "request_id": request_id_var.get(),
        }
    }


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def root_cause(exc: BaseException) -> BaseException:
    """The original error of a Ray-wrapped one (``RayTaskError.cause``), else ``exc``."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _replica_lost(exc: BaseException) -> bool:
    """A Ray Serve replica (or its actor) died while handling the request."""
    try:
        from ray.exceptions import RayActorError
    except ImportError:  # pragma: no cover - ray is a core dependency
        return False
    return isinstance(exc, RayActorError)


def describe_error(exc: BaseException) -> tuple[int, str, str]:
    """``(status, type, message)`` for any failure, safe to show to a client."""
    exc = root_cause(exc)
    if isinstance(exc, ApiError):
        return exc.status_code, exc.error_type, str(exc.detail)
    if isinstance(exc, HTTPException):
        return exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), str(exc.detail)
    if _replica_lost(exc):
        return 503, "replica_unavailable", (
            "the replica answering this request stopped before it finished; retry it "
            "(the service replaces lost replicas on its own)"
        )  # fmt: skip
    if isinstance(exc, TimeoutError):
        return 504, "timeout", (
            "the request took longer than the service's timeout "
            "(serve.request_timeout_s, RAGSERVE_SERVE__REQUEST_TIMEOUT_S); try a smaller k "
            "or retry later"
        )  # fmt: skip
    if isinstance(exc, RagserveError):
        for error_class, status, error_type in _RAGSERVE_STATUS:
            if isinstance(exc, error_class):
                message = str(exc)
                if error_class is IndexNotFoundError and "ragserve ingest" not in message:
                    message += "; run `ragserve ingest` to build the index"
                return status, error_type, message
    request_id = request_id_var.get()
    return 500, "internal_error", (
        f"the server failed while handling this request; quote request id {request_id} "
        "when reporting it"
    )  # fmt: skip


def error_response(
    status: int,
    error_type: str,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    openai: bool = False,
) -> JSONResponse:
    """The error body: this service's shape, or OpenAI's on the /v1 routes."""
    body = (
        openai_error_body(status, error_type, message)
        if openai
        else {"error": {"type": error_type, "message": message, "request_id": request_id_var.get()}}
    )
    return JSONResponse(body, status_code=status, headers=headers)


def readable_validation_message(exc: RequestValidationError) -> str:
    """``body.k: Input should be greater than or equal to 1; ...`` instead of a JSON dump."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Map every known failure to ``{"error": {...}}`` with the right status."""

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        status, error_type, message = describe_error(exc)
        headers = getattr(exc, "headers", None)
        if status >= 400 and status != 404:
            metrics.errors.labels(type=error_type).inc()
        return error_response(
            status, error_type, message, headers, openai=is_openai_path(request.url.path)
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        metrics.errors.labels(type="validation_error").inc()
        return error_response(
            422,
            "validation_error",
            readable_validation_message(exc),
            openai=is_openai_path(request.url.path),
        )

    async def on_failure(request: Request, exc: Exception) -> JSONResponse:
        status, error_type, message = describe_error(exc)
        metrics.errors.labels(type=error_type).inc()
        if status >= 500:
            logger.warning("%s: %s", error_type, message, exc_info=status == 500)
        headers = {"Retry-After": "1"} if error_type == "replica_unavailable" else None
        return error_response(
            status, error_type, message, headers, openai=is_openai_path(request.url.path)
        )

    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(RagserveError, on_failure)
    app.add_exception_handler(TimeoutError, on_failure)
    try:
        from ray.exceptions import RayActorError
    except ImportError:  # pragma: no cover - ray is a core dependency
        return
    app.add_exception_handler(RayActorError, on_failure)

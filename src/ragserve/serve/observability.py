"""What an operator sees: request ids, JSON logs, Prometheus metrics.

Every request gets an id (the caller's ``X-Request-ID`` when it is sane, else
a fresh one), echoed in the response header, in error bodies and in every log
line written while the request runs, so one failing call can be traced from a
client report to the log. Metrics live in a ``CollectorRegistry`` per app, so
several apps in one process (tests) never share counters.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("ragserve.serve.access")

request_id_var: ContextVar[str | None] = ContextVar("ragserve_request_id", default=None)

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
STAGES = ("embed", "retrieve", "rerank", "generate", "total")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def error_json(error_type: str, message: str, request_id: str | None) -> bytes:
    """The one error body shape: ``{"error": {"type", "message", "request_id"}}``."""
    body = {"error": {"type": error_type, "message": message, "request_id": request_id}}
    return json.dumps(body).encode()


def new_request_id(incoming: str | None) -> str:
    """The caller's id when it is short and printable, else a fresh one."""
    if incoming and _SANE_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


class Metrics:
    """The service's Prometheus metrics, registered in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ragserve_http_requests", "HTTP requests by route and status.",
            ["method", "route", "status"], registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "ragserve_http_request_seconds", "HTTP request latency by route.",
            ["route"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "ragserve_http_requests_in_flight", "Requests being served now.", registry=r
        )
        self.stage_seconds = Histogram(
            "ragserve_stage_seconds", "Seconds per pipeline stage (embed, retrieve, rerank, "
            "generate, total).", ["stage"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "ragserve_errors", "Failed requests by error type.", ["type"], registry=r
        )
        self.tokens = Counter(
            "ragserve_llm_tokens", "LLM tokens by kind (prompt, completion).", ["kind"], registry=r
        )
        self.sources = Histogram(
            "ragserve_retrieved_sources", "Sources returned per answer or search.",
            buckets=(0, 1, 2, 3, 5, 8, 13, 20, 50, 100), registry=r,
        )  # fmt: skip
        self.index_version = Gauge(
            "ragserve_index_version", "The index version this process answers from "
            "(1 for the version in the label).", ["version"], registry=r,
        )  # fmt: skip
        self.degraded = Counter(
            "ragserve_degraded_answers", "Answers written without the LLM (it failed).", registry=r
        )

    def observe_stages(self, timings: Mapping[str, float]) -> None:
        for stage, seconds in timings.items():
            if stage in STAGES:
                self.stage_seconds.labels(stage=stage).observe(seconds)

    def observe_answer(
        self, timings: Mapping[str, float], usage: Mapping[str, int], sources: int, degraded: bool
    ) -> None:
        self.observe_stages(timings)
        for kind in ("prompt_tokens", "completion_tokens"):
            if usage.get(kind):
                self.tokens.labels(kind=kind.removesuffix("_tokens")).inc(usage[kind])
        self.sources.observe(sources)
        if degraded:
            self.degraded.inc()

    def set_index_version(self, version: str | None) -> None:
        self.index_version.clear()
        if version:
            self.index_version.labels(version=version).set(1)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


class RequestContext:
    """ASGI middleware: request id, access log, request metrics, last-resort 500.

    Exceptions that no handler mapped end here: the client gets a JSON 500
    with the request id, the log gets the traceback; the process lives on.

    Behind the Ray Serve proxy (``echo_request_id=False``) the proxy already
    assigns the id, puts it in the request headers and echoes it; the app
    adopts that id and leaves the response header to the proxy.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, echo_request_id: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.echo_request_id = echo_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1") or None
        # Behind Serve's proxy, its id is the one the client sees: adopt it verbatim.
        adopt = incoming is not None and not self.echo_request_id
        request_id = incoming if adopt and incoming else new_request_id(incoming)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started_response = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = int(message["status"])
            if message["type"] == "http.response.start" and self.echo_request_id:
                out_headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                out_headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": out_headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            self.metrics.errors.labels(type=type(exc).__name__).inc()
            if not started_response:
                await _send_500(send_with_id, request_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_label(scope)
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(elapsed)
            access_logger.info(
                "%s %s %s %.1fms",
                scope["method"], scope["path"], status, elapsed * 1000,
                extra={"route": route, "status": status, "duration_ms": round(elapsed * 1000, 2)},
            )  # fmt: skip
            request_id_var.reset(token)


def _route_label(scope: Scope) -> str:
    """The route template (``/query``), never the raw path: bounded label values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


async def _send_500(send: Send, request_id: str) -> None:
    body = error_json(
        "internal_error",
        f"the server failed while handling this request; quote request id {request_id} "
        "when reporting it",
        request_id,
    )
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being served."""

    _EXTRA = ("route", "status", "duration_ms", "error_type")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key in self._EXTRA:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send ragserve's logs to stderr as JSON lines (the server's edge calls this)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("ragserve")
    root.handlers = [handler]
    root.setLevel(level)
    root.propagate = False

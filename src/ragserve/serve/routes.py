"""The service's own routes: /query, /search, health, readiness and metrics.

Routes parse, call the agent, and render; nothing here knows how retrieval
or generation work. Shared pieces the OpenAI facade reuses live here too:
the request context, the auth + rate-limit dependency, question checks,
deadline-bounded event streams and Server-Sent Events framing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from ragserve.agent import AnswerEvent, answer_to_dict, source_to_dict
from ragserve.config import ServeSettings, Settings
from ragserve.documents import Answer, Source
from ragserve.feedback import FeedbackStore
from ragserve.serve.backend import AgentLike
from ragserve.serve.failures import ApiError, describe_error
from ragserve.serve.observability import Metrics, request_id_var
from ragserve.serve.schemas import (
    ErrorResponse,
    HealthResponse,
    QueryRequest,
    QueryResponse,
    SearchRequest,
    SearchResponse,
)
from ragserve.serve.security import ApiKeys, RateLimiter, presented_key, retry_after_header

logger = logging.getLogger(__name__)

READINESS_CACHE_S = 2.0
READINESS_TIMEOUT_S = 10.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class ServiceContext:
    """Everything a route needs, built once per app by ``create_app``."""

    settings: Settings
    agent: AgentLike
    metrics: Metrics
    keys: ApiKeys
    limiter: RateLimiter
    #: Failed authentications per client address: brute force meets 429, not 401s.
    auth_failures: RateLimiter = field(default_factory=lambda: RateLimiter(0))
    ready_cache: tuple[float, list[str]] | None = None
    index_version: str | None = None
    feedback: FeedbackStore | None = None


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ragserve
    return ctx


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")


def client_address(request: Request) -> str:
    return f"ip-{request.client.host}" if request.client else "ip-unknown"


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> str:
    """Check the API key when keys are required; the client id (key id, or address).

    Missing and wrong keys are both 401 (RFC 9110: the credentials did not
    authenticate; OpenAI clients expect it too); 403 would mean a valid key
    without permission, which this service does not have. An address with
    too many recent failures gets 429 before its key is even compared, for
    right keys too: otherwise a brute force could still tell a hit (200)
    from a miss during the lock-out.
    """
    ctx = context(request)
    address = client_address(request)
    if not ctx.keys.required:
        return address
    locked_s = ctx.auth_failures.wait_s(address)
    if locked_s > 0:
        retry = retry_after_header(locked_s)
        raise ApiError(
            429,
            "too_many_auth_failures",
            f"too many failed authentications from this address; retry in {retry}s",
            headers={"Retry-After": retry},
        )
    token = bearer.credentials if bearer else None
    presented = presented_key(f"Bearer {token}" if token else None, api_key)
    key_id = None if presented is None else ctx.keys.match(presented)
    if key_id is not None:
        return key_id
    ctx.auth_failures.acquire(address)
    if presented is None:
        raise ApiError(
            401,
            "missing_api_key",
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    raise ApiError(
        401,
        "invalid_api_key",
        "the API key is not valid; check it with the operator",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def key_unless_public(is_public: Callable[[ServeSettings], bool]) -> Any:
    """A dependency: authenticate, unless ``is_public(settings.serve)`` opens the route.

    A callable, not a setting's name, so a renamed setting is a type error here
    rather than an ``AttributeError`` on the first request.
    """

    async def check(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> str:
        if is_public(context(request).settings.serve):
            return client_address(request)
        return await authenticate(request, bearer, api_key)

    return Depends(check)


async def authorize(request: Request, client: Annotated[str, Depends(authenticate)]) -> str:
    """Check the API key (when required) and the caller's rate limit; returns the client id."""
    ctx = context(request)
    wait_s = ctx.limiter.acquire(client)
    if wait_s > 0:
        retry = retry_after_header(wait_s)
        raise HTTPException(
            429,
            f"rate limit of {ctx.limiter.per_minute} requests per minute exceeded; "
            f"retry in {retry}s",
            headers={"Retry-After": retry},
        )
    return client


Ctx = Annotated[ServiceContext, Depends(context)]
Client = Annotated[str, Depends(authorize)]

router = APIRouter()
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 413, 422, 429, 503, 504)
}


def check_question(ctx: ServiceContext, question: str) -> None:
    limit = ctx.settings.serve.max_question_chars
    if len(question) > limit:
        raise HTTPException(
            413,
            f"the question is {len(question)} characters; the limit is {limit} "
            "(serve.max_question_chars, RAGSERVE_SERVE__MAX_QUESTION_CHARS)",
        )


def deadline(ctx: ServiceContext) -> float:
    return asyncio.get_running_loop().time() + ctx.settings.serve.request_timeout_s


async def next_event(events: AsyncGenerator[AnswerEvent, None], until: float) -> AnswerEvent | None:
    """The next event, or None at the end; ``TimeoutError`` past the deadline."""
    async with asyncio.timeout_at(until):
        return await anext(events, None)


async def collect_answer(ctx: ServiceContext, events: AsyncGenerator[AnswerEvent, None]) -> Answer:
    """Drain an event stream within the request timeout; the final answer."""
    until = deadline(ctx)
    async with aclosing(events):
        while (event := await next_event(events, until)) is not None:
            if event.kind == "done" and event.answer is not None:
                observe(ctx, event.answer)
                return event.answer
    raise RuntimeError("the agent's answer stream ended without a final answer")


def observe(ctx: ServiceContext, answer: Answer) -> None:
    ctx.metrics.observe_answer(answer.timings, answer.usage, len(answer.sources), answer.degraded)


def answer_body(answer: Answer) -> dict[str, Any]:
    """The /query JSON: ``answer_to_dict`` plus the tutorial's ``response`` and ``llm``."""
    body = answer_to_dict(answer)
    body["response"] = body["answer"]
    body["llm"] = body.pop("model")
    return body


def sources_json(sources: tuple[Source, ...] | list[Source]) -> list[dict[str, Any]]:
    return [source_to_dict(source) for source in sources]


def sse(event: str | None, data: Any) -> str:
    """One Server-Sent Event; ``data`` is JSON (a string is sent as is)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n"


def error_payload(ctx: ServiceContext, exc: BaseException) -> dict[str, Any]:
    """What an ``error`` event carries when a stream fails after it started."""
    status, error_type, message = describe_error(exc)
    ctx.metrics.errors.labels(type=error_type).inc()
    if status >= 500 and error_type == "internal_error":
        logger.error("stream failed", exc_info=exc)
    return {"type": error_type, "message": message, "request_id": request_id_var.get()}


async def primed(
    ctx: ServiceContext, events: AsyncGenerator[AnswerEvent, None]
) -> tuple[AnswerEvent | None, float]:
    """Wait for the first event so errors before any output still get an HTTP status."""
    until = deadline(ctx)
    try:
        return await next_event(events, until), until
    except BaseException:
        await events.aclose()
        raise


@router.post(
    "/query",
    response_model=QueryResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
    summary="Answer a question with cited sources (JSON, or SSE when stream=true)",
)
async def query(body: QueryRequest, ctx: Ctx, _client: Client) -> Any:
    check_question(ctx, body.query)
    events = ctx.agent.ask_stream(body.query, k=body.k, filters=body.search_filter())
    if not body.stream:
        return answer_body(await collect_answer(ctx, events))
    first, until = await primed(ctx, events)
    return StreamingResponse(
        _query_sse(ctx, first, events, until), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _query_sse(
    ctx: ServiceContext,
    first: AnswerEvent | None,
    events: AsyncGenerator[AnswerEvent, None],
    until: float,
) -> AsyncIterator[str]:
    async with aclosing(events):
        event = first
        try:
            while event is not None:
                if event.kind == "token":
                    yield sse("token", {"text": event.text})
                elif event.kind == "sources":
                    yield sse("sources", sources_json(event.sources))
                elif event.answer is not None:
                    observe(ctx, event.answer)
                    yield sse("done", answer_body(event.answer))
                event = await next_event(events, until)
        except Exception as exc:
            yield sse("error", error_payload(ctx, exc))


@router.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search(body: SearchRequest, ctx: Ctx, _client: Client) -> dict[str, Any]:
    """Retrieval only: the sources an answer would cite, with stage timings."""
    check_question(ctx, body.query)
    started = time.perf_counter()
    async with asyncio.timeout(ctx.settings.serve.request_timeout_s):
        sources, timings = await ctx.agent.search(
            body.query, k=body.k, filters=body.search_filter(), mode=body.mode
        )
    timings = {**timings, "total": time.perf_counter() - started}
    ctx.metrics.observe_stages(timings)
    ctx.metrics.sources.observe(len(sources))
    return {
        "question": body.query,
        "sources": sources_json(sources),
        "timings": {stage: round(seconds, 4) for stage, seconds in timings.items()},
    }


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> dict[str, Any]:
    """Liveness: the process answers. Cheap; touches neither index nor LLM."""
    return {"status": "ok", "problems": []}


@router.get("/readyz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def readyz(ctx: Ctx) -> Response:
    """Readiness: the index is open and non-empty and the LLM is reachable."""
    now = time.monotonic()
    if ctx.ready_cache is None or now - ctx.ready_cache[0] > READINESS_CACHE_S:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_S):
                problems = await ctx.agent.readiness()
                ctx.index_version = await live_index_version(ctx)
        except TimeoutError:
            problems = [f"readiness checks took longer than {READINESS_TIMEOUT_S:.0f}s"]
        ctx.ready_cache = (now, problems)
    problems = ctx.ready_cache[1]
    status = "unavailable" if problems else "ok"
    body = {"status": status, "problems": problems, "index_version": ctx.index_version}
    return JSONResponse(body, 503 if problems else 200)


async def live_index_version(ctx: ServiceContext) -> str | None:
    """The index version this process (or its Retriever) answers from now."""
    info = await ctx.agent.index_info()
    version = info.get("index_version")
    return str(version) if version else None


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, 401: {"model": ErrorResponse}},
)
async def metrics(
    ctx: Ctx, _client: Annotated[str, key_unless_public(lambda serve: serve.metrics_public)]
) -> Response:
    """Prometheus metrics of this process (one Serve replica, not the whole app)."""
    ctx.metrics.set_index_version(await live_index_version(ctx))
    return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

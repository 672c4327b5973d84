"""The FastAPI app: ``create_app(settings, agent)`` wires routes, limits and metrics.

The same app runs under plain uvicorn (``run_uvicorn``) and inside the Ray
Serve ingress deployment; only the agent differs (a ``QueryAgent`` in threads
here, deployment handles there). Auth settings are checked when the app is
built, so an unsafe configuration fails at start-up, not on the first call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

import ragserve
from ragserve.agent import QueryAgent
from ragserve.config import Settings
from ragserve.errors import RagserveError
from ragserve.serve import feedback_api, openai_api, routes, status, web
from ragserve.serve.backend import AgentLike, LocalAgent
from ragserve.serve.failures import install_error_handlers
from ragserve.serve.observability import Metrics, RequestContext, configure_json_logging
from ragserve.serve.routes import ServiceContext, key_unless_public
from ragserve.serve.security import ApiKeys, BodySizeLimit, InFlightLimit, RateLimiter

logger = logging.getLogger(__name__)

DESCRIPTION = """Questions answered from your documentation, with numbered, deep-linked sources.

`POST /query` answers (JSON, or Server-Sent Events with `stream: true`); `POST /search`
retrieves only; `POST /v1/chat/completions` speaks the OpenAI chat API. Send the API key
as `Authorization: Bearer <key>` or `X-API-Key: <key>` when the service requires one."""


def create_app(
    settings: Settings,
    agent: QueryAgent | AgentLike | None = None,
    *,
    behind_serve_proxy: bool = False,
) -> FastAPI:
    """The HTTP app over ``agent`` (a new ``QueryAgent(settings)`` when None).

    ``behind_serve_proxy`` leaves ``X-Request-ID`` to the Ray Serve proxy,
    which sets it on every request and response itself. Raises
    ``ConfigError`` when auth is required but no API keys are set.
    An agent created here is closed when the app shuts down; one passed in
    belongs to the caller.
    """
    keys = ApiKeys(settings.serve)
    owned = agent is None
    query_agent = QueryAgent(settings, follow_live=True) if agent is None else agent
    backend = LocalAgent(query_agent) if isinstance(query_agent, QueryAgent) else query_agent
    metrics = Metrics()
    ctx = ServiceContext(
        settings=settings,
        agent=backend,
        metrics=metrics,
        keys=keys,
        limiter=RateLimiter(settings.serve.rate_limit_per_minute),
        auth_failures=RateLimiter(settings.serve.auth_failures_per_minute),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await _warm_up(backend)
        yield
        if owned and isinstance(query_agent, QueryAgent):
            await run_in_threadpool(query_agent.close)

    app = FastAPI(
        title="ragserve",
        version=ragserve.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below, behind the key unless serve.docs_public
        openapi_url=None,
    )
    _add_docs(app)
    app.state.ragserve = ctx
    app.include_router(routes.router)
    app.include_router(openai_api.router)
    app.include_router(feedback_api.router)
    app.include_router(status.router)
    app.include_router(web.router)
    install_error_handlers(app, metrics)
    # Added last = outermost: CORS headers reach every response, errors included.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.serve.max_body_bytes,
        timeout_s=settings.serve.body_timeout_s,
    )
    app.add_middleware(InFlightLimit, limit=settings.serve.max_in_flight)
    app.add_middleware(RequestContext, metrics=metrics, echo_request_id=not behind_serve_proxy)
    if settings.serve.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.serve.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    logger.info(
        "ragserve API ready to serve (auth %s, rate limit %s/min)",
        "required" if keys.required else "off",
        settings.serve.rate_limit_per_minute or "off",
    )
    return app


def _add_docs(app: FastAPI) -> None:
    """/openapi.json and /docs, behind the API key unless ``serve.docs_public``.

    The schema names every route and limit of a service that may be internal;
    with keys configured it is for key holders (``curl -H 'X-API-Key: …'``).
    Set ``serve.docs_public`` to browse /docs, which a browser fetches keyless.
    """
    docs_key = key_unless_public(lambda serve: serve.docs_public)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[docs_key])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[docs_key])
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="ragserve API")


async def _warm_up(agent: AgentLike) -> None:
    """Load the model and open the index before traffic; a missing index is not fatal.

    Without an index the service still starts: /readyz reports why it is not
    ready and /query answers 503 with "run ragserve ingest", which beats a
    crash loop in an orchestrator.
    """
    try:
        await agent.warm_up()
    except RagserveError as exc:
        logger.warning("warm-up failed; the service starts but is not ready: %s", exc)


def run_uvicorn(settings: Settings, *, log_level: str = "info") -> None:
    """Serve the app in this process with uvicorn (no Ray), until interrupted.

    In-flight requests get ``request_timeout_s`` to finish on shutdown.
    """
    import uvicorn

    app = create_app(settings)
    configure_json_logging(getattr(logging, log_level.upper(), logging.INFO))
    uvicorn.Server(uvicorn_config(app, settings, log_level=log_level)).run()


def uvicorn_config(app: FastAPI, settings: Settings, *, log_level: str = "info") -> Any:
    """How uvicorn serves ``app``: h11 with a bounded request head.

    h11, not httptools (uvicorn's pick when installed): httptools buffers a
    request head of any size (a 64 MB header cost 125 MB of RSS), h11 refuses
    one over ``serve.max_header_bytes`` and closes the connection (uvicorn words
    the refusal as 400).
    """
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.serve.host,
        port=settings.serve.port,
        log_level=log_level,
        timeout_graceful_shutdown=int(settings.serve.request_timeout_s) + 1,
        proxy_headers=False,
        http="h11",
        h11_max_incomplete_event_size=settings.serve.max_header_bytes,
    )


__all__ = ["create_app", "run_uvicorn", "uvicorn_config"]

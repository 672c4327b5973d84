"""What the in-process API tests share: a tiny real index, an agent over it, the app, calls.

Import the fixtures into a test module (``from tests.support.api import agent, app,
index_dir``); the index is built once per module that imports them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.support.index import build_index, shared_embedder

from ragserve.agent import QueryAgent
from ragserve.config import Settings
from ragserve.serve import create_app

#: The address in-process requests come from (a non-loopback one, as from another host).
CLIENT = ("10.1.2.3", 5555)


def settings_for(data_dir: Path, **serve: Any) -> Settings:
    """Settings over ``data_dir`` with ``serve`` overrides; rate limits off unless given."""
    groups: dict[str, Any] = {
        "store": {"data_dir": data_dir},
        "embed": {"device": "cpu"},
        "serve": {"rate_limit_per_minute": 0, **serve},
    }
    return Settings.model_validate(groups)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("api-index")
    build_index(data_dir)
    return data_dir


@pytest.fixture(scope="module")
def agent(index_dir: Path) -> QueryAgent:
    return QueryAgent(settings_for(index_dir), embedder=shared_embedder())


@pytest.fixture(scope="module")
def app(index_dir: Path, agent: QueryAgent) -> FastAPI:
    return create_app(settings_for(index_dir), agent)


async def request(
    app: FastAPI, method: str, path: str, client: tuple[str, int] = CLIENT, **kwargs: Any
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.request(method, path, **kwargs)


def call(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request through the ASGI app, as a client would send it."""
    return asyncio.run(request(app, method, path, **kwargs))


@contextmanager
def serving(settings: Settings, agent: QueryAgent | None = None) -> Iterator[str]:
    """The app on uvicorn in a thread, as ``ragserve serve --no-ray`` runs it; yields its URL.

    ``settings.serve.port`` must be free (``tests.support.web.free_port``).
    """
    import uvicorn

    from ragserve.serve.app import uvicorn_config

    config = uvicorn_config(create_app(settings, agent), settings, log_level="error")
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.started:
        assert thread.is_alive(), "uvicorn exited while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.serve.port}"
    finally:
        served.should_exit = True
        thread.join(timeout=10)

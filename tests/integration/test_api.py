"""The HTTP API in-process (``httpx.ASGITransport``) over a tiny real index.

The index is real (Qdrant Edge + bundled MiniLM + BM25, built once per
module); so are the auth, limits, SSE framing and metrics. Integration tests:
the module builds an index with the embedder, and one test imports Ray.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from tests.support import api as shared
from tests.support.api import call, settings_for
from tests.support.index import BASE, KNOWN_ANSWERS, shared_embedder

from ragserve.agent import AnswerEvent, QueryAgent
from ragserve.config import LLMSettings
from ragserve.errors import ConfigError
from ragserve.serve import create_app
from ragserve.store.base import SearchFilter, SearchMode

pytestmark = pytest.mark.integration

QUESTION = "How do I run several copies of a deployment?"

# The shared fixtures (tests/support/api.py): a real index, an agent over it, the app.
index_dir, agent, app = shared.index_dir, shared.agent, shared.app


def sse_events(body: str) -> list[tuple[str | None, str]]:
    """Parse a Server-Sent Events body into (event, data) pairs."""
    events = []
    for block in body.strip().split("\n\n"):
        name = None
        data = []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        events.append((name, "\n".join(data)))
    return events


# -- answers ---------------------------------------------------------------------


def test_query_answers_with_cited_sources_in_the_tutorial_shape(app: FastAPI) -> None:
    response = call(app, "POST", "/query", json={"query": QUESTION})

    assert response.status_code == 200
    body = response.json()
    assert body["question"] == QUESTION
    assert body["answer"]
    assert body["response"] == body["answer"]
    assert body["llm"] == "extractive"
    assert body["degraded"] is False
    assert body["sources"][0]["url"] == KNOWN_ANSWERS[QUESTION]
    assert {"n", "url", "page_url", "title", "score", "snippet"} <= set(body["sources"][0])
    assert body["timings"]["total"] > 0


def test_question_is_accepted_as_a_synonym_of_query(app: FastAPI) -> None:
    question = "How do I stream tokens to the client?"
    response = call(app, "POST", "/query", json={"question": question, "k": 2})

    assert response.status_code == 200
    assert response.json()["sources"][0]["url"] == KNOWN_ANSWERS[question]
    assert len(response.json()["sources"]) <= 2


def test_search_returns_sources_and_timings_without_an_answer(app: FastAPI) -> None:
    question = "How do deployments call each other?"
    response = call(app, "POST", "/search", json={"query": question, "k": 3})

    assert response.status_code == 200
    body = response.json()
    assert "answer" not in body
    assert body["sources"][0]["url"] == KNOWN_ANSWERS[question]
    assert {"embed", "retrieve", "total"} <= set(body["timings"])


def test_url_prefix_filter_keeps_only_matching_pages(app: FastAPI) -> None:
    prefix = f"{BASE}/deploy"
    response = call(
        app, "POST", "/search", json={"query": QUESTION, "filters": {"url_prefix": prefix}}
    )

    assert response.status_code == 200
    urls = [source["page_url"] for source in response.json()["sources"]]
    assert urls
    assert all(url.startswith(prefix) for url in urls)


def test_streamed_query_sends_tokens_then_sources_then_the_full_answer(app: FastAPI) -> None:
    response = call(app, "POST", "/query", json={"query": QUESTION, "stream": True})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[0] == "token"
    assert names[-2:] == ["sources", "done"]
    streamed = "".join(json.loads(data)["text"] for name, data in events if name == "token")
    done = json.loads(events[-1][1])
    assert done["answer"] == streamed.strip()
    assert json.loads(events[-2][1])[0]["url"] == KNOWN_ANSWERS[QUESTION]


# -- OpenAI facade ---------------------------------------------------------------


def test_chat_completions_answers_the_last_user_message(app: FastAPI) -> None:
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
    ]
    response = call(app, "POST", "/v1/chat/completions", json={"model": "x", "messages": messages})

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert body["sources"][0]["url"] == KNOWN_ANSWERS[QUESTION]


def test_streamed_chat_completion_sends_chunks_and_ends_with_done(app: FastAPI) -> None:
    payload = {"messages": [{"role": "user", "content": QUESTION}], "stream": True}
    response = call(app, "POST", "/v1/chat/completions", json=payload)

    assert response.status_code == 200
    datas = [data for _, data in sse_events(response.text)]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(data) for data in datas[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text.strip()
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["sources"][0]["url"] == KNOWN_ANSWERS[QUESTION]


def test_models_lists_the_one_ragserve_model(app: FastAPI) -> None:
    response = call(app, "GET", "/v1/models")

    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == ["ragserve"]


def test_chat_without_a_user_message_is_a_clear_400(app: FastAPI) -> None:
    payload = {"messages": [{"role": "system", "content": "be brief"}]}
    response = call(app, "POST", "/v1/chat/completions", json=payload)

    assert response.status_code == 400
    assert "role 'user'" in response.json()["error"]["message"]


# -- validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "blank"),
        ({"query": QUESTION, "k": 0}, "k"),
        ({"query": QUESTION, "k": "many"}, "k"),
        ({"query": QUESTION, "filters": {"url_prefix": 3}}, "url_prefix"),
        ({"qeury": QUESTION}, "qeury"),
    ],
)
def test_invalid_requests_get_a_readable_422(app: FastAPI, payload: Any, where: str) -> None:
    response = call(app, "POST", "/query", json=payload)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert where in error["message"]


def test_malformed_json_is_a_422_not_a_500(app: FastAPI) -> None:
    response = call(
        app, "POST", "/query", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["type"] == "validation_error"


def test_too_long_question_is_rejected_with_413_naming_the_limit(index_dir: Path) -> None:
    app = create_app(settings_for(index_dir, max_question_chars=50))
    response = call(app, "POST", "/query", json={"query": "why " * 20})

    assert response.status_code == 413
    assert "MAX_QUESTION_CHARS" in response.json()["error"]["message"]


def test_oversized_body_is_rejected_with_413_before_parsing(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, max_body_bytes=1024))
    response = call(app, "POST", "/query", json={"query": "x" * 5000})

    assert response.status_code == 413
    assert response.json()["error"]["type"] == "body_too_large"


# -- auth and limits ---------------------------------------------------------------


def test_api_key_is_required_and_checked(index_dir: Path, agent: QueryAgent) -> None:
    app = create_app(settings_for(index_dir, api_keys=["s3cret-key"]), agent)
    body = {"query": QUESTION, "k": 1}

    missing = call(app, "POST", "/search", json=body)
    wrong = call(app, "POST", "/search", json=body, headers={"Authorization": "Bearer nope"})
    bearer = call(app, "POST", "/search", json=body, headers={"Authorization": "Bearer s3cret-key"})
    header = call(app, "POST", "/search", json=body, headers={"X-API-Key": "s3cret-key"})

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401  # RFC 9110 and OpenAI: bad credentials are 401, not 403
    assert wrong.json()["error"]["type"] == "invalid_api_key"
    assert bearer.status_code == 200
    assert header.status_code == 200
    assert call(app, "GET", "/healthz").status_code == 200  # probes need no key


def test_public_host_without_keys_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RAGSERVE_SERVE__API_KEYS"):
        create_app(settings_for(tmp_path, host="0.0.0.0"))


def test_public_host_may_opt_out_of_auth_explicitly(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, host="0.0.0.0", require_auth=False))

    assert call(app, "GET", "/healthz").status_code == 200


def test_rate_limit_answers_429_with_retry_after(index_dir: Path, agent: QueryAgent) -> None:
    app = create_app(settings_for(index_dir, rate_limit_per_minute=2), agent)
    body = {"query": QUESTION, "k": 1}

    statuses = [call(app, "POST", "/search", json=body).status_code for _ in range(3)]
    limited = call(app, "POST", "/search", json=body)

    assert statuses == [200, 200, 429]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limited"


# -- failures ------------------------------------------------------------------------


def test_unreachable_llm_gives_a_degraded_answer_not_an_error(index_dir: Path) -> None:
    settings = settings_for(index_dir)
    settings.llm = LLMSettings.model_validate(
        {"provider": "openai", "base_url": "http://127.0.0.1:1/v1", "retries": 0, "timeout_s": 2}
    )
    app = create_app(settings, QueryAgent(settings, embedder=shared_embedder()))

    response = call(app, "POST", "/query", json={"query": QUESTION})
    ready = call(app, "GET", "/readyz")

    assert response.status_code == 200
    assert response.json()["degraded"] is True
    assert response.json()["sources"][0]["url"] == KNOWN_ANSWERS[QUESTION]
    assert response.json()["warnings"]
    assert ready.status_code == 503
    assert any(problem.startswith("llm:") for problem in ready.json()["problems"])


def test_missing_index_is_a_503_that_says_to_run_ingest(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path / "nothing-here"))

    response = call(app, "POST", "/query", json={"query": QUESTION})
    ready = call(app, "GET", "/readyz")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "index_not_found"
    assert "ragserve ingest" in response.json()["error"]["message"]
    assert ready.status_code == 503
    assert "ragserve ingest" in ready.json()["problems"][0]


def test_unreadable_index_is_a_503_with_the_reason(tmp_path: Path, index_dir: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(index_dir, broken)
    live = (broken / "collections" / "docs" / "current").read_text(encoding="utf-8").strip()
    metadata = broken / "collections" / "docs" / "versions" / live / "collection.json"
    metadata.write_text("{oops", encoding="utf-8")
    app = create_app(settings_for(broken))

    response = call(app, "POST", "/search", json={"query": QUESTION})

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "store_unavailable"
    assert "unreadable" in response.json()["error"]["message"]


def test_request_over_the_timeout_is_a_504(index_dir: Path, agent: QueryAgent) -> None:
    app = create_app(settings_for(index_dir, request_timeout_s=0.0005), agent)

    response = call(app, "POST", "/query", json={"query": QUESTION})

    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout"


class _BrokenAgent:
    """An agent whose every call hits a bug: what a 500 must look like to a client."""

    async def search(
        self, question: str, *, k: int | None, filters: SearchFilter | None, mode: SearchMode | None
    ) -> Any:
        raise RuntimeError("secret internal detail")

    async def ask_stream(
        self, question: str, *, k: int | None, filters: SearchFilter | None
    ) -> AsyncGenerator[AnswerEvent, None]:
        raise RuntimeError("secret internal detail")
        yield  # pragma: no cover

    async def readiness(self) -> list[str]:
        return []

    async def warm_up(self) -> None:
        return None


def test_unexpected_failure_is_a_500_with_request_id_and_no_internals(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path), _BrokenAgent())

    response = call(
        app, "POST", "/search", json={"query": QUESTION}, headers={"X-Request-ID": "req-42"}
    )

    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-42"
    error = response.json()["error"]
    assert error["request_id"] == "req-42"
    assert "req-42" in error["message"]
    assert "secret" not in response.text
    assert "Traceback" not in response.text


def test_a_replica_lost_mid_request_is_a_503_to_retry_not_a_500(tmp_path: Path) -> None:
    from ray.exceptions import ActorDiedError

    class ReplicaDies(_BrokenAgent):
        async def search(
            self,
            question: str,
            *,
            k: int | None,
            filters: SearchFilter | None,
            mode: SearchMode | None,
        ) -> Any:
            raise ActorDiedError()

    app = create_app(settings_for(tmp_path), ReplicaDies())
    response = call(app, "POST", "/search", json={"query": QUESTION})

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "replica_unavailable"
    assert "retry" in response.json()["error"]["message"]


def test_stream_failure_after_headers_is_an_error_event(tmp_path: Path) -> None:
    class FailsMidStream(_BrokenAgent):
        async def ask_stream(
            self, question: str, *, k: int | None, filters: SearchFilter | None
        ) -> AsyncGenerator[AnswerEvent, None]:
            yield AnswerEvent(kind="token", text="Partial")
            raise RuntimeError("secret internal detail")

    app = create_app(settings_for(tmp_path), FailsMidStream())
    response = call(app, "POST", "/query", json={"query": QUESTION, "stream": True})

    events = sse_events(response.text)
    assert response.status_code == 200
    assert [name for name, _ in events] == ["token", "error"]
    assert json.loads(events[-1][1])["type"] == "internal_error"
    assert "secret" not in response.text


# -- operations ------------------------------------------------------------------------


def test_metrics_count_the_request_and_its_stages(index_dir: Path, agent: QueryAgent) -> None:
    app = create_app(settings_for(index_dir), agent)
    call(app, "POST", "/query", json={"query": QUESTION})

    metrics = call(app, "GET", "/metrics").text

    assert 'ragserve_http_requests_total{method="POST",route="/query",status="200"} 1.0' in metrics
    assert 'ragserve_stage_seconds_count{stage="embed"} 1.0' in metrics
    assert 'ragserve_stage_seconds_count{stage="generate"} 1.0' in metrics
    assert "ragserve_retrieved_sources_count 1.0" in metrics


def test_request_id_is_echoed_or_created(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path))

    echoed = call(app, "GET", "/healthz", headers={"X-Request-ID": "abc-123"})
    created = call(app, "GET", "/healthz")
    hostile = call(app, "GET", "/healthz", headers={"X-Request-ID": "x" * 500})

    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(created.headers["x-request-id"]) == 32
    assert hostile.headers["x-request-id"] != "x" * 500


def test_ready_when_index_and_llm_are_usable(app: FastAPI) -> None:
    response = call(app, "GET", "/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "problems": [], "index_version": "v1"}


def test_cors_preflight_allows_configured_origins(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, cors_origins=["https://docs.example.org"]))
    headers = {
        "Origin": "https://docs.example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }

    response = call(app, "OPTIONS", "/query", headers=headers)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://docs.example.org"


def test_openapi_docs_are_served(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path))

    assert call(app, "GET", "/docs").status_code == 200
    paths = call(app, "GET", "/openapi.json").json()["paths"]
    assert {"/query", "/search", "/v1/chat/completions", "/v1/models", "/readyz"} <= set(paths)


@pytest.mark.slow
def test_generated_requests_never_get_a_server_error(index_dir: Path, agent: QueryAgent) -> None:
    """Schemathesis fuzzes every operation of the OpenAPI schema: no input may cause a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    app = create_app(settings_for(index_dir), agent)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call()
            case.validate_response(response, checks=[not_a_server_error])

        no_server_error()
        tested.append(operation.label)

    assert "POST /query" in tested
    assert "POST /v1/chat/completions" in tested


def test_errors_wrapped_by_ray_keep_their_status_and_message() -> None:
    from ray.exceptions import RayTaskError

    from ragserve.errors import IndexNotFoundError
    from ragserve.serve.failures import describe_error

    original = IndexNotFoundError("index 'docs' is missing; build it with `ragserve ingest`")
    wrapped = RayTaskError("Retriever.retrieve", "Traceback ...", original).as_instanceof_cause()

    assert isinstance(wrapped, IndexNotFoundError)
    assert describe_error(wrapped) == (503, "index_not_found", str(original))

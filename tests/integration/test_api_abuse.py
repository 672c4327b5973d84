"""The HTTP API under abuse, in-process through ``httpx.ASGITransport``.

Out-of-range and wrongly typed parameters, oversized and deeply nested bodies,
unicode edge cases and auth bypass attempts must each get a 4xx with a message
(never a 500, never a silent default); per-key rate limits must hold under
concurrent requests.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.support.index import build_index, shared_embedder

from ragserve.agent import QueryAgent
from ragserve.config import Settings
from ragserve.errors import ConfigError
from ragserve.serve import create_app

pytestmark = pytest.mark.integration

KEY = "k" * 40
OTHER_KEY = "o" * 40


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("abuse-index")
    build_index(data_dir)
    return data_dir


def settings_for(data_dir: Path, **serve: Any) -> Settings:
    groups: dict[str, Any] = {
        "store": {"data_dir": data_dir},
        "embed": {"device": "cpu"},
        "serve": {"rate_limit_per_minute": 0, **serve},
    }
    return Settings.model_validate(groups)


@pytest.fixture(scope="module")
def agent(index_dir: Path) -> QueryAgent:
    return QueryAgent(settings_for(index_dir), embedder=shared_embedder())


@pytest.fixture(scope="module")
def app(index_dir: Path, agent: QueryAgent) -> FastAPI:
    return create_app(settings_for(index_dir), agent)


@pytest.fixture(scope="module")
def keyed_app(index_dir: Path, agent: QueryAgent) -> FastAPI:
    return create_app(settings_for(index_dir, api_keys=[KEY, OTHER_KEY]), agent)


async def _request(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **kwargs)


def call(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return asyncio.run(_request(app, method, path, **kwargs))


def raw_json(app: FastAPI, path: str, text: str) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return call(app, "POST", path, content=text.encode("utf-8", "surrogatepass"), headers=headers)


def error_message(response: httpx.Response) -> str:
    return json.dumps(response.json())


# --- parameters out of range or of the wrong type --------------------------------------------


@pytest.mark.parametrize("path", ["/search", "/query"])
@pytest.mark.parametrize("k", [0, -1, -(2**63), 101, 10**6, 2**64, 1.5, "5", True, None, [], {}])
def test_k_out_of_range_or_not_an_integer_is_422_with_a_message(
    app: FastAPI, path: str, k: Any
) -> None:
    if k is None:
        pytest.skip("null means 'use the setting', which is documented")
    response = call(app, "POST", path, json={"query": "replicas", "k": k})
    assert response.status_code == 422, response.text
    assert "k" in error_message(response)


@pytest.mark.parametrize(
    "body",
    [
        {"query": "x", "stream": "yes"},
        {"query": "x", "stream": 1},
        {"query": 5},
        {"query": ["x"]},
        {"query": ""},
        {"query": "   "},
        {"query": "x", "mode": "everything"},
        {"query": "x", "unknown": 1},
        {"query": "x", "filters": {"ordinal": 99999999999999999999}},
        {"query": "x", "filters": {"ordinal": -(2**63) - 1}},
        {"query": "x", "filters": {"ordinal": [2**64]}},
        {"query": "x", "filters": {"ordinal": 1.5}},
        {"query": "x", "filters": {"ordinal": 2**53}},
        {"query": "x", "filters": {"EM.": 1}},
        {"query": "x", "filters": {"a..b": 1}},
        {"query": "x", "filters": {"a" * 65: 1}},
        {"query": "x", "filters": {"bad key!": 1}},
        {"query": "x", "filters": {"a": {"nested": 1}}},
        {"query": "x", "filters": {f"k{n}": 1 for n in range(50)}},
        {"query": "x", "filters": {"url_prefix": 5}},
        {"query": "x", "filters": {"tags": []}},
    ],
)
@pytest.mark.parametrize("path", ["/search", "/query"])
def test_malformed_bodies_are_422_never_500(app: FastAPI, path: str, body: dict[str, Any]) -> None:
    if path == "/search" and "stream" in body:  # /search has no stream; its mode is as strict
        body = {"query": body["query"], "mode": body["stream"]}
    response = call(app, "POST", path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]


def test_filter_integers_at_the_exact_json_edges_are_accepted(app: FastAPI) -> None:
    for value in (2**53 - 1, -(2**53 - 1), 5.0):
        body = {"query": "replicas", "filters": {"ordinal": value}}
        assert call(app, "POST", "/search", json=body).status_code == 200


# --- size, depth and encoding of bodies ----------------------------------------------------------


def test_oversized_body_is_413_before_parsing(app: FastAPI) -> None:
    response = call(app, "POST", "/query", json={"query": "x" * 5_000_000})
    assert response.status_code == 413
    assert "limit" in response.json()["error"]["message"]


def test_question_too_long_is_refused_with_the_limit(app: FastAPI) -> None:
    response = call(app, "POST", "/search", json={"query": "why " * 100_000})
    assert response.status_code in (413, 422), response.text


@pytest.mark.parametrize("depth", [100, 10_000, 100_000])
def test_deeply_nested_json_is_a_4xx(app: FastAPI, depth: int) -> None:
    text = '{"query": "x", "filters": {"a": ' + "[" * depth + "]" * depth + "}}"
    response = raw_json(app, "/search", text)
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(
    "text",
    [
        '{"query": "a \\ud800"}',  # a lone surrogate, escaped
        '{"query": "\\udfff\\ud800"}',
        '{"query": "\\u0000"}',
        '{"query": "x\\u0000y"}',
        '{"query": "\u202e\u2066 rtl override"}',
        '{"query": "\u200b\u200b\u200b"}',  # zero-width only
        '{"query": "e\u0301\u0301\u0301\u0301\u0301"}',  # stacked combining marks
        '{"query": "\U0001f600 emoji \U0010ffff"}',
        '{"query": "\ufeffbom"}',
        '{"query": "x", "filters": {"title": "\\ud800"}}',
    ],
)
@pytest.mark.parametrize("path", ["/search", "/query"])
def test_unicode_edge_cases_are_answered_or_refused_never_500(
    app: FastAPI, path: str, text: str
) -> None:
    response = raw_json(app, path, text)
    assert response.status_code in (200, 422), response.text


def test_invalid_utf8_body_is_a_4xx(app: FastAPI) -> None:
    headers = {"Content-Type": "application/json"}
    response = call(app, "POST", "/search", content=b'{"query": "\xff\xfe"}', headers=headers)
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(
    "content",
    [
        "a \\ud800",
        '[{"type": "text", "text": "a \\ud800"}]',
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_chat_completion_with_a_lone_surrogate_is_422(
    app: FastAPI, content: str, stream: bool
) -> None:
    value = content if content.startswith("[") else f'"{content}"'
    text = (
        '{"model": "ragserve", "stream": ' + json.dumps(stream) + ', "messages": '
        '[{"role": "user", "content": ' + value + "}]}"
    )
    response = raw_json(app, "/v1/chat/completions", text)
    assert response.status_code == 422, response.text


def test_wrong_content_type_and_non_json_are_4xx(app: FastAPI) -> None:
    for content, ctype in [
        (b"query=x", "application/x-www-form-urlencoded"),
        (b"{", "application/json"),
        (b"", "application/json"),
        (b"null", "application/json"),
        (b"[]", "application/json"),
    ]:
        response = call(app, "POST", "/search", content=content, headers={"Content-Type": ctype})
        assert 400 <= response.status_code < 500, (content, response.text)


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": KEY},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Bearer {KEY.upper()}"},
        {"Authorization": "Bearer " + "k" * 10_000},
        {"Authorization": f"Bearer {KEY}\u0000"},
        {"X-API-Key": ""},
        {"X-API-Key": "wrong"},
        {"X-API-Key": KEY[:20]},
        {"X-Api-Key": f" {KEY[1:]}"},
        {"Cookie": f"api_key={KEY}"},
    ],
)
def test_auth_bypass_attempts_are_refused(keyed_app: FastAPI, headers: dict[str, str]) -> None:
    for method, path, body in [("POST", "/search", {"query": "x"}), ("GET", "/v1/models", None)]:
        response = call(keyed_app, method, path, headers=headers, json=body)
        assert response.status_code in (401, 403), (headers, response.text)


@pytest.mark.parametrize("param", ["api_key", "key", "token", "access_token", "x-api-key"])
def test_key_in_the_query_string_is_not_accepted(keyed_app: FastAPI, param: str) -> None:
    response = call(keyed_app, "POST", f"/search?{param}={KEY}", json={"query": "x"})
    assert response.status_code == 401


def test_right_key_is_accepted_both_ways(keyed_app: FastAPI) -> None:
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": OTHER_KEY}):
        response = call(keyed_app, "POST", "/search", headers=headers, json={"query": "replicas"})
        assert response.status_code == 200


@pytest.mark.parametrize("keys", [["   "], ["\t\n"], [" ", ""]])
def test_whitespace_only_api_key_is_refused_at_start_up(index_dir: Path, keys: list[str]) -> None:
    with pytest.raises(ConfigError, match="blank"):
        create_app(settings_for(index_dir, api_keys=keys, require_auth=True), None)  # type: ignore[arg-type]


# --- rate limits under concurrency -----------------------------------------------------------


def test_per_key_rate_limit_holds_under_concurrent_requests(
    index_dir: Path, agent: QueryAgent
) -> None:
    limited = create_app(
        settings_for(index_dir, api_keys=[KEY, OTHER_KEY], rate_limit_per_minute=5), agent
    )

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=limited, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            def one(key: str) -> Any:
                return client.post(
                    "/search", json={"query": "replicas"}, headers={"X-API-Key": key}
                )

            return list(
                await asyncio.gather(
                    *[one(KEY) for _ in range(30)], *[one(OTHER_KEY) for _ in range(3)]
                )
            )

    responses = asyncio.run(burst())
    first, other = responses[:30], responses[30:]
    assert sorted(r.status_code for r in first) == [200] * 5 + [429] * 25
    assert all(r.headers["Retry-After"].isdigit() for r in first if r.status_code == 429)
    assert [r.status_code for r in other] == [200] * 3  # one key's burst does not starve another


# --- schemathesis, every check -------------------------------------------------------------------

#: Cases per operation: a few in CI; RAGSERVE_FUZZ_EXAMPLES=1000 for the long run (README).
FUZZ_EXAMPLES = int(os.environ.get("RAGSERVE_FUZZ_EXAMPLES", "25"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_with_every_check_finds_nothing(
    index_dir: Path, agent: QueryAgent, mode: str
) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import load_all_checks, positive_data_acceptance
    from schemathesis.generation import GenerationMode

    load_all_checks()
    from schemathesis.checks import CHECKS

    every_check = CHECKS.get_all()
    fuzzed = create_app(settings_for(index_dir, api_keys=[KEY]), agent)
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed)
    failures: list[str] = []
    tested: list[str] = []
    called: list[str] = []

    def fuzz(operation: Any) -> None:
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        def every_check_passes(case: schemathesis.Case) -> None:
            called.append(operation.label)
            response = case.call(headers={"Authorization": f"Bearer {KEY}"})
            # 413 is the right refusal of a body over serve.max_body_bytes, schema-valid or not;
            # 400 is a schema-valid request that makes no sense (a chat with no user message,
            # which JSON Schema cannot say): OpenAI answers it with 400 too.
            if response.status_code == 413:
                return  # (checks=[] would mean "the default checks" to schemathesis)
            checks = every_check
            if response.status_code == 400:
                checks = [check for check in checks if check is not positive_data_acceptance]
            case.validate_response(response, checks=checks)

        try:
            every_check_passes()
        except Unsatisfiable:
            pass  # an operation without inputs (GET /healthz) has no invalid request to make
        except Exception as exc:  # hypothesis raises the shrunk failure: collect, go on
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")

    for result in schema.get_all_operations():
        operation = result.ok()
        fuzz(operation)
        tested.append(operation.label)

    assert "POST /query" in tested
    bodies = {"POST /search", "POST /query", "POST /v1/chat/completions", "POST /feedback"}
    assert bodies & set(tested) <= set(called)  # every operation with a body was exercised
    assert len(called) >= len(bodies & set(tested)) * min(FUZZ_EXAMPLES, 10)
    assert failures == []

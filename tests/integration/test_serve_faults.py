"""Faults while serving, over real sockets: the LLM and the index failing under a live server.

uvicorn runs the app as ``ragserve serve --no-ray`` does, on 127.0.0.1; the LLM
is a scripted OpenAI-compatible server on 127.0.0.1 (``ScriptedServer``) that is
down, slow, trickling, answering garbage or cutting its stream. Every one of
those ends in a degraded answer (the extracted passages, ``degraded: true``, a
warning naming the failure) within the LLM's timeout, never an error or a hang;
and the next question after the LLM recovers is answered by it again, without a
restart. The index side: a server started before any index exists answers 503
with the reason and serves the index as soon as an ingest builds it; an index
whose files are moved away keeps answering from the open version while
``/readyz`` reports it, and is ready again once they are back; a Qdrant server
that is down is a quick 503 naming its URL, on every request and in ``/readyz``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.api import serving, settings_for
from tests.support.index import KNOWN_ANSWERS, build_index, shared_embedder
from tests.support.llm_server import Reply, ScriptedServer, chat_reply, free_port, sse_reply

from ragserve.agent import QueryAgent
from ragserve.config import Settings

pytestmark = pytest.mark.integration

QUESTION = "How do I run several copies of a deployment?"
LLM_TIMEOUT_S = 1.5
ANSWER = "Set num_replicas on the deployment [1]."


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("faults-index")
    build_index(data_dir)
    return data_dir


def llm_settings(index_dir: Path, base_url: str) -> Settings:
    settings = settings_for(index_dir, port=free_port())
    llm = {
        "provider": "openai",
        "base_url": base_url,
        "model": "scripted",
        "timeout_s": LLM_TIMEOUT_S,
        "retries": 0,
    }
    return Settings.model_validate({**settings.model_dump(), "llm": llm})


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer([chat_reply(ANSWER)]) as server:
        yield server


@pytest.fixture
def base(index_dir: Path, scripted: ScriptedServer) -> Iterator[str]:
    settings = llm_settings(index_dir, scripted.base_url)
    agent = QueryAgent(settings, embedder=shared_embedder(), follow_live=True)
    with serving(settings, agent) as url:
        yield url


def ask(base: str, **extra: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(f"{base}/query", json={"query": QUESTION, **extra}, timeout=30)
    return response, time.monotonic() - started


def sse_events(response: httpx.Response) -> list[tuple[str, Any]]:
    events = []
    for block in response.text.split("\n\n"):
        lines = block.strip().splitlines()
        name = next((line[7:] for line in lines if line.startswith("event: ")), "message")
        data = [line[6:] for line in lines if line.startswith("data: ")]
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


def assert_degraded(body: dict[str, Any], reason: str) -> None:
    assert body["degraded"] is True
    assert body["llm"] != "scripted"
    assert body["sources"][0]["url"] == KNOWN_ANSWERS[QUESTION]
    assert body["answer"].strip()
    assert any(reason in warning for warning in body["warnings"]), body["warnings"]


FAULTS = {
    "slow": (Reply(delay_s=LLM_TIMEOUT_S + 2, body={}), "did not answer within"),
    "garbage": (Reply(body="<html>502 Bad Gateway</html>"), "something other than JSON"),
    "no_choices": (Reply(body={"id": "x", "object": "chat.completion"}), "no choices"),
    "server_error": (Reply(status=500, body={"error": "boom"}), "HTTP 500"),
}
STREAM_FAULTS = {
    "no_done": (Reply(sse=['{"choices": [{"delta": {"content": "Use"}}]}']), "without [DONE]"),
    "cut_mid_body": (
        Reply(sse=sse_reply(["Use ", "num_replicas"]).sse, cut_after=40),
        "broke off",
    ),
    "malformed_event": (Reply(sse=["{not json", "[DONE]"]), "malformed data"),
    "trickle": (
        Reply(sse=sse_reply([f"w{i} " for i in range(60)]).sse, pace_s=0.1),
        "did not finish within",
    ),
    "slow": (Reply(delay_s=LLM_TIMEOUT_S + 2, sse=["[DONE]"]), "did not answer within"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failing_llm_gives_a_degraded_answer_within_its_timeout_then_recovers(
    base: str, scripted: ScriptedServer, fault: str
) -> None:
    reply, reason = FAULTS[fault]
    scripted.script([reply])

    degraded, elapsed = ask(base)
    scripted.script([chat_reply(ANSWER)])
    recovered, _ = ask(base)

    assert degraded.status_code == 200
    assert_degraded(degraded.json(), reason)
    assert elapsed < LLM_TIMEOUT_S + 5
    assert recovered.status_code == 200
    assert recovered.json()["degraded"] is False
    assert recovered.json()["answer"] == ANSWER


@pytest.mark.parametrize("fault", sorted(STREAM_FAULTS))
def test_a_broken_answer_stream_ends_in_a_degraded_done_event(
    base: str, scripted: ScriptedServer, fault: str
) -> None:
    reply, reason = STREAM_FAULTS[fault]
    scripted.script([reply])

    response, elapsed = ask(base, stream=True)

    assert response.status_code == 200
    events = sse_events(response)
    names = [name for name, _ in events]
    assert names[-1] == "done", names
    assert "error" not in names
    assert_degraded(events[-1][1], reason)
    assert elapsed < LLM_TIMEOUT_S + 5
    streamed = "".join(data["text"] for name, data in events if name == "token")
    assert streamed.endswith(events[-1][1]["answer"])  # the passages follow any partial text


def test_an_llm_that_is_down_degrades_the_openai_route_too(index_dir: Path) -> None:
    settings = llm_settings(index_dir, f"http://127.0.0.1:{free_port()}/v1")
    agent = QueryAgent(settings, embedder=shared_embedder())
    chat = {"model": "ragserve", "messages": [{"role": "user", "content": QUESTION}]}
    with serving(settings, agent) as url:
        plain = httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=30)
        streamed = httpx.post(
            f"{url}/v1/chat/completions", json={**chat, "stream": True}, timeout=30
        )
        ready = httpx.get(f"{url}/readyz", timeout=30)

    assert plain.status_code == 200
    assert plain.json()["choices"][0]["message"]["content"].strip()
    assert streamed.status_code == 200
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert ready.status_code == 503
    assert any(problem.startswith("llm:") for problem in ready.json()["problems"])


def until_status(send: Callable[[], httpx.Response], status: int) -> httpx.Response:
    """``send()`` again until it answers ``status`` (the version poll and the readiness
    cache each take up to 2 s to notice a change); the last response after 15 s."""
    deadline = time.monotonic() + 15
    response = send()
    while response.status_code != status and time.monotonic() < deadline:
        time.sleep(0.2)
        response = send()
    return response


def test_a_server_started_before_the_index_exists_serves_it_once_built(tmp_path: Path) -> None:
    data_dir = tmp_path / "later"
    settings = settings_for(data_dir, port=free_port())
    agent = QueryAgent(settings, embedder=shared_embedder(), follow_live=True)
    with serving(settings, agent) as url:

        def search() -> httpx.Response:
            return httpx.post(f"{url}/search", json={"query": QUESTION}, timeout=30)

        def readyz() -> httpx.Response:
            return httpx.get(f"{url}/readyz", timeout=30)

        before = search()
        not_ready = readyz()
        build_index(data_dir)
        after = until_status(search, 200)
        ready = until_status(readyz, 200)

    assert before.status_code == 503
    assert before.json()["error"]["type"] == "index_not_found"
    assert "ragserve ingest" in before.json()["error"]["message"]
    assert not_ready.status_code == 503
    assert after.status_code == 200
    assert after.json()["sources"][0]["url"] == KNOWN_ANSWERS[QUESTION]
    assert ready.status_code == 200


def test_index_files_moved_away_keep_the_open_version_serving_and_fail_readiness(
    index_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "index"
    shutil.copytree(index_dir, data_dir)
    settings = settings_for(data_dir, port=free_port())
    agent = QueryAgent(settings, embedder=shared_embedder(), follow_live=True)
    with serving(settings, agent) as url:

        def readyz() -> httpx.Response:
            return httpx.get(f"{url}/readyz", timeout=30)

        assert readyz().status_code == 200
        data_dir.rename(tmp_path / "away")
        not_ready = until_status(readyz, 503)
        during = httpx.post(f"{url}/search", json={"query": QUESTION}, timeout=30)
        (tmp_path / "away").rename(data_dir)
        ready = until_status(readyz, 200)

    assert during.status_code == 200
    assert during.json()["sources"][0]["url"] == KNOWN_ANSWERS[QUESTION]
    assert not_ready.status_code == 503
    assert "ragserve ingest" in not_ready.json()["problems"][0]
    assert ready.status_code == 200


def test_a_qdrant_server_that_is_down_is_a_503_naming_it_and_fails_readiness(
    tmp_path: Path,
) -> None:
    # No Qdrant server binary installs here, so the server side of recovery is untested;
    # the store is opened per request until it works (nothing caches the failure).
    down = f"http://127.0.0.1:{free_port()}"
    base = settings_for(tmp_path, port=free_port())
    store = {"backend": "qdrant", "url": down, "timeout_s": 2}
    settings = Settings.model_validate({**base.model_dump(), "store": store})
    with serving(settings, QueryAgent(settings, embedder=shared_embedder())) as url:
        started = time.monotonic()
        first = httpx.post(f"{url}/search", json={"query": QUESTION}, timeout=30)
        second = httpx.post(f"{url}/search", json={"query": QUESTION}, timeout=30)
        elapsed = time.monotonic() - started
        ready = httpx.get(f"{url}/readyz", timeout=30)

    for response in (first, second):
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "store_unavailable"
        assert down in response.json()["error"]["message"]
    assert elapsed < 15
    assert ready.status_code == 503
    assert any(down in problem for problem in ready.json()["problems"])

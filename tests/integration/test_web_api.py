"""The page's routes in-process (``httpx.ASGITransport``): pages, assets, status, feedback.

Over the same tiny real index as ``test_api.py``; the browser tests in
``tests/e2e/test_web_page.py`` drive the page itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.support import api as shared
from tests.support.api import call, settings_for
from tests.support.index import KNOWN_ANSWERS, build_index, shared_embedder

from ragserve.agent import QueryAgent
from ragserve.feedback import FeedbackStore, feedback_path
from ragserve.serve import create_app

pytestmark = pytest.mark.integration

QUESTION = "How do I stream tokens to the client?"
KEY = "web-api-key-0123"


# The shared fixtures (tests/support/api.py): a real index and an agent over it.
index_dir, agent = shared.index_dir, shared.agent


def rated(answer: dict[str, Any], rating: str = "up", **extra: Any) -> dict[str, Any]:
    sources = [{key: s[key] for key in ("n", "url", "title", "score")} for s in answer["sources"]]
    return {
        "rating": rating,
        "question": answer["question"],
        "answer": answer["answer"],
        "sources": sources,
        **extra,
    }


def test_pages_and_assets_carry_the_security_headers(index_dir: Path, agent: QueryAgent) -> None:
    app = create_app(settings_for(index_dir), agent)
    chat = call(app, "GET", "/")
    status = call(app, "GET", "/status")
    script = call(app, "GET", "/ui/chat.js")

    assert chat.status_code == status.status_code == script.status_code == 200
    assert '<script type="module" src="/ui/chat.js">' in chat.text
    assert "<script>" not in chat.text  # no inline script: the policy would block it anyway
    policy = chat.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert chat.headers["x-frame-options"] == "DENY"
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text


def test_only_the_listed_assets_are_served(index_dir: Path, agent: QueryAgent) -> None:
    app = create_app(settings_for(index_dir), agent)

    assert call(app, "GET", "/ui/index.html").status_code == 404
    assert call(app, "GET", "/ui/..%2Fweb.py").status_code == 404
    assert call(app, "GET", "/ui/%2E%2E/app.py").status_code == 404
    assert "/" not in call(app, "GET", "/openapi.json").json()["paths"]


def test_status_describes_the_index_and_the_llm(index_dir: Path, agent: QueryAgent) -> None:
    body = call(create_app(settings_for(index_dir), agent), "GET", "/api/status").json()

    assert body["ready"] is True
    assert body["index"]["exists"] is True
    assert body["index"]["points"] == 10
    assert body["index"]["schema"]["embed_model"] == "all-MiniLM-L6-v2"
    assert body["llm"] == {
        "provider": "extractive",
        "model": "extractive",
        "reachable": True,
        "problem": None,
    }
    assert body["retrieve"]["k"] == 5
    assert body["auth_required"] is False


def test_unreachable_llm_shows_in_the_status(index_dir: Path) -> None:
    settings = settings_for(index_dir)
    settings = settings.model_copy(
        update={
            "llm": settings.llm.model_copy(
                update={"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "retries": 0}
            )
        }
    )
    agent = QueryAgent(settings, embedder=shared_embedder())
    body = call(create_app(settings, agent), "GET", "/api/status").json()

    assert body["ready"] is False
    assert body["llm"]["reachable"] is False
    assert body["llm"]["problem"]
    assert body["index"]["points"] == 10


def test_feedback_is_stored_and_updated_by_its_id(tmp_path: Path, index_dir: Path) -> None:
    data_dir = tmp_path / "data"
    agent = QueryAgent(settings_for(index_dir), embedder=shared_embedder())
    app = create_app(settings_for(data_dir), agent)  # feedback goes here; the agent reads index_dir
    answer = call(app, "POST", "/query", json={"query": QUESTION}).json()
    marked = KNOWN_ANSWERS[QUESTION]

    first = call(app, "POST", "/feedback", json=rated(answer, source=marked))
    second = call(
        app,
        "POST",
        "/feedback",
        json=rated(answer, "down", id=first.json()["id"], source=marked, comment=" too long "),
    )

    assert first.status_code == second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    [stored] = FeedbackStore(feedback_path(data_dir)).all()
    assert stored.rating == "down"
    assert stored.comment == "too long"
    assert stored.correct_source == marked
    assert stored.client == "ip-10.1.2.3"


def test_feedback_must_mark_one_of_the_answers_sources(tmp_path: Path, index_dir: Path) -> None:
    app = create_app(
        settings_for(tmp_path), QueryAgent(settings_for(index_dir), embedder=shared_embedder())
    )
    answer = call(app, "POST", "/query", json={"query": QUESTION}).json()

    wrong = call(app, "POST", "/feedback", json=rated(answer, source="https://evil.example/"))
    bad_rating = call(app, "POST", "/feedback", json=rated(answer, "meh"))
    forged_id = call(app, "POST", "/feedback", json=rated(answer, id="../../etc"))

    assert wrong.status_code == 400
    assert "one of the answer's 'sources'" in wrong.json()["error"]["message"]
    assert bad_rating.status_code == forged_id.status_code == 422


def test_feedback_and_status_need_the_key_and_count_against_the_limit(
    tmp_path: Path, index_dir: Path, agent: QueryAgent
) -> None:
    app = create_app(settings_for(tmp_path, api_keys=[KEY], rate_limit_per_minute=3), agent)
    payload = {"rating": "up", "question": QUESTION, "answer": "Use a StreamingResponse."}
    auth = {"Authorization": f"Bearer {KEY}"}

    assert call(app, "GET", "/").status_code == 200  # the page itself holds no data
    assert call(app, "GET", "/api/status").status_code == 401
    assert call(app, "POST", "/feedback", json=payload).status_code == 401
    # a wrong key is 401 like a missing one (HTTP's and OpenAI clients' reading)
    assert (
        call(app, "POST", "/feedback", json=payload, headers={"X-API-Key": "no"}).status_code == 401
    )
    statuses = [
        call(app, "POST", "/feedback", json=payload, headers=auth).status_code for _ in range(4)
    ]

    assert statuses == [200, 200, 200, 429]
    assert call(app, "GET", "/api/status", headers=auth).status_code == 429


def test_a_verdict_of_another_caller_is_never_overwritten(tmp_path: Path, index_dir: Path) -> None:
    other = "web-api-key-other"
    agent = QueryAgent(settings_for(index_dir), embedder=shared_embedder())
    app = create_app(settings_for(tmp_path, api_keys=[KEY, other]), agent)
    payload = {"rating": "up", "question": QUESTION, "answer": "Use a StreamingResponse."}

    mine = call(app, "POST", "/feedback", json=payload, headers={"X-API-Key": KEY}).json()
    theirs = call(
        app,
        "POST",
        "/feedback",
        json={**payload, "rating": "down", "id": mine["id"]},
        headers={"X-API-Key": other},
    ).json()

    assert theirs["id"] != mine["id"]
    ratings = sorted(record.rating for record in FeedbackStore(feedback_path(tmp_path)).all())
    assert ratings == ["down", "up"]


def test_heading_path_is_part_of_every_source(index_dir: Path, agent: QueryAgent) -> None:
    body = call(
        create_app(settings_for(index_dir), agent), "POST", "/query", json={"query": QUESTION}
    )

    source = body.json()["sources"][0]
    assert source["heading_path"] == ["HTTP ingress", "Streaming"]
    assert json.dumps(source)  # plain JSON values only


def test_status_shows_the_gate_score_recorded_with_the_version(tmp_path: Path) -> None:
    build_index(tmp_path)
    agent = QueryAgent(settings_for(tmp_path), embedder=shared_embedder())
    outcome = {"passed": True, "retrieval_score": 0.7, "evaluated_at": 1.0, "report": "r.html"}
    agent.store.set_meta({"eval": {**outcome, "questions": "dev.jsonl", "reasons": []}})

    body = call(create_app(settings_for(tmp_path), agent), "GET", "/api/status").json()

    assert body["index"]["last_eval"] == {**outcome, "questions": "dev.jsonl"}


def test_feedback_that_cannot_be_stored_as_text_is_a_422(tmp_path: Path, agent: QueryAgent) -> None:
    app = create_app(settings_for(tmp_path), agent)
    payload = '{"rating": "up", "question": "\\ud800 broken", "answer": "a"}'  # JSON escape

    response = call(
        app, "POST", "/feedback", content=payload, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422  # SQLite could not store it: refused, never a 500
    assert "question" in response.json()["error"]["message"]

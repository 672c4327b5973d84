"""The app on a real local Ray Serve, in both layouts: Ingress → Retriever +
Generator over handles (split), and one Ingress deployment answering in-process
(single)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.index import KNOWN_ANSWERS, build_index
from tests.support.ready import wait_until_ready

from ragserve.config import Settings
from ragserve.serve.deployments import run_serve, serve_config_yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "How do I stream tokens to the client?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module", params=["split", "single"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    import ray
    from ray import serve

    data_dir = tmp_path_factory.mktemp("serve-index")
    build_index(data_dir)
    port = free_port()
    settings = Settings.model_validate(
        {
            "store": {"data_dir": data_dir},
            "embed": {"device": "cpu"},
            "serve": {
                "host": "127.0.0.1",
                "port": port,
                # Two asked for: the embedded Edge index still pins one replica.
                "retriever_replicas": 2,
                "topology": request.param,
            },
        }
    )
    try:
        run_serve(settings, blocking=False)
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(base)
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()


def test_health_and_ready_over_real_http(served: str) -> None:
    assert httpx.get(f"{served}/healthz", timeout=10).json()["status"] == "ok"
    assert httpx.get(f"{served}/readyz", timeout=10).status_code == 200


def test_query_over_ray_serve_returns_a_cited_answer(served: str) -> None:
    response = httpx.post(
        f"{served}/query",
        json={"query": QUESTION},
        headers={"X-Request-ID": "ray-test-1"},
        timeout=60,
    )

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "ray-test-1"
    body = response.json()
    assert body["response"] == body["answer"]
    assert body["sources"][0]["url"] == KNOWN_ANSWERS[QUESTION]
    assert body["degraded"] is False


def test_streamed_query_over_ray_serve_passes_tokens_through(served: str) -> None:
    with httpx.stream(
        "POST", f"{served}/query", json={"query": QUESTION, "stream": True}, timeout=60
    ) as response:
        body = response.read().decode()

    assert response.status_code == 200
    names = [line[len("event: ") :] for line in body.splitlines() if line.startswith("event: ")]
    assert names[0] == "token"
    assert names[-2:] == ["sources", "done"]


def test_search_and_validation_over_ray_serve(served: str) -> None:
    search = httpx.post(f"{served}/search", json={"query": QUESTION, "k": 2}, timeout=30)
    invalid = httpx.post(f"{served}/search", json={"query": QUESTION, "k": 0}, timeout=30)

    assert search.status_code == 200
    assert search.json()["sources"][0]["url"] == KNOWN_ANSWERS[QUESTION]
    assert invalid.status_code == 422
    assert invalid.json()["error"]["type"] == "validation_error"


def test_edge_index_keeps_one_replica_per_deployment_and_config_renders(served: str) -> None:
    from ray import serve

    status = serve.status().applications["ragserve"].deployments
    running = {name: state.replica_states.get("RUNNING") for name, state in status.items()}
    if "Retriever" in status:  # split
        assert running == {"Ingress": 1, "Retriever": 1, "Generator": 1}
    else:  # single: the Ingress holds the index itself, so Edge pins it to one replica
        assert running == {"Ingress": 1}

    settings = Settings.model_validate(
        {"serve": {"api_keys": ["k-secret"], "port": 9999}, "llm": {"api_key": "sk-secret"}}
    )
    rendered = serve_config_yaml(settings)
    assert "ragserve.serve.deployments:app_builder" in rendered
    assert "port: 9999" in rendered
    assert "secret" not in rendered
    assert json.dumps("k-secret") not in rendered


def test_web_page_status_and_feedback_over_ray_serve(served: str) -> None:
    page = httpx.get(f"{served}/", timeout=30)
    script = httpx.get(f"{served}/ui/chat.js", timeout=30)
    status = httpx.get(f"{served}/api/status", timeout=30)
    answer = httpx.post(f"{served}/query", json={"query": QUESTION}, timeout=60).json()
    feedback = httpx.post(
        f"{served}/feedback",
        json={
            "rating": "up",
            "question": QUESTION,
            "answer": answer["answer"],
            "sources": [{"n": s["n"], "url": s["url"]} for s in answer["sources"]],
            "source": answer["sources"][0]["url"],
        },
        timeout=30,
    )

    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.headers["content-type"].startswith("text/javascript")
    assert status.status_code == 200
    assert status.json()["index"]["points"] == 10  # read in the replica that holds the index
    assert status.json()["llm"]["reachable"] is True
    assert feedback.status_code == 200
    assert len(feedback.json()["id"]) == 32


def test_index_copies_of_replicas_that_died_are_removed_and_live_ones_kept(
    tmp_path: Path,
) -> None:
    from ragserve.serve.deployments import _remove_orphaned_copies

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has any more (a killed replica's)
    dead = tmp_path / f"ragserve-replica-{gone.pid}-k1ll3d"
    live = tmp_path / f"ragserve-replica-{os.getpid()}-al1ve"
    unnamed = tmp_path / "ragserve-replica-0ld"  # made before pids were in the name
    for path in (dead, live, unnamed):
        (path / "collections").mkdir(parents=True)

    removed = _remove_orphaned_copies(tmp_path)

    assert removed == [dead]
    assert not dead.exists()
    assert live.exists()
    assert unnamed.exists()

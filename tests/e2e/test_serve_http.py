"""The service as a user runs it: a uvicorn process on 127.0.0.1, configured by env.

The LLM is a small OpenAI-compatible server on loopback that answers after a
delay, so the test can stop the service while a request is in flight and
check that the request still completes (graceful shutdown).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from tests.support.index import KNOWN_ANSWERS, build_index

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUESTION = "How do deployments call each other?"
API_KEY = "e2e-key-0123456789"
LLM_DELAY_S = 1.5


class _SlowChatModel(BaseHTTPRequestHandler):
    """``/v1/models`` and a non-streaming ``/v1/chat/completions`` that cites [1]."""

    def do_GET(self) -> None:
        self._json({"object": "list", "data": [{"id": "slow-model", "object": "model"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(LLM_DELAY_S)
        message = {"role": "assistant", "content": "Use deployment handles [1]."}
        self._json(
            {
                "id": "x",
                "object": "chat.completion",
                "model": "slow-model",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            }
        )

    def _json(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowChatModel)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def start_server(data_dir: Path, llm_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "RAGSERVE_STORE__DATA_DIR": str(data_dir),
        "RAGSERVE_EMBED__DEVICE": "cpu",
        "RAGSERVE_LLM__PROVIDER": "openai",
        "RAGSERVE_LLM__BASE_URL": llm_url,
        "RAGSERVE_LLM__MODEL": "slow-model",
        "RAGSERVE_SERVE__PORT": str(port),
        "RAGSERVE_SERVE__API_KEYS": json.dumps([API_KEY]),
    }
    code = (
        "from ragserve.config import load_settings\n"
        "from ragserve.serve import run_uvicorn\n"
        "run_uvicorn(load_settings(), log_level='warning')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited early with code {process.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError("the server did not become ready within 90s")


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("e2e-index")
    build_index(data_dir)
    return data_dir


def test_served_api_answers_with_key_and_refuses_without(index_dir: Path, llm_url: str) -> None:
    process, base = start_server(index_dir, llm_url)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    try:
        refused = httpx.post(f"{base}/query", json={"query": QUESTION}, timeout=30)
        answered = httpx.post(f"{base}/query", json={"query": QUESTION}, headers=auth, timeout=30)
        with httpx.stream(
            "POST",
            f"{base}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": QUESTION}], "stream": True},
            headers=auth,
            timeout=30,
        ) as stream:
            lines = [line for line in stream.iter_lines() if line]
        keyless_metrics = httpx.get(f"{base}/metrics", timeout=10)
        metrics = httpx.get(f"{base}/metrics", headers=auth, timeout=10).text
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert refused.status_code == 401
    assert answered.status_code == 200
    assert answered.json()["llm"] == "slow-model"
    assert answered.json()["answer"] == "Use deployment handles [1]."
    assert answered.json()["sources"][0]["url"] == KNOWN_ANSWERS[QUESTION]
    assert lines[-1] == "data: [DONE]"
    assert keyless_metrics.status_code == 401  # keyed unless serve.metrics_public
    assert 'route="/query",status="401"' in metrics


def test_shutdown_lets_the_in_flight_request_finish(index_dir: Path, llm_url: str) -> None:
    process, base = start_server(index_dir, llm_url)
    results: dict[str, httpx.Response] = {}

    def ask() -> None:
        results["response"] = httpx.post(
            f"{base}/query",
            json={"query": QUESTION},
            headers={"X-API-Key": API_KEY},
            timeout=30,
        )

    asker = threading.Thread(target=ask)
    asker.start()
    time.sleep(LLM_DELAY_S / 3)  # the request is now waiting on the LLM
    process.send_signal(signal.SIGTERM)
    asker.join(timeout=30)
    exit_code = process.wait(timeout=30)

    assert results["response"].status_code == 200
    assert results["response"].json()["degraded"] is False
    # uvicorn re-raises the captured SIGTERM after a clean shutdown.
    assert exit_code in {0, -signal.SIGTERM}

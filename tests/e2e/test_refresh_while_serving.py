"""Fresh while serving: a real server on 127.0.0.1 keeps answering while a real
``ragserve ingest`` of a changed corpus builds and switches a new index version,
and a rollback switches it back, all without a restart or a failed request."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.index import build_index

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUESTION = "Zanzibar quokka"
NEW_PAGE = "https://docs.example.org/serve/architecture.html"
CLIENTS = 4


def ragserve(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "ragserve.cli", *args, "--data-dir", str(data_dir)],
        cwd=data_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``ragserve serve --no-ray`` on a built index (v1), polling the pointer every 0.3 s."""
    data_dir = tmp_path / "index"
    build_index(data_dir)
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAGSERVE_EMBED__DEVICE": "cpu",
        "RAGSERVE_STORE__VERSION_POLL_S": "0.3",
        "RAGSERVE_SERVE__RATE_LIMIT_PER_MINUTE": "0",  # the load is the point here
    }
    command = [sys.executable, "-m", "ragserve.cli", "serve", "--no-ray", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited early with {process.returncode}"
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        raise AssertionError("the server did not become ready within 120s")
    yield base, data_dir
    process.terminate()
    process.wait(timeout=30)


class Load:
    """Clients posting /search in a loop; every response is recorded."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.failures: list[str] = []
        self.answers = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(f"{self.base}/search", json={"query": QUESTION})
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                self.answers += 1


def pages_found(base: str) -> list[str]:
    """The pages /search cites for QUESTION (the changed page exists only in v2)."""
    response = httpx.post(f"{base}/search", json={"query": QUESTION, "k": 5}, timeout=30)
    assert response.status_code == 200, response.text
    return [str(source["page_url"]) for source in response.json()["sources"]]


def wait_for_version(base: str, version: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = httpx.get(f"{base}/readyz", timeout=10).json()
        if ready.get("index_version") == version:
            return
        time.sleep(0.2)
    raise AssertionError(f"the server still reports {ready.get('index_version')}, not {version}")


def test_ingest_and_rollback_switch_a_running_server_without_a_failed_request(
    server: tuple[str, Path], small_corpus: Path
) -> None:
    base, data_dir = server
    page = small_corpus / "serve" / "architecture.html"
    html = page.read_text(encoding="utf-8")
    page.write_text(re.sub(r"(<h1[^>]*>)", rf"\1{QUESTION} ", html, count=1), encoding="utf-8")
    assert NEW_PAGE not in pages_found(base)

    with Load(base) as load:
        ingest = ragserve(
            "ingest",
            str(small_corpus),
            "--base-url",
            "https://docs.example.org/",
            "--json",
            data_dir=data_dir,
        )
        assert ingest.returncode == 0, ingest.stderr  # no "index in use" while serving
        summary = json.loads(ingest.stdout.strip().splitlines()[-1])
        assert summary["published"]
        assert summary["version"] == "v2"
        wait_for_version(base, "v2")
        switched_at = load.answers
        time.sleep(1.0)
        rollback = ragserve("index", "rollback", data_dir=data_dir)
        assert rollback.returncode == 0, rollback.stderr
        wait_for_version(base, "v1")
        time.sleep(0.5)

    assert load.failures == []
    assert switched_at > 0
    assert load.answers > switched_at
    assert NEW_PAGE not in pages_found(base)  # rolled back: the old answers again
    forward = ragserve("index", "rollback", "v2", data_dir=data_dir)
    assert forward.returncode == 0, forward.stderr
    wait_for_version(base, "v2")
    assert NEW_PAGE in pages_found(base)
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert 'ragserve_index_version{version="v2"} 1.0' in metrics

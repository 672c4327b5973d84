"""The server-level limits, over real sockets: slow bodies, huge heads, overload, usage.

uvicorn runs the app exactly as ``ragserve serve --no-ray`` does (``uvicorn_config``), on
127.0.0.1, and raw sockets play the misbehaving clients that an HTTP library never is.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support import api as shared
from tests.support.api import call, serving, settings_for
from tests.support.web import free_port

from ragserve.agent import QueryAgent

pytestmark = pytest.mark.integration

index_dir, agent, app = shared.index_dir, shared.agent, shared.app

BODY_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(index_dir: Path, agent: QueryAgent) -> Iterator[tuple[str, int]]:
    settings = settings_for(
        index_dir,
        port=free_port(),
        body_timeout_s=BODY_TIMEOUT_S,
        max_header_bytes=8192,
        max_in_flight=1,
    )
    with serving(settings, agent):
        yield ("127.0.0.1", settings.serve.port)


def read_status(sock: socket.socket, timeout_s: float) -> int:
    """The status code of the response on ``sock`` (0 when it closes without one)."""
    sock.settimeout(timeout_s)
    head = sock.recv(4096)
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0


def incomplete_post(address: tuple[str, int]) -> socket.socket:
    """A POST that declares 100 body bytes and sends 10."""
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(
        b"POST /search HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"query":"'
    )
    return sock


def test_a_body_that_never_completes_gets_408_after_the_body_timeout(
    server: tuple[str, int],
) -> None:
    started = time.monotonic()
    with incomplete_post(server) as sock:
        status = read_status(sock, timeout_s=BODY_TIMEOUT_S + 10)

    assert status == 408
    assert time.monotonic() - started < BODY_TIMEOUT_S + 5


def test_a_request_head_over_the_limit_is_refused_and_closed(server: tuple[str, int]) -> None:
    closed_while_sending = False
    with socket.create_connection(server, timeout=5) as sock:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
            for _ in range(64):  # a 1 MiB header, 16 KiB at a time
                sock.sendall(b"a" * 16384)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            # The server answered and hung up before reading the rest; the reset
            # can take the answer with it, so the hang-up is the refusal then.
            closed_while_sending = True
        try:
            status = read_status(sock, timeout_s=10)
        except ConnectionResetError:
            status = 0

    # h11 refuses it; uvicorn words every h11 refusal as 400.
    assert status in {400, 431} or (closed_while_sending and status == 0)
    assert httpx.get(f"http://{server[0]}:{server[1]}/healthz", timeout=10).status_code == 200


def test_over_max_in_flight_is_503_with_retry_after_and_probes_still_answer(
    server: tuple[str, int],
) -> None:
    base = f"http://{server[0]}:{server[1]}"
    with incomplete_post(server) as held:  # holds the one in-flight slot until its 408
        time.sleep(0.2)
        refused = httpx.post(f"{base}/search", json={"query": "replicas"}, timeout=10)
        probe = httpx.get(f"{base}/healthz", timeout=10)
        assert read_status(held, timeout_s=BODY_TIMEOUT_S + 10) == 408
    admitted = httpx.post(f"{base}/search", json={"query": "replicas"}, timeout=30)

    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "overloaded"
    assert probe.status_code == 200
    assert admitted.status_code == 200


def test_include_usage_ends_the_stream_with_a_usage_chunk(app: object) -> None:
    payload = {
        "messages": [{"role": "user", "content": "How do I scale replicas?"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = call(app, "POST", "/v1/chat/completions", json=payload)  # type: ignore[arg-type]
    datas = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    chunks = [json.loads(data) for data in datas[:-1]]

    assert response.status_code == 200
    assert datas[-1] == "[DONE]"
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert all(chunk["usage"] is None for chunk in chunks[:-1])

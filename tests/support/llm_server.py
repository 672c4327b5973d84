"""Real OpenAI-compatible servers on 127.0.0.1 for the LLM tests.

``llama_server`` runs ``python -m llama_cpp.server`` on the bundled gemma3-270m
(the real thing, skipped with a reason when llama-cpp-python[server] is not
installed). ``ScriptedServer`` is a tiny ``http.server`` that answers with a
script of statuses, so failure paths (401, 503 then 200, 404 model_not_found,
slow answers) are exercised over real HTTP and its attempts can be counted.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

GEMMA_ALIAS = "gemma3-270m"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_llama_cpp_server() -> None:
    """Skip the calling test unless ``llama_cpp.server`` and its extras import."""
    for module in ("llama_cpp", "sse_starlette", "starlette_context"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(
                f"{module} is not installed; install with: pip install "
                "'llama-cpp-python[server]' 'ragserve[llamacpp]'"
            )


@dataclass(frozen=True)
class RunningServer:
    base_url: str  # ends in /v1
    model: str


@contextlib.contextmanager
def llama_server(
    model_path: Path | None = None,
    *,
    n_ctx: int = 2048,
    alias: str = GEMMA_ALIAS,
    n_threads: int = 1,
) -> Iterator[RunningServer]:
    """``llama_cpp.server`` on a free port, ready when ``/v1/models`` answers.

    One thread by default: llama.cpp's worker threads spin while they wait,
    which on a small, shared CI machine is far slower than a single thread.
    """
    require_llama_cpp_server()
    from ragserve.generate.llamacpp import default_model_path

    path = model_path or default_model_path()
    port = free_port()
    command = [
        sys.executable, "-m", "tests.support.llama_server_main",
        "--model", str(path), "--model_alias", alias,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(n_threads),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            _wait_until_ready(process, f"{base_url}/models", log)
            yield RunningServer(base_url=base_url, model=alias)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Any) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"llama_cpp.server exited early:\n{log.read()[-2000:].decode()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"llama_cpp.server did not answer {url} within 120s")


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, JSON (or raw text) body, headers, delay."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    sse: Sequence[str] = ()  # event payloads; sent as text/event-stream when given
    pace_s: float = 0.0  # pause before each SSE event (a server trickling tokens)
    cut_after: int | None = None  # bytes of the body sent before the connection drops


def chat_reply(text: str, *, model: str = "scripted") -> Reply:
    return Reply(
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
    )


def sse_reply(deltas: Sequence[str]) -> Reply:
    events = [
        json.dumps({"choices": [{"index": 0, "delta": {"content": delta}}]}) for delta in deltas
    ]
    return Reply(sse=[*events, "[DONE]"])


class ScriptedServer:
    """An HTTP server whose ``/chat/completions`` answers follow a script.

    Replies are used in order and the last one repeats; ``attempts`` counts
    chat requests and ``requests`` keeps their JSON bodies and headers.
    """

    def __init__(self, chat: Sequence[Reply], models: Reply | None = None) -> None:
        self.chat = list(chat)
        self.models = models or Reply(status=404, body={"error": "no such route"})
        self.attempts = 0
        self.requests: list[tuple[dict[str, str], Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, chat: Sequence[Reply]) -> None:
        """Answer with ``chat`` from now on, counting attempts afresh."""
        with self._lock:
            self.chat = list(chat)
            self.attempts = 0
            self.requests.clear()

    def _next_chat_reply(self, headers: dict[str, str], body: Any) -> Reply:
        with self._lock:
            self.attempts += 1
            self.requests.append((headers, body))
            return self.chat[min(self.attempts, len(self.chat)) - 1]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                if self.path.endswith("/models"):
                    self._send(scripted.models)
                else:
                    self._send(Reply(status=404, body={"error": "not found"}))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                headers = {key.lower(): value for key, value in self.headers.items()}
                self._send(scripted._next_chat_reply(headers, body))

            def _send(self, reply: Reply) -> None:
                time.sleep(reply.delay_s)
                if reply.sse:
                    payload = "".join(f"data: {event}\n\n" for event in reply.sse).encode()
                    content_type = "text/event-stream"
                elif isinstance(reply.body, str):
                    payload, content_type = reply.body.encode(), "text/plain"
                else:
                    payload, content_type = json.dumps(reply.body).encode(), "application/json"
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._write_body(reply, payload)

            def _write_body(self, reply: Reply, payload: bytes) -> None:
                """The body as scripted: paced event by event, or cut short."""
                if reply.cut_after is not None:
                    payload = payload[: reply.cut_after]  # Content-Length promised more
                if not (reply.sse and reply.pace_s):
                    self.wfile.write(payload)
                    return
                for event in payload.split(b"\n\n"):
                    if event:
                        time.sleep(reply.pace_s)
                        self.wfile.write(event + b"\n\n")
                        self.wfile.flush()

        return Handler

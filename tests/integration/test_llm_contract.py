"""One contract for every ``LLM`` backend: OpenAI-compatible HTTP, the offline model, extractive.

Each test runs against the OpenAI-compatible client talking to a real HTTP
server on 127.0.0.1 (``tests.support.llm_server.ScriptedServer``, answering
chat and SSE bodies), the offline Qwen GGUF run in-process by llama.cpp
(slow; skipped when the model is not fetched) and the model-free extractive
backend. The behaviours: a whole answer, a stream that adds up to text,
citations only of sources the prompt holds, failures raised as ``LLMError``
(never an empty answer), and a prompt with no sources still answered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.llm_server import Reply, ScriptedServer, chat_reply, sse_reply

from ragserve.config import LLMSettings, load_settings
from ragserve.documents import Chunk, ScoredChunk
from ragserve.errors import LLMError, ModelNotFetchedError
from ragserve.generate import LLM, ExtractiveLLM, OpenAICompatibleLLM, build_llm, build_prompt
from ragserve.generate.citations import cite_from_chunks
from ragserve.generate.local import LocalLLM

pytestmark = pytest.mark.integration

QUESTION = "How do I run several copies of a deployment?"
SCRIPTED_ANSWER = "Set num_replicas on the deployment to run several copies of it [1]."
CHUNKS = [
    ScoredChunk(
        chunk=Chunk(
            id=f"c{n}",
            text=text,
            url=f"https://docs.example.org/serve/{n}.html",
            section_url=f"https://docs.example.org/serve/{n}.html#part",
            title=f"Serve page {n}",
            heading_path=("Serve", f"Page {n}"),
            ordinal=0,
            document_hash="h",
            chunk_count=1,
        ),
        score=1.0 / n,
    )
    for n, text in enumerate(
        [
            "Set num_replicas on a Ray Serve deployment to run several copies of it.",
            "Autoscaling adds and removes replicas as the number of ongoing requests changes.",
        ],
        start=1,
    )
]


class _ChatOrStream(ScriptedServer):
    """A real HTTP server that answers a streamed request with SSE, any other with JSON."""

    def __init__(self, answer: str) -> None:
        super().__init__([chat_reply(answer)])
        self._stream_reply = sse_reply([word + " " for word in answer.split()])

    def _next_chat_reply(self, headers: dict[str, str], body: Any) -> Reply:
        reply = super()._next_chat_reply(headers, body)
        return self._stream_reply if isinstance(body, dict) and body.get("stream") else reply


@dataclass
class Backend:
    name: str
    llm: LLM


@pytest.fixture(scope="module")
def qwen() -> LLM:
    try:
        llm = build_llm(LLMSettings(provider="local", max_tokens=48), load_settings().models_dir)
    except ModelNotFetchedError as exc:
        pytest.skip(f"{exc}")
    llm.check()
    return llm


@pytest.fixture(
    params=["openai", pytest.param("local", marks=pytest.mark.slow), "extractive"],
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "openai":
        with _ChatOrStream(SCRIPTED_ANSWER) as server:
            yield Backend("openai", OpenAICompatibleLLM(server.base_url, model="scripted"))
    elif request.param == "local":
        yield Backend("local", request.getfixturevalue("qwen"))
    else:
        yield Backend("extractive", ExtractiveLLM())


def test_complete_returns_text_with_the_model_and_usage(backend: Backend) -> None:
    prompt = build_prompt(QUESTION, CHUNKS, backend.llm, max_tokens=48)

    completion = backend.llm.complete(prompt, max_tokens=48, temperature=0.0)

    assert completion.text.strip()
    assert completion.model == backend.llm.model
    assert set(completion.usage) >= {"prompt_tokens", "completion_tokens"}
    assert all(count >= 0 for count in completion.usage.values())


def test_stream_yields_text_deltas(backend: Backend) -> None:
    prompt = build_prompt(QUESTION, CHUNKS, backend.llm, max_tokens=48)

    deltas = list(backend.llm.stream(prompt, max_tokens=48, temperature=0.0))

    assert deltas
    assert all(isinstance(delta, str) and delta for delta in deltas)
    assert "".join(deltas).strip()


def test_citations_name_only_sources_the_prompt_holds(backend: Backend) -> None:
    prompt = build_prompt(QUESTION, CHUNKS, backend.llm, max_tokens=48)

    text = backend.llm.complete(prompt, max_tokens=48, temperature=0.0).text
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", cite_from_chunks(text, CHUNKS))}

    assert prompt.sources_used == len(CHUNKS)
    assert cited <= set(range(1, prompt.sources_used + 1)), text


def test_a_prompt_without_sources_is_still_answered_and_cites_nothing(backend: Backend) -> None:
    prompt = build_prompt(QUESTION, [], backend.llm, max_tokens=48)

    text = backend.llm.complete(prompt, max_tokens=48, temperature=0.0).text

    assert prompt.sources_used == 0
    assert text.strip()
    if backend.name != "openai":  # the scripted server answers the same whatever it is sent
        assert not re.search(r"\[\d+\]", text), text


def test_a_failing_backend_raises_llm_error_not_an_empty_answer(
    backend: Backend, tmp_path: Path
) -> None:
    prompt = build_prompt(QUESTION, CHUNKS, backend.llm, max_tokens=48)
    if backend.name == "extractive":
        pytest.skip("the extractive backend has nothing to fail: it reaches no model")
    if backend.name == "openai":
        failing: LLM = OpenAICompatibleLLM(_server_error(), model="scripted", retries=0)
    else:  # the model file went missing after configuration
        failing = LocalLLM(tmp_path / "absent.gguf")

    with pytest.raises(LLMError):
        failing.complete(prompt, max_tokens=48, temperature=0.0)


_SERVERS: list[ScriptedServer] = []


def _server_error() -> str:
    """A real server that answers every chat request with HTTP 500 (closed at exit)."""
    server = ScriptedServer([Reply(status=500, body={"error": {"message": "boom"}})])
    server.__enter__()
    _SERVERS.append(server)
    return server.base_url


@pytest.fixture(autouse=True, scope="module")
def _close_servers() -> Iterator[None]:
    yield
    for server in _SERVERS:
        server.__exit__(None, None, None)

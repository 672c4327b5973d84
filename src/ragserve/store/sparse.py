"""The keyword side of hybrid search: BM25 sparse vectors plus whole identifiers.

Qdrant Edge's ``Bm25`` (Rust: word tokenizer, English stopwords, Snowball
stemming) does the BM25 term weighting; the store applies IDF at query time
(sparse vector ``bm25`` has ``Modifier.Idf``). Its tokenizer splits code
identifiers, so ``map_batches`` and "map the batches" become the same tokens.
Docs questions name identifiers exactly (``map_batches``,
``ray.serve.deployment``, ``num_replicas``), so a second pass also emits each
compound identifier whole, its dotted sub-paths and its camelCase parts.
Whole identifiers are rare terms, so IDF weights an exact match highly.

Indices are 32-bit murmur3 hashes (the ``Bm25`` ones are its own), never
Python's salted ``hash()``: the same text gives the same vector in every
process, which the index depends on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import mmh3
from qdrant_edge import Bm25, Bm25Config

from ragserve.documents import SparseVector

#: Name of this encoding; store it as ``IndexSchema.sparse`` so an index built
#: with another encoding is refused rather than silently mis-scored.
SPARSE_ENCODING = "bm25+ident/1"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_IDENT_SEED = 0x52414753  # "RAGS": keeps identifier hashes apart from plain words
_MAX_DOTTED_PARTS = 6


class SparseEncoder:
    """Turns texts into BM25 sparse vectors with exact identifier terms.

    Cheap to construct and picklable (the Rust ``Bm25`` model is rebuilt
    lazily after unpickling), so Ray workers can receive it by value. Encoding
    is deterministic across processes and machines.
    """

    name = SPARSE_ENCODING

    def __init__(self, *, k: float = 1.2, b: float = 0.75, avg_len: float = 256.0) -> None:
        self.k = k
        self.b = b
        self.avg_len = avg_len
        self._bm25: Bm25 | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"k": self.k, "b": self.b, "avg_len": self.avg_len}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Document vectors: BM25-saturated term frequencies (IDF comes from the store)."""
        return [self._encode_document(text) for text in texts]

    def encode_query(self, text: str) -> SparseVector:
        """Query vector: weight 1.0 per distinct term, as BM25 expects."""
        identifiers, camel_parts = _identifier_terms(text)
        bm25_text = f"{text} {' '.join(camel_parts)}" if camel_parts else text
        weights = _as_dict(self._model().embed_query(bm25_text))
        for term in set(identifiers):
            weights[_identifier_index(term)] = 1.0
        return _to_sparse(weights)

    def _encode_document(self, text: str) -> SparseVector:
        identifiers, camel_parts = _identifier_terms(text)
        bm25_text = f"{text} {' '.join(camel_parts)}" if camel_parts else text
        weights = _as_dict(self._model().embed_document(bm25_text))
        if identifiers:
            length_norm = 1.0 - self.b + self.b * (text.count(" ") + 1) / self.avg_len
            for term, frequency in Counter(identifiers).items():
                index = _identifier_index(term)
                weight = frequency * (self.k + 1.0) / (frequency + self.k * length_norm)
                weights[index] = weights.get(index, 0.0) + weight
        return _to_sparse(weights)

    def _model(self) -> Bm25:
        if self._bm25 is None:
            self._bm25 = Bm25(Bm25Config(k=self.k, b=self.b, avg_len=self.avg_len))
        return self._bm25


def identifier_terms(text: str) -> list[str]:
    """The whole-identifier terms a text contributes (lower-cased), for debugging."""
    return _identifier_terms(text)[0]


def _identifier_terms(text: str) -> tuple[list[str], list[str]]:
    """Compound identifiers (with repeats) and the camelCase parts to add as words."""
    terms: list[str] = []
    camel_parts: list[str] = []
    for token in _IDENTIFIER.findall(text):
        if "." not in token and "_" not in token and (token[1:].islower() or token.isupper()):
            continue  # a plain word: the fast path for almost every token
        parts = token.split(".")
        if len(parts) > 1:
            if all(len(part) <= 1 for part in parts):
                continue  # "e.g", "i.e": abbreviations, not code
            parts = parts[-_MAX_DOTTED_PARTS:]
            for start in range(len(parts)):
                for end in range(start + 2, len(parts) + 1):
                    terms.append(".".join(parts[start:end]).lower())
        for part in parts:
            if _is_compound(part):
                terms.append(part.lower())
                for piece in part.split("_"):
                    if _CAMEL_BOUNDARY.search(piece):
                        camel_parts.extend(_CAMEL_BOUNDARY.split(piece))
    return terms, camel_parts


def _is_compound(word: str) -> bool:
    core = word.strip("_")
    return "_" in core or (_CAMEL_BOUNDARY.search(core) is not None and not core.isupper())


def _identifier_index(term: str) -> int:
    index: int = mmh3.hash(term, _IDENT_SEED, signed=False)
    return index


def _as_dict(vector: Any) -> dict[int, float]:
    return dict(zip(vector.indices, vector.values, strict=True))


def _to_sparse(weights: dict[int, float]) -> SparseVector:
    indices = sorted(weights)
    return SparseVector(indices=tuple(indices), values=tuple(weights[i] for i in indices))

"""ragserve: question answering over your documentation, with cited sources.

The public API is what this module exports; everything else is internal.
Heavy modules (Ray, torch, Qdrant) load lazily, so ``import ragserve`` is fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragserve.config import Settings, load_settings
from ragserve.documents import Answer, Chunk, Document, Section, Source
from ragserve.errors import (
    ConfigError,
    ContentError,
    EmbedderError,
    FetchError,
    IndexNotFoundError,
    LLMAuthError,
    LLMError,
    LLMModelNotFoundError,
    LLMUnavailableError,
    MissingDependencyError,
    QueryError,
    RagserveError,
    SchemaMismatchError,
    ScopeError,
    SourceError,
    StoreError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from ragserve.agent import QueryAgent
    from ragserve.embed import Embedder
    from ragserve.generate.base import LLM
    from ragserve.ingest.pipeline import IngestSummary, run_ingest
    from ragserve.query import SearchFilter, SearchMode
    from ragserve.rerank import Reranker
    from ragserve.store.base import VectorStore

__version__ = "0.1.0"

_LAZY = {
    "QueryAgent": "ragserve.agent",
    "run_ingest": "ragserve.ingest.pipeline",
    "IngestSummary": "ragserve.ingest.pipeline",
    "SearchFilter": "ragserve.query",
    "SearchMode": "ragserve.query",
    # The seams users implement: pass an instance to QueryAgent (or write a
    # backend) and it is checked against these Protocols by mypy, not at run time.
    "Embedder": "ragserve.embed",
    "LLM": "ragserve.generate.base",
    "Reranker": "ragserve.rerank",
    "VectorStore": "ragserve.store.base",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragserve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "LLM",
    "Answer",
    "Chunk",
    "ConfigError",
    "ContentError",
    "Document",
    "Embedder",
    "EmbedderError",
    "FetchError",
    "IndexNotFoundError",
    "IngestSummary",
    "LLMAuthError",
    "LLMError",
    "LLMModelNotFoundError",
    "LLMUnavailableError",
    "MissingDependencyError",
    "QueryAgent",
    "QueryError",
    "RagserveError",
    "Reranker",
    "SchemaMismatchError",
    "ScopeError",
    "SearchFilter",
    "SearchMode",
    "Section",
    "Settings",
    "Source",
    "SourceError",
    "StoreError",
    "StoreUnavailableError",
    "VectorStore",
    "__version__",
    "load_settings",
    "run_ingest",
]

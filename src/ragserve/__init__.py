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
    from ragserve.ingest.pipeline import IngestSummary, run_ingest

__version__ = "0.1.0"

_LAZY = {
    "QueryAgent": "ragserve.agent",
    "run_ingest": "ragserve.ingest.pipeline",
    "IngestSummary": "ragserve.ingest.pipeline",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragserve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "Answer",
    "Chunk",
    "ConfigError",
    "ContentError",
    "Document",
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
    "SchemaMismatchError",
    "ScopeError",
    "Section",
    "Settings",
    "Source",
    "SourceError",
    "StoreError",
    "StoreUnavailableError",
    "__version__",
    "load_settings",
    "run_ingest",
]

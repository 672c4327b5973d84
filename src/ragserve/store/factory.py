"""Pick the ``VectorStore`` backend named in ``StoreSettings``."""

from __future__ import annotations

from ragserve.config import StoreSettings
from ragserve.errors import ConfigError
from ragserve.store.base import VectorStore


def open_store(settings: StoreSettings) -> VectorStore:
    """The store ``settings`` describe; nothing is opened or contacted yet.

    Call ``open(schema)`` on the result before writing. ``"edge"`` keeps the
    index in-process under ``data_dir``; ``"qdrant"`` talks to the server at
    ``url``.
    """
    if settings.backend == "edge":
        from ragserve.store.edge import EdgeStore

        return EdgeStore(settings.data_dir, settings.collection, hnsw_ef=settings.hnsw_ef)
    if settings.backend == "qdrant":
        if not settings.url:
            raise ConfigError(
                "store.backend is 'qdrant' but no server URL is set; pass --qdrant-url or "
                "set RAGSERVE_STORE__URL (e.g. http://localhost:6333)"
            )
        from ragserve.store.qdrant import QdrantServerStore

        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        return QdrantServerStore(
            settings.url,
            settings.collection,
            api_key=api_key,
            timeout_s=settings.timeout_s,
            hnsw_ef=settings.hnsw_ef,
        )
    raise ConfigError(f"unknown store.backend '{settings.backend}'; use 'edge' or 'qdrant'")

"""Where chunks live: the ``VectorStore`` seam and its two backends.

``open_store(settings.store)`` picks Qdrant Edge (in-process, default) or a
Qdrant server; ``SparseEncoder`` makes the keyword vectors both index.
"""

from ragserve.query import SearchFilter, SearchMode
from ragserve.store.base import IndexedChunk, IndexSchema, PageState, VectorStore
from ragserve.store.factory import open_store
from ragserve.store.sparse import SPARSE_ENCODING, SparseEncoder

__all__ = [
    "SPARSE_ENCODING",
    "IndexSchema",
    "IndexedChunk",
    "PageState",
    "SearchFilter",
    "SearchMode",
    "SparseEncoder",
    "VectorStore",
    "open_store",
]

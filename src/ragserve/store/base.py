"""The ``VectorStore`` seam: what ingest and retrieval need from Qdrant.

Two implementations pass the same contract tests
(``tests/integration/test_store_contract.py``): ``EdgeStore`` (Qdrant Edge,
in-process, the default) and ``QdrantServerStore`` (qdrant-client: a server by
URL, or local mode for tests). Nothing outside ``ragserve.store`` imports
``qdrant_edge`` or ``qdrant_client``.

Incremental sync rests on three payload fields every point carries:
``url``, ``document_hash`` and ``chunk_count``. A page is stored completely when
all its points share one ``document_hash`` and there are ``chunk_count`` of
them; anything else (a killed ingest, a half-replaced page) is repaired by the
next run. See ``ragserve.ingest.sync``.

Index versions: a collection is a series of versions of which one is live.
A handle made by ``open_store`` reads the live version (it binds to it on first
use, and stays on it until closed); ``stage_version`` starts a new version,
seeded from the live one, that nobody reads until ``publish_version`` switches
the live pointer (Edge: a ``current`` file replaced atomically; server: a
collection alias). The policy on top (drafts, gate, rollback, prune) is in
``ragserve.store.versions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ragserve.documents import Chunk, ScoredChunk, SparseVector
from ragserve.query import SearchFilter as SearchFilter
from ragserve.query import SearchMode as SearchMode

#: Bumped when the payload layout or sparse encoding changes incompatibly.
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class IndexSchema:
    """What an index was built with; checked when it is opened again.

    A mismatch in ``embed_model`` or ``dimension`` means stored vectors and
    query vectors live in different spaces: results would be garbage, so the
    store refuses with ``SchemaMismatchError`` instead.
    """

    embed_model: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    section_aware: bool = True
    distance: str = "cosine"
    sparse: str = "bm25"
    version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexSchema:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    """A chunk with its vectors, ready to write."""

    chunk: Chunk
    dense: npt.NDArray[np.float32]
    sparse: SparseVector


@dataclass(frozen=True, slots=True)
class PageState:
    """What the index holds for one page (aggregated over its points)."""

    url: str
    document_hashes: frozenset[str]
    points: int
    chunk_count: int
    etag: str | None = None
    last_modified: str | None = None

    @property
    def complete(self) -> bool:
        """True when exactly one version of the page is fully stored."""
        return len(self.document_hashes) == 1 and self.points == self.chunk_count


@runtime_checkable
class VectorStore(Protocol):
    """One collection of chunks with dense + sparse vectors and payload."""

    @property
    def name(self) -> str:
        """The collection name."""
        ...

    def open(self, schema: IndexSchema, *, recreate: bool = False) -> None:
        """Create the collection, or open it and check ``schema`` matches.

        Raises ``SchemaMismatchError`` when the stored schema differs in model,
        dimension or chunking (unless ``recreate``, which drops the data).
        """
        ...

    def stored_schema(self) -> IndexSchema | None:
        """The schema the collection was created with, or None if absent."""
        ...

    def exists(self) -> bool: ...

    def upsert(
        self, points: Sequence[IndexedChunk], page_meta: dict[str, dict[str, Any]] | None = None
    ) -> int:
        """Write points (idempotent by id); returns how many were written.

        ``page_meta`` optionally maps url -> extra payload (``etag``,
        ``last_modified``, ``ingested_at``) stored on that page's points.
        """
        ...

    def delete_page(self, url: str, keep_hash: str | None = None) -> int:
        """Delete a page's points, except those of version ``keep_hash``.

        Returns the number of points deleted.
        """
        ...

    def page_states(self) -> dict[str, PageState]:
        """Every stored page and its completeness, for incremental sync."""
        ...

    def count(self) -> int:
        """Number of chunk points in the collection."""
        ...

    def search(
        self,
        *,
        dense: npt.NDArray[np.float32] | None,
        sparse: SparseVector | None,
        limit: int,
        mode: SearchMode = "hybrid",
        candidates: int = 40,
        search_filter: SearchFilter | None = None,
    ) -> list[ScoredChunk]:
        """Top ``limit`` chunks; hybrid fuses dense and sparse by RRF."""
        ...

    def get_meta(self) -> dict[str, Any]:
        """Free-form collection metadata (last ingest summary, etc.)."""
        ...

    def set_meta(self, meta: dict[str, Any]) -> None:
        """Merge ``meta`` into the collection metadata."""
        ...

    def drop(self) -> None:
        """Delete the collection and its data."""
        ...

    def close(self) -> None: ...

    def optimize(self) -> bool:
        """Finish the dense index after a bulk write; True if anything changed.

        Edge builds its HNSW graph here (call once per ingest, not per batch);
        a server optimises on its own, so there it does nothing and says False.
        """
        ...

    def copy_to(self, data_dir: Path) -> bool:
        """Copy this handle's version into a private index under ``data_dir``.

        For a process that must open the index alone (Edge's WAL lock allows
        one process per index): a Serve replica opens the copy with
        ``data_dir`` in place of ``store.data_dir``. False when the backend
        keeps nothing local to copy (a server is shared by URL).
        """
        ...

    # -- versions (policy in ragserve.store.versions) ---------------------

    @property
    def version(self) -> str | None:
        """The version this handle reads and writes (the live one unless pinned)."""
        ...

    def live_version(self) -> str | None:
        """The version readers get now; cheap (a file read or an alias lookup)."""
        ...

    def version_names(self) -> list[str]:
        """Every version that was completely created, oldest first (live or not)."""
        ...

    def stage_version(self, *, seed: bool = True) -> VectorStore:
        """A handle on a new version nobody reads yet, a copy of the live one if ``seed``.

        Without ``seed`` (or without a live version) the new version is empty
        and its first ``open(schema)`` creates it.
        """
        ...

    def at_version(self, version: str) -> VectorStore:
        """A handle pinned to ``version`` (which need not be live)."""
        ...

    def publish_version(self, version: str) -> None:
        """Make ``version`` live in one atomic step; readers move on their next open."""
        ...

    def drop_version(self, version: str) -> None:
        """Delete one version that is not live; raises ``VersionError`` for the live one."""
        ...

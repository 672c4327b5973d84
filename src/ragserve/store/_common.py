"""What both store backends share: names, schema checks, payloads, page states.

Keeping these in one place is what lets Qdrant Edge and qdrant-client pass the
same contract tests: the point layout, the refusal messages and the page
aggregation cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from ragserve.documents import SparseVector
from ragserve.errors import QueryError, SchemaMismatchError, StoreError
from ragserve.query import SearchFilter, SearchMode
from ragserve.store.base import IndexedChunk, IndexSchema, PageState

#: Named vectors of every collection.
DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
#: Payload fields with a keyword index; ``url`` also serves prefix matches.
KEYWORD_INDEXED = ("url", "document_hash")
#: Only these payload fields are read to aggregate page states.
PAGE_STATE_FIELDS = ["url", "document_hash", "chunk_count", "etag", "last_modified"]
#: RRF constant; both backends use it so fused scores are comparable.
RRF_K = 60
#: Points read per scroll page when aggregating page states.
SCROLL_PAGE = 4096
D = TypeVar("D")


def backend_distance(schema: IndexSchema, by_name: Mapping[str, D]) -> D:
    """The backend's distance for ``schema.distance`` (case-insensitive), or ``StoreError``."""
    distance = by_name.get(schema.distance.lower())
    if distance is None:
        raise StoreError(
            f"unknown distance '{schema.distance}'; use one of {', '.join(sorted(by_name))}"
        )
    return distance


@dataclass(frozen=True, slots=True)
class Condition:
    """One backend-neutral filter condition: ``key`` matches ``value`` as ``kind`` says."""

    key: str
    kind: Literal["value", "any", "prefix"]
    value: Any


def filter_conditions(search_filter: SearchFilter | None) -> list[Condition] | None:
    """The conditions that must all hold for ``search_filter``; None when unfiltered.

    Both backends build their ``Filter(must=...)`` from this list, so a list
    always means "match any" and ``url_prefix`` always matches the page URL.
    """
    if search_filter is None or search_filter.is_empty():
        return None
    conditions = [
        Condition(key, "any" if isinstance(value, list) else "value", value)
        for key, value in search_filter.equals.items()
    ]
    if search_filter.url_prefix:
        conditions.append(Condition("url", "prefix", search_filter.url_prefix))
    return conditions


def draft_meta(seeded_from: str | None) -> dict[str, Any]:
    """What a version being built records; ``ragserve.store.versions`` owns the states."""
    return {"version": {"state": "draft", "seeded_from": seeded_from, "created_at": time.time()}}


def check_schema(name: str, stored: IndexSchema, requested: IndexSchema) -> None:
    """Refuse to open an index built with another embedder, chunking or layout."""
    if stored == requested:
        return
    differing = [
        key for key, value in requested.to_dict().items() if stored.to_dict().get(key) != value
    ]
    raise SchemaMismatchError(
        f"index '{name}' was built with {describe(stored)}; you asked for "
        f"{describe(requested)} (differs in: {', '.join(differing)}). "
        f"Re-ingest with --recreate, or pass --embed-model {stored.embed_model} and the "
        f"chunking it was built with."
    )


def describe(schema: IndexSchema) -> str:
    section = "section-aware" if schema.section_aware else "plain"
    return (
        f"{schema.embed_model} ({schema.dimension}-d, {schema.distance}), "
        f"{section} chunks of {schema.chunk_size}/{schema.chunk_overlap}, "
        f"sparse {schema.sparse}, layout v{schema.version}"
    )


def check_dimensions(name: str, schema: IndexSchema, points: Sequence[IndexedChunk]) -> None:
    """Catch wrong-sized vectors before the backend does, with a message that helps."""
    for point in points:
        if point.dense.shape != (schema.dimension,):
            raise SchemaMismatchError(
                f"index '{name}' holds {schema.dimension}-d vectors from {schema.embed_model}, "
                f"but chunk {point.chunk.id} came with a vector of shape {point.dense.shape}; "
                f"embed with {schema.embed_model} or re-ingest with --recreate"
            )


def point_payload(
    point: IndexedChunk, page_meta: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """The stored payload: page extras first, so they can never clobber chunk fields."""
    extra = page_meta.get(point.chunk.url, {}) if page_meta else {}
    return {**extra, **point.chunk.payload()}


def dense_list(vector: npt.NDArray[np.float32]) -> list[float]:
    values: list[float] = np.asarray(vector, dtype=np.float32).tolist()
    return values


def resolve_mode(
    mode: SearchMode,
    dense: npt.NDArray[np.float32] | None,
    sparse: SparseVector | None,
) -> SearchMode:
    """Which side(s) to search; hybrid with one side missing searches the other.

    An empty sparse query (only stopwords) cannot rank anything, so it counts
    as missing.
    """
    has_dense = dense is not None
    has_sparse = sparse is not None and len(sparse.indices) > 0
    if mode == "dense" and not has_dense:
        raise QueryError("dense search needs a query vector; embed the question first")
    if mode == "sparse" and sparse is None:
        raise QueryError("sparse search needs a sparse query vector; encode the question first")
    if mode == "hybrid":
        if has_dense and has_sparse:
            return "hybrid"
        if has_dense:
            return "dense"
        if sparse is not None:
            return "sparse"
        raise QueryError("search needs a dense or a sparse query vector; got neither")
    return mode


@dataclass
class _PageAccumulator:
    hashes: set[str] = field(default_factory=set)
    points: int = 0
    chunk_count: int = 0
    etag: str | None = None
    last_modified: str | None = None


def aggregate_page_states(payloads: Iterable[Mapping[str, Any]]) -> dict[str, PageState]:
    """Fold point payloads into one ``PageState`` per URL.

    With several versions of a page present, ``chunk_count`` is the largest
    one seen; such a page is incomplete anyway and gets rewritten.
    """
    pages: dict[str, _PageAccumulator] = {}
    for payload in payloads:
        url = payload.get("url")
        if not isinstance(url, str):
            continue
        page = pages.get(url)
        if page is None:
            page = pages[url] = _PageAccumulator()
        page.hashes.add(str(payload.get("document_hash", "")))
        page.points += 1
        page.chunk_count = max(page.chunk_count, int(payload.get("chunk_count") or 0))
        page.etag = page.etag or payload.get("etag")
        page.last_modified = page.last_modified or payload.get("last_modified")
    return {
        url: PageState(
            url=url,
            document_hashes=frozenset(page.hashes),
            points=page.points,
            chunk_count=page.chunk_count,
            etag=page.etag,
            last_modified=page.last_modified,
        )
        for url, page in pages.items()
    }

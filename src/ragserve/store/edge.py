"""``EdgeStore``: the index as an in-process Qdrant Edge shard on local disk.

Layout under ``data_dir/collections/<name>/``: one directory per index
version (``versions/v1/``, ...) and a ``current`` pointer naming the live one
(see ``ragserve.store.edge_layout``). In each version ``shard/`` is the Edge
shard (segments + WAL) and ``collection.json`` holds the ``IndexSchema`` and
the free-form metadata. The JSON file is written last when a version is
created, so it marks a complete one; it is replaced atomically. A collection
from before versions (``shard/`` right under the collection) is read in place
as version ``legacy``; the next versioned ingest seeds ``v1`` from it.

An Edge shard can be opened once per process: a second ``EdgeShard.load`` of
the same path fails on the WAL lock. Store handles therefore share one open
shard per path through a reference-counted registry, and a second *process*
gets ``StoreUnavailableError`` telling it the index is in use. Versions are
what let ``ragserve ingest`` run beside ``ragserve serve``: the server holds
the live version's shard, the ingest builds and opens a new one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import qdrant_edge as qe

from ragserve.documents import Chunk, ScoredChunk, SparseVector
from ragserve.errors import IndexNotFoundError, StoreError, StoreUnavailableError, VersionError
from ragserve.query import SearchFilter, SearchMode
from ragserve.store import edge_layout as layout
from ragserve.store._common import (
    DENSE_VECTOR,
    KEYWORD_INDEXED,
    PAGE_STATE_FIELDS,
    RRF_K,
    SCROLL_PAGE,
    SPARSE_VECTOR,
    aggregate_page_states,
    backend_distance,
    check_dimensions,
    check_schema,
    dense_list,
    draft_meta,
    filter_conditions,
    point_payload,
    resolve_mode,
)
from ragserve.store.base import IndexedChunk, IndexSchema, PageState

logger = logging.getLogger(__name__)

_DISTANCES = {
    "cosine": qe.Distance.Cosine,
    "dot": qe.Distance.Dot,
    "euclid": qe.Distance.Euclid,
    "manhattan": qe.Distance.Manhattan,
}
#: The stub types ``Fusion.Rrf`` apart from ``Fusion``, but ``query=`` takes it.
_RRF: Any = qe.Fusion.Rrf(k=RRF_K)
_SCHEMA_FILE = layout.SCHEMA_FILE
_SHARD_DIR = layout.SHARD_DIR


@dataclass
class _SharedShard:
    shard: qe.EdgeShard
    handles: int


_OPEN_SHARDS: dict[str, _SharedShard] = {}
_REGISTRY_LOCK = threading.Lock()
_METADATA_LOCK = threading.Lock()


class EdgeStore:
    """One collection in a Qdrant Edge shard under ``data_dir``.

    Read operations (``count``, ``page_states``, ``search``) work without
    ``open`` on an existing collection; writes need ``open(schema)`` first so
    vectors are checked against the schema. After a bulk ingest call
    ``optimize()`` once: it builds the HNSW index that keeps dense search fast.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        collection: str = "docs",
        *,
        hnsw_ef: int | None = None,
        search_threads: int | None = None,
        version: str | None = None,
    ) -> None:
        self._name = collection
        self._data_dir = Path(data_dir)
        self._root = self._data_dir / "collections" / collection
        self._hnsw_ef = hnsw_ef
        self._search_threads = search_threads
        self._pinned = version
        #: The live version this unpinned handle bound to when it opened a shard.
        self._bound: str | None = None
        self._initial_meta: dict[str, Any] = {}
        self._shard: qe.EdgeShard | None = None
        self._schema: IndexSchema | None = None

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path:
        """This handle's version directory (shard and ``collection.json``)."""
        return self._dir

    @property
    def root(self) -> Path:
        """The collection directory: every version and the ``current`` pointer."""
        return self._root

    @property
    def _dir(self) -> Path:
        version = self.version
        if version is None:  # nothing yet: the version open() would create
            return self._root / layout.VERSIONS_DIR / "v1"
        return layout.version_dir(self._root, version)

    def open(self, schema: IndexSchema, *, recreate: bool = False) -> None:
        if recreate:
            self.drop()
        self._ensure_writable(self._root)
        first_version = self._pinned is None and self._bound is None and self.live_version() is None
        if first_version:
            self._bound, _ = layout.new_version_dir(self._root)
        elif self._pinned is None and self._bound is None:
            self._bound = self.live_version()
        self._ensure_writable(self._dir)
        stored = self.stored_schema()
        if stored is not None:
            check_schema(self._name, stored, schema)
            self._attach()
        else:
            self._create(schema)
        if first_version and self._bound is not None:
            layout.write_pointer(self._root, self._bound)
        self._schema = schema

    def stored_schema(self) -> IndexSchema | None:
        document = self._read_document()
        return None if document is None else IndexSchema.from_dict(document["schema"])

    def exists(self) -> bool:
        return self.version is not None and layout.is_complete(self._dir)

    def upsert(
        self, points: Sequence[IndexedChunk], page_meta: dict[str, dict[str, Any]] | None = None
    ) -> int:
        if not points:
            return 0
        shard = self._writable_shard()
        assert self._schema is not None
        check_dimensions(self._name, self._schema, points)
        edge_points = [_edge_point(point, page_meta) for point in points]
        with self._errors("write points"):
            shard.update(qe.UpdateOperation.upsert_points(edge_points))
            shard.flush()
        return len(edge_points)

    def delete_page(self, url: str, keep_hash: str | None = None) -> int:
        shard = self._writable_shard()
        must_not: list[Any] = []
        if keep_hash is not None:
            must_not.append(qe.FieldCondition("document_hash", match=qe.MatchValue(keep_hash)))
        page = qe.Filter(
            must=[qe.FieldCondition("url", match=qe.MatchValue(url))], must_not=must_not
        )
        with self._errors("delete a page"):
            doomed = shard.count(qe.CountRequest(exact=True, filter=page))
            if doomed:
                shard.update(qe.UpdateOperation.delete_points_by_filter(page))
                shard.flush()
        return int(doomed)

    def page_states(self) -> dict[str, PageState]:
        return aggregate_page_states(self._scroll_payloads(PAGE_STATE_FIELDS))

    def count(self) -> int:
        shard = self._readable_shard()
        with self._errors("count points"):
            return int(shard.count(qe.CountRequest(exact=True)))

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
        resolved = resolve_mode(mode, dense, sparse)
        shard = self._readable_shard()
        where = _edge_filter(search_filter)
        params = qe.SearchParams(hnsw_ef=self._hnsw_ef) if self._hnsw_ef else None
        dense_query = (
            qe.Query.Nearest(dense_list(dense), using=DENSE_VECTOR) if dense is not None else None
        )
        sparse_query = (
            qe.Query.Nearest(_edge_sparse(sparse), using=SPARSE_VECTOR)
            if sparse is not None
            else None
        )
        if resolved == "hybrid":
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[
                    qe.Prefetch(limit=candidates, query=dense_query, filter=where, params=params),
                    qe.Prefetch(limit=candidates, query=sparse_query, filter=where),
                ],
                query=_RRF,
                filter=where,
                with_payload=True,
            )
        else:
            one_side = dense_query if resolved == "dense" else sparse_query
            request = qe.QueryRequest(
                limit=limit,
                query=one_side,
                filter=where,
                params=params if resolved == "dense" else None,
                with_payload=True,
            )
        with self._errors("search"):
            hits = shard.query(request)
        return [
            ScoredChunk(chunk=Chunk.from_payload(str(hit.id), hit.payload or {}), score=hit.score)
            for hit in hits
        ]

    def get_meta(self) -> dict[str, Any]:
        document = self._read_document()
        if document is None:
            raise self._not_found()
        meta: dict[str, Any] = document.get("meta", {})
        return meta

    def set_meta(self, meta: dict[str, Any]) -> None:
        with _METADATA_LOCK:
            document = self._read_document()
            if document is None:
                raise self._not_found()
            document["meta"] = {**document.get("meta", {}), **meta}
            self._write_document(document)

    def optimize(self) -> bool:
        """Merge segments and build the HNSW index; True if anything changed.

        Blocking and CPU-heavy (tens of seconds for 100k points on 2 cores):
        call it once after a bulk ingest, not per batch. Until then dense
        search scans unindexed segments and gets slower as the index grows.
        """
        shard = self._readable_shard()
        with self._errors("optimize the index"):
            changed = bool(shard.optimize())
            shard.flush()
        return changed

    def copy_to(self, data_dir: Path) -> bool:
        """Copy this handle's version under ``data_dir`` and make it live there.

        The copy keeps its version name, and its ``current`` pointer names it,
        so a fresh unpinned handle on ``data_dir`` reads exactly this version.
        """
        version = self.version
        if version is None or not layout.is_complete(self.path):
            return False
        root = EdgeStore(data_dir, self._name).root
        shutil.copytree(
            self.path, layout.version_dir(root, version), ignore=shutil.ignore_patterns(".probe-*")
        )
        if version != layout.LEGACY:
            layout.write_pointer(root, version)
        return True

    def drop(self) -> None:
        """A pinned handle drops its version; an unpinned one the whole collection."""
        if self._pinned is not None:
            _force_close(self._shard_path())
            layout.remove_version_dir(self._root, self._pinned)
            self._shard = None
            self._schema = None
            return
        _force_close_under(self._root)
        self._shard = None
        self._schema = None
        self._bound = None
        try:
            shutil.rmtree(self._root)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot delete index '{self._name}' at {self._root}: {exc}; "
                f"check the directory's permissions or delete it by hand"
            ) from exc

    def close(self) -> None:
        if self._shard is not None:
            _release(self._shard_path(), self._shard)
            self._shard = None
        self._bound = None

    # -- versions -----------------------------------------------------------

    @property
    def version(self) -> str | None:
        return self._pinned or self._bound or self.live_version()

    def live_version(self) -> str | None:
        return layout.read_pointer(self._root)

    def version_names(self) -> list[str]:
        return layout.version_names(self._root)

    def stage_version(self, *, seed: bool = True) -> EdgeStore:
        self._ensure_writable(self._root)
        for leftover in layout.incomplete_versions(self._root):  # a killed copy
            layout.remove_version_dir(self._root, leftover)
        live = self.live_version()
        seeded_from = live if seed and live is not None else None
        name, directory = layout.new_version_dir(self._root)
        staged = self.at_version(name)
        staged._initial_meta = draft_meta(seeded_from)
        if seeded_from is not None:
            source = layout.version_dir(self._root, seeded_from)
            layout.copy_shard(source / _SHARD_DIR, directory / _SHARD_DIR)
            document = self.at_version(seeded_from)._read_document() or {}
            document["meta"] = {**document.get("meta", {}), **staged._initial_meta}
            document["meta"].pop("eval", None)
            # Written last: until then the copy is an incomplete version.
            staged._write_document(document)
        return staged

    def at_version(self, version: str) -> EdgeStore:
        layout.version_dir(self._root, version)  # validates the name
        return EdgeStore(
            self._data_dir,
            self._name,
            hnsw_ef=self._hnsw_ef,
            search_threads=self._search_threads,
            version=version,
        )

    def publish_version(self, version: str) -> None:
        if not layout.is_complete(layout.version_dir(self._root, version)):
            raise VersionError(
                f"index '{self._name}' has no complete version {version}; see `ragserve index list`"
            )
        layout.write_pointer(self._root, version)

    def drop_version(self, version: str) -> None:
        if version == self.live_version():
            raise VersionError(
                f"version {version} of index '{self._name}' is live; switch to another "
                f"first (`ragserve index rollback`)"
            )
        directory = layout.version_dir(self._root, version)
        _force_close(str((directory / _SHARD_DIR).resolve()))
        layout.remove_version_dir(self._root, version)

    # -- internals ----------------------------------------------------------

    def _shard_path(self) -> str:
        return str((self._dir / _SHARD_DIR).resolve())

    def _ensure_writable(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-")  # noqa: SIM115
            probe.close()
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot write the index directory {directory}: {exc}; choose a writable "
                f"--data-dir (RAGSERVE_DATA_DIR) or fix the directory's permissions"
            ) from exc

    def _create(self, schema: IndexSchema) -> None:
        shard_dir = self._dir / _SHARD_DIR
        if shard_dir.exists():
            # A shard without collection.json is a creation that died midway.
            logger.warning("removing half-created index at %s", shard_dir)
            _force_close(self._shard_path())
            shutil.rmtree(shard_dir)
        if self._shard is not None:
            _release(self._shard_path(), self._shard)
            self._shard = None
        self._shard = _acquire(self._shard_path(), _edge_config(schema, self._search_threads))
        with self._errors("create payload indexes"):
            for key in KEYWORD_INDEXED:
                params = qe.KeywordIndexParams(prefix=key == "url")
                self._shard.update(qe.UpdateOperation.create_field_index(key, params))
            self._shard.flush()
        self._write_document({"schema": schema.to_dict(), "meta": dict(self._initial_meta)})
        logger.info("created index '%s' at %s", self._name, self._dir)

    def _attach(self) -> None:
        if self._shard is None:
            if self._pinned is None and self._bound is None:
                self._bound = self.live_version()
            schema = self._schema or self.stored_schema()
            load_with = (
                _edge_config(schema, self._search_threads)
                if schema is not None and self._search_threads
                else None
            )
            self._shard = _acquire(self._shard_path(), None, load_with)

    def _readable_shard(self) -> qe.EdgeShard:
        if self._shard is None:
            if not self.exists():
                raise self._not_found()
            self._attach()
        assert self._shard is not None
        return self._shard

    def _writable_shard(self) -> qe.EdgeShard:
        if self._schema is None:
            self._schema = self.stored_schema()
            if self._schema is None:
                raise self._not_found()
        return self._readable_shard()

    def _scroll_payloads(self, fields: list[str]) -> Iterator[dict[str, Any]]:
        shard = self._readable_shard()
        offset: Any = None
        selector = qe.PayloadSelector.Include(fields)
        while True:
            request = qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_payload=selector)
            with self._errors("read points"):
                records, offset = shard.scroll(request)
            for record in records:
                yield record.payload or {}
            if offset is None:
                return

    def _read_document(self) -> dict[str, Any] | None:
        path = self._dir / _SCHEMA_FILE
        try:
            document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"index metadata {path} is unreadable: {exc}; re-ingest with --recreate"
            ) from exc
        return document

    def _write_document(self, document: dict[str, Any]) -> None:
        path = self._dir / _SCHEMA_FILE
        handle, tmp_name = tempfile.mkstemp(dir=self._dir, prefix=".collection-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as tmp:
                json.dump(document, tmp, indent=2, sort_keys=True)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except OSError as exc:
            Path(tmp_name).unlink(missing_ok=True)
            raise StoreUnavailableError(
                f"cannot write {path}: {exc}; check free disk space and permissions of "
                f"the data directory"
            ) from exc

    def _not_found(self) -> IndexNotFoundError:
        return IndexNotFoundError(
            f"index '{self._name}' does not exist under {self._data_dir}; "
            f"run `ragserve ingest` first or check --data-dir / --collection"
        )

    def _errors(self, action: str) -> _EdgeErrors:
        return _EdgeErrors(f"Qdrant Edge could not {action} in index '{self._name}' at {self._dir}")


class _EdgeErrors:
    """Wraps Edge's bare ``Exception``s into ``StoreError`` with context."""

    def __init__(self, context: str) -> None:
        self._context = context

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or isinstance(exc, StoreError) or not isinstance(exc, Exception):
            return
        raise StoreError(f"{self._context}: {exc}") from exc


def _acquire(
    path: str, create_with: qe.EdgeConfig | None, load_with: qe.EdgeConfig | None = None
) -> qe.EdgeShard:
    """The process-wide open shard at ``path``, opening or creating it once.

    The first opener's settings (``search_threads``) win for the whole process.
    """
    with _REGISTRY_LOCK:
        shared = _OPEN_SHARDS.get(path)
        if shared is not None:
            shared.handles += 1
            return shared.shard
        try:
            if create_with is not None:
                shard = qe.EdgeShard.create(path, create_with)
            else:
                shard = qe.EdgeShard.load(path, load_with)
        except Exception as exc:
            raise _unavailable(path, exc) from exc
        _OPEN_SHARDS[path] = _SharedShard(shard=shard, handles=1)
        return shard


def _release(path: str, shard: qe.EdgeShard) -> None:
    with _REGISTRY_LOCK:
        shared = _OPEN_SHARDS.get(path)
        if shared is None or shared.shard is not shard:
            return  # dropped meanwhile: the shard is already closed
        shared.handles -= 1
        if shared.handles == 0:
            del _OPEN_SHARDS[path]
            _close_quietly(shard)


def _force_close(path: str) -> None:
    with _REGISTRY_LOCK:
        shared = _OPEN_SHARDS.pop(path, None)
    if shared is not None:
        _close_quietly(shared.shard)


def _force_close_under(root: Path) -> None:
    """Close every shard this process holds under a collection (all its versions)."""
    prefix = str(root.resolve()) + os.sep
    with _REGISTRY_LOCK:
        paths = [path for path in _OPEN_SHARDS if path.startswith(prefix)]
    for path in paths:
        _force_close(path)


def _close_quietly(shard: qe.EdgeShard) -> None:
    try:
        shard.flush()
        shard.close()
    except Exception as exc:  # closing must not mask the caller's own outcome
        logger.warning("closing Qdrant Edge shard failed: %s", exc)


def _unavailable(path: str, exc: Exception) -> StoreUnavailableError:
    if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
        return StoreUnavailableError(
            f"the index at {path} is in use by another process (a running `ragserve serve` "
            f"or ingest?); stop it first, or share one index through a Qdrant server "
            f"(--qdrant-url)"
        )
    return StoreUnavailableError(
        f"cannot open the Qdrant Edge index at {path}: {exc}; check the path and its "
        f"permissions, or re-ingest with --recreate"
    )


def _edge_config(schema: IndexSchema, search_threads: int | None) -> qe.EdgeConfig:
    distance = backend_distance(schema, _DISTANCES)
    return qe.EdgeConfig(
        vectors={DENSE_VECTOR: qe.EdgeVectorParams(size=schema.dimension, distance=distance)},
        sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        max_search_threads=search_threads,
    )


def _edge_point(point: IndexedChunk, page_meta: dict[str, dict[str, Any]] | None) -> qe.Point:
    vectors: dict[str, Any] = {DENSE_VECTOR: dense_list(point.dense)}
    if point.sparse.indices:
        vectors[SPARSE_VECTOR] = _edge_sparse(point.sparse)
    return qe.Point(point.chunk.id, vectors, point_payload(point, page_meta))


def _edge_sparse(vector: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(list(vector.indices), list(vector.values))


#: How each neutral condition kind reads in Qdrant Edge.
_EDGE_MATCH: dict[str, Any] = {
    "value": qe.MatchValue,
    "any": qe.MatchAny,
    "prefix": qe.MatchPrefix,
}


def _edge_filter(search_filter: SearchFilter | None) -> qe.Filter | None:
    conditions = filter_conditions(search_filter)
    if conditions is None:
        return None
    must: list[Any] = [
        qe.FieldCondition(condition.key, match=_EDGE_MATCH[condition.kind](condition.value))
        for condition in conditions
    ]
    return qe.Filter(must=must)

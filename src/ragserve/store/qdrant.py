"""``QdrantServerStore``: the index in a Qdrant server, through qdrant-client.

Use it to share one index between processes or machines (ingest while
``ragserve serve`` answers). ``location=":memory:"`` or ``path=`` run
qdrant-client's local mode, which the contract tests use.

The ``IndexSchema`` and the free-form metadata live in the collection's own
metadata (keys ``ragserve_schema`` and ``ragserve_meta``), written together
with the collection, so there is no side file or reserved point to keep in
step. The server merges metadata updates key by key.

Versions: version ``vN`` of collection ``docs`` is the collection
``docs__vN``, and ``docs`` is an alias that one atomic
``update_collection_aliases`` call moves from one version to the next. A
collection made before versions (a real collection called ``docs``) is read in
place as version ``legacy``; the first versioned ingest copies it into ``v1``
and then deletes it, since an alias cannot share a collection's name: on a
server that leaves a moment (one request) without the collection, once.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ragserve.documents import Chunk, ScoredChunk, SparseVector
from ragserve.errors import (
    IndexNotFoundError,
    StoreError,
    StoreUnavailableError,
    VersionError,
)
from ragserve.query import SearchFilter, SearchMode
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
from ragserve.store.edge_layout import LEGACY

logger = logging.getLogger(__name__)

_SCHEMA_KEY = "ragserve_schema"
_META_KEY = "ragserve_meta"
#: Points per upsert request: keeps requests well under the server's 32 MiB limit.
_UPSERT_BATCH = 256
_DISTANCES = {
    "cosine": qm.Distance.COSINE,
    "dot": qm.Distance.DOT,
    "euclid": qm.Distance.EUCLID,
    "manhattan": qm.Distance.MANHATTAN,
}


class QdrantServerStore:
    """One collection in a Qdrant server (``url``) or in qdrant-client local mode.

    Exactly one of ``url``, ``location`` and ``path`` is used; ``url`` wins.
    Nothing is contacted until the first operation, which raises
    ``StoreUnavailableError`` when the server cannot be reached.
    """

    def __init__(
        self,
        url: str | None = None,
        collection: str = "docs",
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        location: str | None = None,
        path: str | os.PathLike[str] | None = None,
        hnsw_ef: int | None = None,
        version: str | None = None,
        client: QdrantClient | None = None,
    ) -> None:
        if url is None and location is None and path is None:
            raise StoreError("QdrantServerStore needs a url, location=':memory:' or a path")
        self._name = collection
        self._url = url
        self._local = url is None
        self._where = url or location or str(path)
        self._hnsw_ef = hnsw_ef
        self._pinned = version
        self._bound: str | None = None
        self._initial_meta: dict[str, Any] = {}
        self._owns_client = client is None
        self._args = (url, api_key, timeout_s, location, path)
        timeout = max(1, math.ceil(timeout_s))
        if client is not None:
            self._client = client
        elif url is not None:
            self._client = QdrantClient(
                url=url, api_key=api_key, timeout=timeout, check_compatibility=False
            )
        elif location is not None:
            self._client = QdrantClient(location=location)
        else:
            self._client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
        self._schema: IndexSchema | None = None

    def __enter__(self) -> QdrantServerStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self._name

    def open(self, schema: IndexSchema, *, recreate: bool = False) -> None:
        if recreate:
            self.drop()
        stored = self.stored_schema()
        if stored is not None:
            check_schema(self._name, stored, schema)
        else:
            first_version = self._pinned is None and self.live_version() is None
            self._create(schema)
            if first_version:
                self.publish_version("v1")
                self._bound = "v1"
        self._schema = schema

    def stored_schema(self) -> IndexSchema | None:
        metadata = self._metadata()
        if metadata is None or not isinstance(metadata.get(_SCHEMA_KEY), dict):
            return None
        return IndexSchema.from_dict(metadata[_SCHEMA_KEY])

    def exists(self) -> bool:
        with self._errors("check the collection"):
            return bool(self._client.collection_exists(self._collection))

    def upsert(
        self, points: Sequence[IndexedChunk], page_meta: dict[str, dict[str, Any]] | None = None
    ) -> int:
        if not points:
            return 0
        schema = self._require_schema()
        check_dimensions(self._name, schema, points)
        structs = [_point_struct(point, page_meta) for point in points]
        with self._errors("write points"):
            for start in range(0, len(structs), _UPSERT_BATCH):
                batch = structs[start : start + _UPSERT_BATCH]
                self._client.upsert(self._collection, points=batch, wait=True)
        return len(structs)

    def delete_page(self, url: str, keep_hash: str | None = None) -> int:
        self._require_schema()
        must_not: list[qm.Condition] = []
        if keep_hash is not None:
            must_not.append(_match("document_hash", keep_hash))
        page = qm.Filter(must=[_match("url", url)], must_not=must_not)
        with self._errors("delete a page"):
            doomed = self._client.count(self._collection, count_filter=page, exact=True).count
            if doomed:
                self._client.delete(
                    self._collection, points_selector=qm.FilterSelector(filter=page), wait=True
                )
        return int(doomed)

    def page_states(self) -> dict[str, PageState]:
        return aggregate_page_states(self._scroll_payloads(PAGE_STATE_FIELDS))

    def count(self) -> int:
        self._require_exists()
        with self._errors("count points"):
            return int(self._client.count(self._collection, exact=True).count)

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
        self._require_exists()
        where = _qdrant_filter(search_filter)
        params = qm.SearchParams(hnsw_ef=self._hnsw_ef) if self._hnsw_ef else None
        dense_query = dense_list(dense) if dense is not None else None
        sparse_query = _qdrant_sparse(sparse) if sparse is not None else None
        with self._errors("search"):
            if resolved == "hybrid":
                response = self._client.query_points(
                    self._collection,
                    prefetch=[
                        qm.Prefetch(
                            query=dense_query,
                            using=DENSE_VECTOR,
                            limit=candidates,
                            filter=where,
                            params=params,
                        ),
                        qm.Prefetch(
                            query=sparse_query, using=SPARSE_VECTOR, limit=candidates, filter=where
                        ),
                    ],
                    query=qm.RrfQuery(rrf=qm.Rrf(k=RRF_K)),
                    query_filter=where,
                    limit=limit,
                    with_payload=True,
                )
            else:
                response = self._client.query_points(
                    self._collection,
                    query=dense_query if resolved == "dense" else sparse_query,
                    using=DENSE_VECTOR if resolved == "dense" else SPARSE_VECTOR,
                    query_filter=where,
                    search_params=params if resolved == "dense" else None,
                    limit=limit,
                    with_payload=True,
                )
        return [
            ScoredChunk(chunk=Chunk.from_payload(str(hit.id), hit.payload or {}), score=hit.score)
            for hit in response.points
        ]

    def get_meta(self) -> dict[str, Any]:
        metadata = self._metadata()
        if metadata is None:
            raise self._not_found()
        meta: dict[str, Any] = metadata.get(_META_KEY) or {}
        return meta

    def set_meta(self, meta: dict[str, Any]) -> None:
        merged = {**self.get_meta(), **meta}
        with self._errors("write collection metadata"):
            self._client.update_collection(self._collection, metadata={_META_KEY: merged})

    def optimize(self) -> bool:
        """The server builds its HNSW index on its own (optimizer thresholds)."""
        return False

    def copy_to(self, data_dir: Path) -> bool:
        """Nothing to copy: every replica shares the server by URL."""
        return False

    def drop(self) -> None:
        """A pinned handle drops its version; an unpinned one every version and the alias."""
        with self._errors("delete the collection"):
            if self._pinned is not None:
                doomed = [self._concrete(self._pinned)]
            else:
                if self._alias_target() is not None:
                    self._client.update_collection_aliases(
                        change_aliases_operations=[
                            qm.DeleteAliasOperation(
                                delete_alias=qm.DeleteAlias(alias_name=self._name)
                            )
                        ]
                    )
                doomed = [self._concrete(name) for name in self._all_version_names()]
            for name in doomed:
                if self._client.collection_exists(name):
                    self._client.delete_collection(name)
        self._schema = None
        self._bound = None

    def close(self) -> None:
        self._bound = None
        if not self._owns_client:
            return
        try:
            self._client.close()
        except Exception as exc:  # closing must not mask the caller's own outcome
            logger.warning("closing the Qdrant client failed: %s", exc)

    # -- versions -----------------------------------------------------------

    @property
    def version(self) -> str | None:
        """Pinned, or the live version this handle bound to on first use (None before:
        finding out costs a request, and ``isinstance`` checks read this property)."""
        return self._pinned or self._bound

    def live_version(self) -> str | None:
        with self._errors("read the collection alias"):
            target = self._alias_target()
            if target is not None:
                return target.removeprefix(self._prefix)
            return LEGACY if self._client.collection_exists(self._name) else None

    def version_names(self) -> list[str]:
        names = self._all_version_names()
        return [name for name in names if self.at_version(name)._metadata() is not None]

    def stage_version(self, *, seed: bool = True) -> QdrantServerStore:
        live = self.live_version()
        numbers = [int(name[1:]) for name in self._all_version_names() if name != LEGACY]
        staged = self.at_version(f"v{max(numbers, default=0) + 1}")
        seeded_from = live if seed else None
        staged._initial_meta = draft_meta(seeded_from)
        if seeded_from is not None:
            source = self.at_version(seeded_from)
            schema = source._require_schema()
            staged._create(schema)
            staged._schema = schema
            staged._copy_points_from(source._collection)
        return staged

    def at_version(self, version: str) -> QdrantServerStore:
        if version != LEGACY and not _VERSION_NAME.match(version):
            raise VersionError(
                f"'{version}' is not a version name; versions are called v1, v2, ... "
                f"(see `ragserve index list`)"
            )
        url, api_key, timeout_s, location, path = self._args
        return QdrantServerStore(
            url,
            self._name,
            api_key=api_key,
            timeout_s=timeout_s,
            location=location,
            path=path,
            hnsw_ef=self._hnsw_ef,
            version=version,
            client=self._client,
        )

    def publish_version(self, version: str) -> None:
        target = self.at_version(version)
        if target._metadata() is None:
            raise VersionError(
                f"index '{self._name}' has no version {version} in Qdrant at {self._where}; "
                f"see `ragserve index list`"
            )
        if version == LEGACY:
            if self.live_version() != LEGACY:
                raise VersionError(
                    f"the pre-versions collection '{self._name}' cannot be made live again "
                    f"once an alias replaced it; roll back to a numbered version"
                )
            return
        operations: list[qm.AliasOperations] = []
        with self._errors("switch the collection alias"):
            if self._alias_target() is not None:
                operations.append(
                    qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=self._name))
                )
            elif self._client.collection_exists(self._name):
                # Migration: the alias takes the old collection's name (see module docstring).
                self._client.delete_collection(self._name)
            operations.append(
                qm.CreateAliasOperation(
                    create_alias=qm.CreateAlias(
                        collection_name=target._collection, alias_name=self._name
                    )
                )
            )
            self._client.update_collection_aliases(change_aliases_operations=operations)

    def drop_version(self, version: str) -> None:
        if version == self.live_version():
            raise VersionError(
                f"version {version} of index '{self._name}' is live; switch to another "
                f"first (`ragserve index rollback`)"
            )
        doomed = self.at_version(version)._collection
        with self._errors("delete a version"):
            if self._client.collection_exists(doomed):
                self._client.delete_collection(doomed)

    # -- internals ----------------------------------------------------------

    @property
    def _prefix(self) -> str:
        return f"{self._name}__"

    def _concrete(self, version: str) -> str:
        return self._name if version == LEGACY else f"{self._prefix}{version}"

    @property
    def _collection(self) -> str:
        """The real collection this handle uses; an unpinned one binds to the live one."""
        if self._pinned is not None:
            return self._concrete(self._pinned)
        if self._bound is None:
            self._bound = self.live_version()
        return self._concrete(self._bound or "v1")

    def _alias_target(self) -> str | None:
        for alias in self._client.get_aliases().aliases:
            if alias.alias_name == self._name:
                return str(alias.collection_name)
        return None

    def _all_version_names(self) -> list[str]:
        """Versions present in any state, oldest first (legacy first)."""
        with self._errors("list collections"):
            collections = [item.name for item in self._client.get_collections().collections]
        numbered = sorted(
            int(match.group(1))
            for name in collections
            if name.startswith(self._prefix)
            and (match := _VERSION_NAME.match(name.removeprefix(self._prefix)))
        )
        legacy = [LEGACY] if self._name in collections else []
        return legacy + [f"v{number}" for number in numbered]

    def _copy_points_from(self, source: str) -> None:
        """Seed this version with every point of ``source`` (vectors and payload)."""
        offset: Any = None
        while True:
            with self._errors("copy the live version"):
                records, offset = self._client.scroll(
                    source, limit=_UPSERT_BATCH, offset=offset, with_payload=True, with_vectors=True
                )
                if records:
                    structs = [
                        qm.PointStruct(
                            id=record.id, vector=record.vector or {}, payload=record.payload
                        )
                        for record in records
                    ]
                    self._client.upsert(self._collection, points=structs, wait=True)
            if offset is None:
                return

    def _create(self, schema: IndexSchema) -> None:
        distance = backend_distance(schema, _DISTANCES)
        with self._errors("create the collection"):
            self._client.create_collection(
                self._collection,
                vectors_config={
                    DENSE_VECTOR: qm.VectorParams(size=schema.dimension, distance=distance)
                },
                sparse_vectors_config={
                    SPARSE_VECTOR: qm.SparseVectorParams(modifier=qm.Modifier.IDF)
                },
                metadata={_SCHEMA_KEY: schema.to_dict(), _META_KEY: dict(self._initial_meta)},
            )
            if not self._local:  # local mode ignores payload indexes (and warns)
                for key in KEYWORD_INDEXED:
                    self._create_keyword_index(key, prefix=key == "url")
        logger.info("created collection '%s' in Qdrant at %s", self._name, self._where)

    def _create_keyword_index(self, key: str, *, prefix: bool) -> None:
        params = qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, prefix=prefix or None)
        try:
            self._client.create_payload_index(self._collection, key, field_schema=params, wait=True)
        except UnexpectedResponse as exc:
            if not prefix:
                raise
            # Servers before prefix indexes still answer MatchPrefix, by reading payloads.
            logger.warning(
                "Qdrant rejected a prefix index on '%s' (%s); using a plain one", key, exc
            )
            plain = qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD)
            self._client.create_payload_index(self._collection, key, field_schema=plain, wait=True)

    def _metadata(self) -> dict[str, Any] | None:
        with self._errors("read the collection"):
            if not self._client.collection_exists(self._collection):
                return None
            info = self._client.get_collection(self._collection)
        metadata: dict[str, Any] = dict(info.config.metadata or {})
        return metadata

    def _require_exists(self) -> None:
        if self._schema is None and not self.exists():
            raise self._not_found()

    def _require_schema(self) -> IndexSchema:
        if self._schema is None:
            self._schema = self.stored_schema()
            if self._schema is None:
                raise self._not_found()
        return self._schema

    def _scroll_payloads(self, fields: list[str]) -> Iterator[dict[str, Any]]:
        self._require_exists()
        offset: Any = None
        while True:
            with self._errors("read points"):
                records, offset = self._client.scroll(
                    self._collection,
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=fields,
                    with_vectors=False,
                )
            for record in records:
                yield record.payload or {}
            if offset is None:
                return

    def _not_found(self) -> IndexNotFoundError:
        return IndexNotFoundError(
            f"collection '{self._name}' does not exist in Qdrant at {self._where}; "
            f"run `ragserve ingest` first or check --collection"
        )

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn qdrant-client and transport failures into ``StoreError``s."""
        try:
            yield
        except StoreError:
            raise
        except (ResponseHandlingException, httpx.TransportError, ConnectionError) as exc:
            raise StoreUnavailableError(
                f"Qdrant at {self._where} is unreachable: {_root_cause(exc)}; start it or "
                f"check --qdrant-url / RAGSERVE_STORE__URL"
            ) from exc
        except UnexpectedResponse as exc:
            if exc.status_code in (401, 403):
                raise StoreUnavailableError(
                    f"Qdrant at {self._where} rejected the API key ({exc.status_code}); "
                    f"set RAGSERVE_STORE__API_KEY to a valid key"
                ) from exc
            if exc.status_code == 404:
                raise self._not_found() from exc
            raise StoreError(
                f"Qdrant at {self._where} failed to {action} for '{self._name}': {exc}"
            ) from exc
        except (ValueError, RuntimeError) as exc:  # local mode raises these directly
            raise StoreError(f"Qdrant could not {action} for '{self._name}': {exc}") from exc


_VERSION_NAME = re.compile(r"^v(\d+)$")


def _root_cause(exc: BaseException) -> str:
    source = getattr(exc, "source", None) or exc.__cause__ or exc
    return str(source) or type(source).__name__


def _match(key: str, value: str) -> qm.FieldCondition:
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))


def _point_struct(
    point: IndexedChunk, page_meta: dict[str, dict[str, Any]] | None
) -> qm.PointStruct:
    vectors: dict[str, Any] = {DENSE_VECTOR: dense_list(point.dense)}
    if point.sparse.indices:
        vectors[SPARSE_VECTOR] = _qdrant_sparse(point.sparse)
    return qm.PointStruct(
        id=point.chunk.id, vector=vectors, payload=point_payload(point, page_meta)
    )


def _qdrant_sparse(vector: SparseVector) -> qm.SparseVector:
    return qm.SparseVector(indices=list(vector.indices), values=list(vector.values))


#: How each neutral condition kind reads in qdrant-client's models.
_QDRANT_MATCH: dict[str, Callable[[Any], qm.Match]] = {
    "value": lambda value: qm.MatchValue(value=value),
    "any": lambda value: qm.MatchAny(any=value),
    "prefix": lambda value: qm.MatchPrefix(prefix=value),
}


def _qdrant_filter(search_filter: SearchFilter | None) -> qm.Filter | None:
    conditions = filter_conditions(search_filter)
    if conditions is None:
        return None
    must: list[qm.Condition] = [
        qm.FieldCondition(key=condition.key, match=_QDRANT_MATCH[condition.kind](condition.value))
        for condition in conditions
    ]
    return qm.Filter(must=must)

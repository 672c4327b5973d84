"""One contract for every ``VectorStore``: Qdrant Edge and qdrant-client local mode.

Each test runs against both backends, so they cannot drift apart. Dense
vectors are small seeded random vectors (8-d); sparse vectors come from the
real ``SparseEncoder`` over real sentences.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ragserve.config import StoreSettings
from ragserve.documents import Chunk, chunk_id
from ragserve.errors import (
    IndexNotFoundError,
    SchemaMismatchError,
    StoreUnavailableError,
)
from ragserve.store import (
    IndexedChunk,
    IndexSchema,
    SearchFilter,
    SparseEncoder,
    VectorStore,
    open_store,
)
from ragserve.store.edge import EdgeStore
from ragserve.store.qdrant import QdrantServerStore

pytestmark = pytest.mark.integration

DIM = 8
SCHEMA = IndexSchema(embed_model="test-embedder", dimension=DIM, chunk_size=512, chunk_overlap=50)
ENCODER = SparseEncoder()

PAGES: dict[str, list[str]] = {
    "https://docs.example.org/serve/scaling": [
        "Set num_replicas on a Ray Serve deployment to run several copies of it.",
        "Autoscaling adds and removes replicas as the number of ongoing requests changes.",
        "Each replica is an actor that holds the model in memory between requests.",
    ],
    "https://docs.example.org/data/transform": [
        "Use Dataset.map_batches to apply a function to batches of rows in parallel.",
        "The batch_size argument controls how many rows each call receives.",
    ],
    "https://docs.example.org/data-loading/files": [
        "Read Parquet and CSV files from cloud storage into a dataset.",
    ],
    "https://blog.example.org/release": [
        "The new release improves startup time of the cluster dashboard.",
    ],
}

StoreFactory = Callable[[], VectorStore]


def _vector(key: str) -> npt.NDArray[np.float32]:
    """A fixed unit vector per key, so a query can aim at exactly one chunk."""
    seed = int.from_bytes(key.encode()[-8:].rjust(8, b"\0"), "big") % (2**32)
    vector = np.random.default_rng(seed).standard_normal(DIM)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def page_points(url: str, texts: list[str], document_hash: str = "v1") -> list[IndexedChunk]:
    sparse = ENCODER.encode_documents(texts)
    points = []
    for ordinal, text in enumerate(texts):
        chunk = Chunk(
            id=chunk_id(url, ordinal, document_hash),
            text=text,
            url=url,
            section_url=f"{url}#part-{ordinal}",
            title=url.rsplit("/", 1)[-1],
            heading_path=("Docs", url.rsplit("/", 1)[-1]),
            ordinal=ordinal,
            document_hash=document_hash,
            chunk_count=len(texts),
        )
        points.append(IndexedChunk(chunk=chunk, dense=_vector(chunk.id), sparse=sparse[ordinal]))
    return points


def corpus_points() -> list[IndexedChunk]:
    return [point for url, texts in PAGES.items() for point in page_points(url, texts)]


@pytest.fixture(params=["edge", "qdrant-local"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Builds handles on one collection location; each can be closed and reopened."""
    handles: list[VectorStore] = []

    def factory() -> VectorStore:
        store: VectorStore
        if request.param == "edge":
            store = EdgeStore(tmp_path / "data", "docs")
        else:
            store = QdrantServerStore(path=tmp_path / "qdrant", collection="docs")
        handles.append(store)
        return store

    yield factory
    for handle in handles:
        handle.close()


@pytest.fixture
def store(make_store: StoreFactory) -> VectorStore:
    opened = make_store()
    opened.open(SCHEMA)
    return opened


@pytest.fixture
def filled_store(store: VectorStore) -> VectorStore:
    store.upsert(corpus_points())
    return store


def test_open_creates_an_empty_collection_that_remembers_its_schema(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    assert not store.exists()
    assert store.stored_schema() is None

    store.open(SCHEMA)

    assert store.exists()
    assert store.stored_schema() == SCHEMA
    assert store.count() == 0
    assert store.name == "docs"


def test_reopening_with_another_embedder_is_refused_naming_both(
    filled_store: VectorStore, make_store: StoreFactory
) -> None:
    filled_store.close()
    other = IndexSchema(
        embed_model="bge-base-en-v1.5", dimension=768, chunk_size=512, chunk_overlap=50
    )

    with pytest.raises(SchemaMismatchError) as refused:
        make_store().open(other)

    message = str(refused.value)
    assert "test-embedder" in message
    assert "8-d" in message
    assert "bge-base-en-v1.5" in message
    assert "768-d" in message
    assert "--recreate" in message


def test_reopening_with_the_same_schema_keeps_the_data(
    filled_store: VectorStore, make_store: StoreFactory
) -> None:
    filled_store.close()
    reopened = make_store()
    reopened.open(SCHEMA)
    assert reopened.count() == len(corpus_points())


def test_recreate_drops_existing_points_and_takes_the_new_schema(
    filled_store: VectorStore, make_store: StoreFactory
) -> None:
    filled_store.close()
    other = IndexSchema(embed_model="other", dimension=DIM, chunk_size=256, chunk_overlap=20)
    store = make_store()

    store.open(other, recreate=True)

    assert store.count() == 0
    assert store.stored_schema() == other


def test_upserting_the_same_points_twice_keeps_the_count(store: VectorStore) -> None:
    points = corpus_points()
    assert store.upsert(points) == len(points)
    assert store.upsert(points) == len(points)
    assert store.count() == len(points)


def test_every_chunk_of_a_page_is_stored(store: VectorStore) -> None:
    url = "https://docs.example.org/long"
    texts = [f"Paragraph {n} about topic {n}." for n in range(7)]

    store.upsert(page_points(url, texts))

    assert store.count() == 7
    state = store.page_states()[url]
    assert state.points == 7
    assert state.complete


def test_page_meta_is_stored_on_the_page_points(store: VectorStore) -> None:
    url = "https://docs.example.org/data/transform"
    store.upsert(
        page_points(url, PAGES[url]), page_meta={url: {"etag": '"abc"', "last_modified": "Mon"}}
    )
    state = store.page_states()[url]
    assert state.etag == '"abc"'
    assert state.last_modified == "Mon"


def test_delete_page_keeping_the_new_hash_removes_only_the_old_version(
    store: VectorStore,
) -> None:
    url = "https://docs.example.org/serve/scaling"
    store.upsert(page_points(url, PAGES[url], document_hash="old"))
    store.upsert(page_points(url, ["Rewritten page.", "With two chunks."], document_hash="new"))
    store.upsert(page_points("https://docs.example.org/other", ["Unrelated."]))

    deleted = store.delete_page(url, keep_hash="new")

    assert deleted == 3
    states = store.page_states()
    assert states[url].document_hashes == frozenset({"new"})
    assert states[url].complete
    assert "https://docs.example.org/other" in states


def test_delete_page_without_keep_hash_removes_the_whole_page(filled_store: VectorStore) -> None:
    url = "https://docs.example.org/serve/scaling"
    assert filled_store.delete_page(url) == 3
    assert url not in filled_store.page_states()
    assert filled_store.count() == len(corpus_points()) - 3


def test_page_states_flag_a_half_written_page_as_incomplete(store: VectorStore) -> None:
    complete_url = "https://docs.example.org/data/transform"
    killed_url = "https://docs.example.org/serve/scaling"
    store.upsert(page_points(complete_url, PAGES[complete_url]))
    store.upsert(page_points(killed_url, PAGES[killed_url])[:1])  # ingest killed mid-page

    states = store.page_states()

    assert states[complete_url].complete
    assert not states[killed_url].complete
    assert states[killed_url].points == 1
    assert states[killed_url].chunk_count == 3


def test_page_states_flag_two_versions_of_a_page_as_incomplete(store: VectorStore) -> None:
    url = "https://docs.example.org/data/transform"
    store.upsert(page_points(url, PAGES[url], document_hash="old"))
    store.upsert(page_points(url, PAGES[url], document_hash="new"))

    state = store.page_states()[url]

    assert state.document_hashes == frozenset({"old", "new"})
    assert not state.complete


def _target(url: str, ordinal: int) -> IndexedChunk:
    return page_points(url, PAGES[url])[ordinal]


def test_dense_search_returns_the_nearest_chunk_first(filled_store: VectorStore) -> None:
    target = _target("https://docs.example.org/serve/scaling", 1)
    query = (target.dense + 0.05 * _vector("noise")).astype(np.float32)

    hits = filled_store.search(dense=query, sparse=None, limit=3, mode="dense")

    assert hits[0].chunk == target.chunk
    assert len(hits) == 3


def test_sparse_search_ranks_the_keyword_match_first(filled_store: VectorStore) -> None:
    hits = filled_store.search(
        dense=None,
        sparse=ENCODER.encode_query("how do I set num_replicas?"),
        limit=3,
        mode="sparse",
    )
    assert hits[0].chunk.text.startswith("Set num_replicas")


def test_sparse_search_prefers_the_exact_identifier(filled_store: VectorStore) -> None:
    hits = filled_store.search(
        dense=None, sparse=ENCODER.encode_query("map_batches"), limit=3, mode="sparse"
    )
    assert "map_batches" in hits[0].chunk.text


def test_hybrid_search_puts_the_best_of_each_side_on_top(filled_store: VectorStore) -> None:
    dense_target = _target("https://docs.example.org/serve/scaling", 1)
    keyword_target = _target("https://docs.example.org/data-loading/files", 0)

    hits = filled_store.search(
        dense=dense_target.dense, sparse=ENCODER.encode_query("Parquet CSV"), limit=4
    )

    assert {hit.chunk.id for hit in hits[:2]} == {dense_target.chunk.id, keyword_target.chunk.id}
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_hybrid_search_ranks_a_chunk_both_sides_agree_on_first(filled_store: VectorStore) -> None:
    target = _target("https://docs.example.org/data/transform", 1)
    query = (target.dense + 0.3 * _vector("noise")).astype(np.float32)

    hits = filled_store.search(dense=query, sparse=ENCODER.encode_query("batch_size"), limit=3)

    assert hits[0].chunk == target.chunk


def test_hybrid_search_with_a_stopword_only_query_falls_back_to_dense(
    filled_store: VectorStore,
) -> None:
    target = _target("https://blog.example.org/release", 0)
    hits = filled_store.search(dense=target.dense, sparse=ENCODER.encode_query("the"), limit=1)
    assert hits[0].chunk == target.chunk


def test_equals_filter_restricts_results_to_matching_payload(filled_store: VectorStore) -> None:
    url = "https://docs.example.org/data/transform"
    anywhere = _target("https://docs.example.org/serve/scaling", 0)

    hits = filled_store.search(
        dense=anywhere.dense,
        sparse=ENCODER.encode_query("replicas"),
        limit=10,
        search_filter=SearchFilter(equals={"url": url}),
    )

    assert {hit.chunk.url for hit in hits} == {url}


def test_equals_filter_with_a_list_matches_any_value(filled_store: VectorStore) -> None:
    urls = ["https://blog.example.org/release", "https://docs.example.org/data-loading/files"]
    hits = filled_store.search(
        dense=_vector("anything"),
        sparse=None,
        limit=10,
        mode="dense",
        search_filter=SearchFilter(equals={"url": urls, "ordinal": 0}),
    )
    assert {hit.chunk.url for hit in hits} == set(urls)


def test_url_prefix_filter_is_an_exact_string_prefix(filled_store: VectorStore) -> None:
    hits = filled_store.search(
        dense=_vector("anything"),
        sparse=ENCODER.encode_query("dataset rows files"),
        limit=10,
        search_filter=SearchFilter(url_prefix="https://docs.example.org/data/"),
    )
    assert hits
    assert {hit.chunk.url for hit in hits} == {"https://docs.example.org/data/transform"}


def test_search_returns_chunks_as_they_were_written(filled_store: VectorStore) -> None:
    target = _target("https://docs.example.org/serve/scaling", 2)
    hit = filled_store.search(dense=target.dense, sparse=None, limit=1, mode="dense")[0]
    assert hit.chunk == target.chunk
    assert hit.chunk.heading_path == ("Docs", "scaling")


def test_meta_merges_and_survives_close_and_reopen(
    store: VectorStore, make_store: StoreFactory
) -> None:
    store.set_meta({"last_ingest": {"pages": 4}, "source": "https://docs.example.org/"})
    store.set_meta({"last_ingest": {"pages": 5}})
    store.close()

    reopened = make_store()
    reopened.open(SCHEMA)

    assert reopened.get_meta() == {
        "last_ingest": {"pages": 5},
        "source": "https://docs.example.org/",
    }


def test_points_survive_close_and_reopen(
    filled_store: VectorStore, make_store: StoreFactory
) -> None:
    filled_store.close()
    reopened = make_store()
    assert reopened.count() == len(corpus_points())
    assert len(reopened.page_states()) == len(PAGES)


def test_drop_removes_the_collection(filled_store: VectorStore) -> None:
    filled_store.drop()
    assert not filled_store.exists()
    assert filled_store.stored_schema() is None
    with pytest.raises(IndexNotFoundError):
        filled_store.count()


def test_reading_a_missing_index_says_to_ingest_first(make_store: StoreFactory) -> None:
    with pytest.raises(IndexNotFoundError, match="ingest"):
        make_store().search(dense=_vector("q"), sparse=None, limit=1)


def test_wrong_vector_size_is_refused_before_writing(store: VectorStore) -> None:
    point = corpus_points()[0]
    wrong = IndexedChunk(chunk=point.chunk, dense=np.ones(DIM * 2, np.float32), sparse=point.sparse)
    with pytest.raises(SchemaMismatchError, match="8-d"):
        store.upsert([wrong])
    assert store.count() == 0


def test_unreachable_qdrant_server_fails_fast_with_what_to_do() -> None:
    store = open_store(StoreSettings(backend="qdrant", url="http://127.0.0.1:1", timeout_s=2))
    started = time.monotonic()

    with pytest.raises(StoreUnavailableError) as unavailable:
        store.open(SCHEMA)

    assert time.monotonic() - started < 5
    message = str(unavailable.value)
    assert "http://127.0.0.1:1" in message
    assert "RAGSERVE_STORE__URL" in message


def test_unwritable_data_dir_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data dir should be")
    store = EdgeStore(blocker / "data", "docs")

    with pytest.raises(StoreUnavailableError) as unavailable:
        store.open(SCHEMA)

    assert str(blocker) in str(unavailable.value)
    assert "--data-dir" in str(unavailable.value)


def test_two_edge_handles_on_one_path_share_the_shard(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path, "docs")
    second = EdgeStore(tmp_path, "docs")
    first.open(SCHEMA)
    second.open(SCHEMA)

    first.upsert(corpus_points())
    first.close()

    assert second.count() == len(corpus_points())
    second.close()


def test_optimize_keeps_every_point_searchable(filled_store: VectorStore) -> None:
    target = _target("https://docs.example.org/serve/scaling", 1)

    filled_store.optimize()

    assert filled_store.count() == len(corpus_points())
    hits = filled_store.search(dense=target.dense, sparse=None, limit=1, mode="dense")
    assert hits[0].chunk == target.chunk


def test_edge_copy_to_makes_a_private_index_with_the_same_answers(tmp_path: Path) -> None:
    source = EdgeStore(tmp_path / "data", "docs")
    source.open(SCHEMA)
    source.upsert(corpus_points())
    source.close()
    target = _target("https://docs.example.org/data/transform", 0)

    copied = EdgeStore(tmp_path / "data", "docs").copy_to(tmp_path / "copy")

    private = EdgeStore(tmp_path / "copy", "docs")
    assert copied
    assert private.count() == len(corpus_points())
    hits = private.search(dense=target.dense, sparse=None, limit=1, mode="dense")
    assert hits[0].chunk == target.chunk
    private.close()


def test_edge_copy_to_of_a_missing_index_copies_nothing(tmp_path: Path) -> None:
    assert not EdgeStore(tmp_path / "none", "docs").copy_to(tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_a_server_store_has_nothing_local_to_copy(tmp_path: Path) -> None:
    store = QdrantServerStore(path=tmp_path / "qdrant", collection="docs")
    store.open(SCHEMA)

    assert not store.copy_to(tmp_path / "copy")
    assert not store.optimize()
    store.close()


def test_open_store_picks_the_backend_from_settings(tmp_path: Path) -> None:
    edge = open_store(StoreSettings(data_dir=tmp_path, collection="site"))
    server = open_store(StoreSettings(url="http://localhost:6333"))
    assert isinstance(edge, EdgeStore)
    assert edge.name == "site"
    assert isinstance(server, QdrantServerStore)
    assert isinstance(edge, VectorStore)
    assert isinstance(server, VectorStore)
    server.close()


def test_edge_store_reopens_with_its_own_search_thread_setting(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path, "docs", search_threads=1)
    first.open(SCHEMA)
    first.close()
    reopened = EdgeStore(tmp_path, "docs", search_threads=2)
    assert reopened.count() == 0
    reopened.close()


@pytest.mark.slow
def test_acknowledged_edge_writes_survive_a_killed_process(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store_contract import SCHEMA, corpus_points
        from ragserve.store.edge import EdgeStore
        store = EdgeStore({str(tmp_path)!r}, "docs")
        store.open(SCHEMA)
        store.upsert(corpus_points())
        os.kill(os.getpid(), 9)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert killed.returncode == -9

    survivor = EdgeStore(tmp_path, "docs")
    assert survivor.count() == len(corpus_points())
    assert all(state.complete for state in survivor.page_states().values())
    survivor.close()

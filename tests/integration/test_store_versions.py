"""Index versions on both backends: stage beside the live one, switch, roll back, prune.

The same tests run against Qdrant Edge (``current`` pointer) and qdrant-client's
local mode (collection alias); no Qdrant server binary exists here, so the
alias path is exercised through local mode, which implements the same alias
operations.
"""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_store_contract import SCHEMA, corpus_points, page_points

from ragserve.errors import IndexBusyError, StoreUnavailableError, VersionError
from ragserve.store import VectorStore
from ragserve.store import versions as index_versions
from ragserve.store.edge import EdgeStore
from ragserve.store.edge_layout import LEGACY
from ragserve.store.live import LiveIndex
from ragserve.store.qdrant import QdrantServerStore

pytestmark = pytest.mark.integration

NEW_PAGE = "https://docs.example.org/serve/new-page"


@pytest.fixture(params=["edge", "qdrant-local"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    """A collection whose live version v1 holds the contract corpus."""
    store: VectorStore
    if request.param == "edge":
        store = EdgeStore(tmp_path / "data", "docs")
    else:
        store = QdrantServerStore(path=tmp_path / "qdrant", collection="docs")
    store.open(SCHEMA)
    store.upsert(corpus_points())
    yield store
    store.close()


def build_next(live: VectorStore, texts: list[str]) -> str:
    """Stage a version seeded from the live one, add a page, leave it unpublished."""
    staged = live.stage_version()
    staged.open(SCHEMA)
    staged.upsert(page_points(NEW_PAGE, texts))
    staged.close()
    assert staged.version is not None
    return staged.version


def live_count(store: VectorStore) -> int:
    handle = store.at_version(str(store.live_version()))
    try:
        return handle.count()
    finally:
        handle.close()


def test_first_open_creates_version_one_and_makes_it_live(live: VectorStore) -> None:
    assert live.live_version() == "v1"
    assert live.version_names() == ["v1"]
    assert [info.live for info in index_versions.list_versions(live)] == [True]


def test_a_staged_version_is_a_copy_readers_do_not_see_until_published(
    live: VectorStore,
) -> None:
    version = build_next(live, ["A brand new page about zebras."])

    assert version == "v2"
    assert live.live_version() == "v1"
    assert live_count(live) == len(corpus_points())
    staged = live.at_version(version)
    assert staged.count() == len(corpus_points()) + 1  # seeded, then one page added
    staged.close()
    assert index_versions.list_versions(live)[-1].state == "draft"

    index_versions.publish(live, version)

    assert live.live_version() == "v2"
    assert live_count(live) == len(corpus_points()) + 1
    assert index_versions.list_versions(live)[-1].state == "ready"


def test_a_handle_stays_on_its_version_after_a_switch(live: VectorStore) -> None:
    reader = live.at_version("v1")
    before = reader.count()
    index_versions.publish(live, build_next(live, ["Another page."]))

    assert reader.count() == before  # in-flight readers finish on the old version
    reader.close()


def test_rollback_restores_the_previous_content_and_prune_keeps_live_plus_one(
    live: VectorStore,
) -> None:
    index_versions.publish(live, build_next(live, ["Second."]))
    index_versions.publish(live, build_next(live, ["Third."]))
    assert live.live_version() == "v3"

    previous, now = index_versions.rollback(live)
    assert (previous, now) == ("v3", "v2")
    assert live_count(live) == len(corpus_points()) + 1

    index_versions.rollback(live, "v1")
    assert live_count(live) == len(corpus_points())
    index_versions.rollback(live, "v3")

    dropped = index_versions.prune(live)
    assert dropped == ["v1"]
    assert live.version_names() == ["v2", "v3"]


def test_the_live_version_cannot_be_dropped_and_unknown_ones_are_named(
    live: VectorStore,
) -> None:
    with pytest.raises(VersionError, match="is live"):
        live.drop_version("v1")
    with pytest.raises(VersionError, match="no version v7"):
        index_versions.rollback(live, "v7")
    with pytest.raises(VersionError, match="no earlier good version"):
        index_versions.rollback(live)


def test_an_unfinished_draft_is_discarded_by_the_next_build(live: VectorStore) -> None:
    build_next(live, ["Never finished."])

    assert index_versions.discard_drafts(live) == ["v2"]
    assert live.version_names() == ["v1"]
    assert live.live_version() == "v1"


def test_an_unseeded_version_starts_empty(live: VectorStore) -> None:
    staged = live.stage_version(seed=False)
    staged.open(SCHEMA)
    assert staged.count() == 0
    staged.close()
    assert live_count(live) == len(corpus_points())


def test_recreate_on_the_collection_handle_drops_every_version(live: VectorStore) -> None:
    index_versions.publish(live, build_next(live, ["x"]))
    live.open(SCHEMA, recreate=True)
    assert live.version_names() == ["v1"]
    assert live.count() == 0


def test_a_second_build_of_the_same_index_refuses_with_the_holder(tmp_path: Path) -> None:
    with (
        index_versions.build_lock(tmp_path, "docs"),
        pytest.raises(IndexBusyError, match="pid"),
        index_versions.build_lock(tmp_path, "docs"),
    ):
        pass
    with index_versions.build_lock(tmp_path, "docs"):  # released: free again
        pass


def test_a_legacy_edge_index_is_read_in_place_and_migrates_on_the_next_build(
    tmp_path: Path,
) -> None:
    store = EdgeStore(tmp_path, "docs")
    store.open(SCHEMA)
    store.upsert(corpus_points())
    store.close()
    root = store.root  # rebuild the pre-versions layout: shard/ + collection.json at the root
    shutil.move(root / "versions" / "v1" / "shard", root / "shard")
    shutil.move(root / "versions" / "v1" / "collection.json", root / "collection.json")
    shutil.rmtree(root / "versions")
    (root / "current").unlink()

    legacy = EdgeStore(tmp_path, "docs")
    assert legacy.live_version() == LEGACY
    assert legacy.count() == len(corpus_points())
    legacy.close()

    index_versions.publish(legacy, build_next(legacy, ["Migrated."]))
    assert legacy.live_version() == "v1"
    assert live_count(legacy) == len(corpus_points()) + 1
    assert index_versions.rollback(legacy) == ("v1", LEGACY)  # still there until pruned


def test_a_legacy_server_collection_migrates_behind_an_alias(tmp_path: Path) -> None:
    from qdrant_client import models as qm

    store = QdrantServerStore(path=tmp_path / "q", collection="docs")
    client = store._client  # build a pre-versions collection named "docs" directly
    client.create_collection(
        "docs",
        vectors_config={"dense": qm.VectorParams(size=8, distance=qm.Distance.COSINE)},
        sparse_vectors_config={"bm25": qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
        metadata={"ragserve_schema": SCHEMA.to_dict(), "ragserve_meta": {}},
    )
    legacy_handle = store.at_version(LEGACY)
    legacy_handle.upsert(corpus_points())
    assert store.live_version() == LEGACY

    index_versions.publish(store, build_next(store, ["Migrated."]))

    assert store.live_version() == "v1"
    assert live_count(store) == len(corpus_points()) + 1
    assert [alias.collection_name for alias in client.get_aliases().aliases] == ["docs__v1"]
    store.close()


@pytest.mark.slow
def test_kill_9_while_building_leaves_the_live_version_and_the_next_build_completes(
    tmp_path: Path,
) -> None:
    store = EdgeStore(tmp_path, "docs")
    store.open(SCHEMA)
    store.upsert(corpus_points())
    store.close()
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store_contract import SCHEMA, page_points
        from ragserve.store.edge import EdgeStore
        staged = EdgeStore({str(tmp_path)!r}, "docs").stage_version()
        staged.open(SCHEMA)
        staged.upsert(page_points({NEW_PAGE!r}, ["half", "written"]))
        os.kill(os.getpid(), 9)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    assert killed.returncode == -9

    survivor = EdgeStore(tmp_path, "docs")
    assert survivor.live_version() == "v1"
    assert survivor.count() == len(corpus_points())
    survivor.close()
    assert index_versions.discard_drafts(survivor) == ["v2"]
    index_versions.publish(survivor, build_next(survivor, ["whole"]))
    after = EdgeStore(tmp_path, "docs")
    assert after.count() == len(corpus_points()) + 1
    assert all(state.complete for state in after.page_states().values())
    after.close()


def test_a_full_disk_while_seeding_is_a_clear_error_and_the_live_version_stays(
    tmp_path: Path,
) -> None:
    store = EdgeStore(tmp_path, "docs")
    store.open(SCHEMA)
    store.upsert(corpus_points())
    store.close()
    # RLIMIT_FSIZE makes large writes fail the way a full disk does (EFBIG vs ENOSPC).
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(StoreUnavailableError, match="live version is intact"):
            store.stage_version()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert store.live_version() == "v1"
    assert store.version_names() == ["v1"]
    assert store.count() == len(corpus_points())
    store.close()


def test_live_index_follows_a_switch_and_closes_the_old_version_after_its_last_lease(
    live: VectorStore,
) -> None:
    closed: list[str] = []

    def release(handle: VectorStore) -> None:
        closed.append(str(handle.version))
        handle.close()

    following = LiveIndex(live, lambda store: store.count(), poll_s=0.01, release_version=release)
    with following.lease() as (_, count_v1):
        assert (following.version, count_v1) == ("v1", len(corpus_points()))
        index_versions.publish(live, build_next(live, ["switched"]))
        assert following.refresh(force=True)
        with following.lease() as (_, count_v2):
            assert count_v2 == len(corpus_points()) + 1
        assert closed == []  # v1 still has a request in flight
    assert closed == ["v1"]
    assert following.version == "v2"
    following.close()


def test_live_index_keeps_serving_while_requests_race_a_switch(live: VectorStore) -> None:
    following = LiveIndex(live, lambda store: store, poll_s=0.001)
    errors: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                with following.lease() as (store, _):
                    seen.add(store.count())
            except BaseException as exc:  # any failure is what this test is about
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    index_versions.publish(live, build_next(live, ["one"]))
    index_versions.publish(live, build_next(live, ["two", "three"]))
    deadline = time.monotonic() + 30
    while following.version != "v3" and time.monotonic() < deadline:
        following.refresh()  # a reader may be the one switching; then this returns at once
    with following.lease() as (store, _):
        after = store.count()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    following.close()

    assert errors == []
    assert following.version is None  # closed
    assert after == len(corpus_points()) + 2  # v3: the page was rewritten with two chunks
    assert seen <= {len(corpus_points()), len(corpus_points()) + 1, after}

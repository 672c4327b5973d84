"""Ray Serve replicas follow a newly published index version, and a rollback, live."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.index import BASE, build_index, shared_embedder

from ragserve.config import Settings
from ragserve.documents import Chunk, chunk_id, content_hash
from ragserve.serve.deployments import run_serve
from ragserve.store import SPARSE_ENCODING, IndexedChunk, IndexSchema, SparseEncoder
from ragserve.store import versions as index_versions
from ragserve.store.edge import EdgeStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "Zanzibar quokka"
NEW_URL = f"{BASE}/quokka.html"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    import ray
    from ray import serve

    data_dir = tmp_path_factory.mktemp("serve-versions")
    build_index(data_dir)
    port = free_port()
    settings = Settings.model_validate(
        {
            "store": {"data_dir": data_dir, "version_poll_s": 0.3},
            "embed": {"device": "cpu"},
            "serve": {"host": "127.0.0.1", "port": port, "topology": "split"},
        }
    )
    try:
        run_serve(settings, blocking=False)
        base = f"http://127.0.0.1:{port}"
        wait_for(base, "v1", timeout_s=120)
        yield base, data_dir
    finally:
        serve.shutdown()
        ray.shutdown()


def wait_for(base: str, version: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{base}/readyz", timeout=5)
            seen = ready.json().get("index_version")
            if ready.status_code == 200 and seen == version:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the service reports index version {seen}, not {version}")


def publish_a_new_page(data_dir: Path) -> str:
    """What an ingest does, in this process: stage v2 from v1, add a page, switch."""
    embedder = shared_embedder()
    text = "The Zanzibar quokka is the mascot of the new release notes page."
    page_hash = content_hash(text)
    chunk = Chunk(
        id=chunk_id(NEW_URL, 0, page_hash),
        text=text,
        url=NEW_URL,
        section_url=f"{NEW_URL}#mascot",
        title="Quokka",
        heading_path=("Quokka",),
        ordinal=0,
        document_hash=page_hash,
        chunk_count=1,
    )
    live = EdgeStore(data_dir, "docs")
    staged = live.stage_version()
    staged.open(
        IndexSchema(
            embed_model=embedder.model_name,
            dimension=embedder.dimension,
            chunk_size=512,
            chunk_overlap=50,
            sparse=SPARSE_ENCODING,
        )
    )
    staged.upsert(
        [
            IndexedChunk(
                chunk=chunk,
                dense=embedder.embed_documents([text])[0],
                sparse=SparseEncoder().encode_documents([text])[0],
            )
        ]
    )
    staged.close()
    index_versions.publish(live, str(staged.version))
    return str(staged.version)


def pages(base: str) -> list[str]:
    response = httpx.post(f"{base}/search", json={"query": QUESTION}, timeout=30)
    assert response.status_code == 200, response.text
    return [source["page_url"] for source in response.json()["sources"]]


def test_the_retriever_replica_follows_a_publish_and_a_rollback(
    served: tuple[str, Path],
) -> None:
    base, data_dir = served
    assert NEW_URL not in pages(base)

    assert publish_a_new_page(data_dir) == "v2"
    wait_for(base, "v2")
    assert pages(base)[0] == NEW_URL
    assert 'ragserve_index_version{version="v2"} 1.0' in httpx.get(f"{base}/metrics").text

    index_versions.rollback(EdgeStore(data_dir, "docs"))
    wait_for(base, "v1")
    assert NEW_URL not in pages(base)

"""A tiny real index about Ray Serve, for API tests and serving benchmarks.

Real parts only: an ``EdgeStore`` under a temporary folder, the bundled
MiniLM embedder and the real ``SparseEncoder``, over ten short passages from
four pages. Building it takes a second once the embedder is loaded, so API
tests exercise true retrieval instead of a stub.

    settings = build_index(tmp_path)          # Settings pointing at the index
    agent = QueryAgent(settings, embedder=shared_embedder())

Run standalone to build one for ``bench/serve.py``:
``python tests/support/index.py DATA_DIR``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from ragserve.config import DEFAULT_EMBED_MODEL, EmbedSettings, Settings
from ragserve.documents import Chunk, chunk_id, content_hash
from ragserve.embed import Embedder, build_embedder
from ragserve.store import SPARSE_ENCODING, IndexedChunk, IndexSchema, SparseEncoder
from ragserve.store.edge import EdgeStore

BASE = "https://docs.example.org/serve"

#: page path → (page title, [(heading, anchor, passage), ...])
PAGES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "/scaling.html": (
        "Scaling a deployment",
        [
            (
                "Replicas",
                "replicas",
                "To run several copies of a deployment, set num_replicas: Ray Serve starts "
                "that many replicas, each a Ray actor that keeps the model in memory.",
            ),
            (
                "Autoscaling",
                "autoscaling",
                "Autoscaling adds and removes replicas as load changes. Configure it with "
                "autoscaling_config: min_replicas, max_replicas and target_ongoing_requests.",
            ),
            (
                "Resources",
                "resources",
                "Give a deployment GPUs with ray_actor_options={'num_gpus': 1}; Ray schedules "
                "each replica on a node that has a free GPU.",
            ),
        ],
    ),
    "/composition.html": (
        "Model composition",
        [
            (
                "Deployment handles",
                "handles",
                "Deployments call each other through DeploymentHandle objects. A handle call "
                "returns a DeploymentResponse that you await to get the result.",
            ),
            (
                "Binding",
                "binding",
                "Compose an application by binding deployments: Ingress.bind(Retriever.bind(), "
                "Generator.bind()) passes handles to the ingress constructor.",
            ),
        ],
    ),
    "/http.html": (
        "HTTP ingress",
        [
            (
                "FastAPI",
                "fastapi",
                "Use @serve.ingress(app) to serve a FastAPI app from a deployment class; "
                "routes become methods and the OpenAPI docs are served at /docs.",
            ),
            (
                "Streaming",
                "streaming",
                "Return a StreamingResponse to stream tokens to the client as Server-Sent "
                "Events while the model is still generating.",
            ),
            (
                "Timeouts",
                "timeouts",
                "Set request_timeout_s in the HTTP options to fail requests that take too "
                "long with a 504 Gateway Timeout.",
            ),
        ],
    ),
    "/deploy.html": (
        "Deploying to production",
        [
            (
                "Config files",
                "config-files",
                "Write a Serve config YAML with serve build and apply it with serve deploy; "
                "the config names the import_path of the application builder.",
            ),
            (
                "Graceful shutdown",
                "graceful-shutdown",
                "Replicas finish in-flight requests before they stop; tune "
                "graceful_shutdown_timeout_s for long requests.",
            ),
        ],
    ),
}

#: Questions whose best source is known, for assertions: question → section URL.
KNOWN_ANSWERS: dict[str, str] = {
    "How do I run several copies of a deployment?": f"{BASE}/scaling.html#replicas",
    "How do I stream tokens to the client?": f"{BASE}/http.html#streaming",
    "How do deployments call each other?": f"{BASE}/composition.html#handles",
}


@functools.cache
def shared_embedder() -> Embedder:
    """The bundled MiniLM, loaded once per process and shared by every test."""
    embedder = build_embedder(EmbedSettings(model=DEFAULT_EMBED_MODEL, device="cpu"))
    embedder.embed_query("warm up")
    return embedder


def index_chunks() -> list[Chunk]:
    """The corpus as chunks, with deterministic ids like a real ingest."""
    chunks = []
    for path, (title, sections) in PAGES.items():
        url = BASE + path
        page_hash = content_hash("".join(text for _, _, text in sections))
        for ordinal, (heading, anchor, text) in enumerate(sections):
            chunks.append(
                Chunk(
                    id=chunk_id(url, ordinal, page_hash),
                    text=text,
                    url=url,
                    section_url=f"{url}#{anchor}",
                    title=title,
                    heading_path=(title, heading),
                    ordinal=ordinal,
                    document_hash=page_hash,
                    chunk_count=len(sections),
                )
            )
    return chunks


def build_index(
    data_dir: Path, collection: str = "docs", *, embedder: Embedder | None = None
) -> Settings:
    """Write the corpus into an Edge index under ``data_dir``; return matching settings."""
    embedder = embedder or shared_embedder()
    chunks = index_chunks()
    dense = embedder.embed_documents([chunk.text for chunk in chunks])
    sparse = SparseEncoder().encode_documents([chunk.text for chunk in chunks])
    schema = IndexSchema(
        embed_model=embedder.model_name,
        dimension=embedder.dimension,
        chunk_size=512,
        chunk_overlap=50,
        sparse=SPARSE_ENCODING,
    )
    with EdgeStore(data_dir, collection) as store:
        store.open(schema, recreate=True)
        store.upsert(
            [
                IndexedChunk(chunk=chunk, dense=vector, sparse=keywords)
                for chunk, vector, keywords in zip(chunks, dense, sparse, strict=True)
            ]
        )
    return Settings.model_validate(
        {"store": {"data_dir": data_dir, "collection": collection}, "embed": {"device": "cpu"}}
    )


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tmp/serve-index")
    build_index(target)
    print(f"built a {sum(len(s) for _, s in PAGES.values())}-chunk index under {target}")

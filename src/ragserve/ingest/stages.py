"""The Ray Data stages of ingest: pure batch functions and the embedding actor.

They take and return column batches (``dict[str, numpy.ndarray]``) so Ray can
move them between processes and nodes; everything they need arrives through
constructor arguments, never globals, so the same code runs on a laptop and a
cluster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragserve.config import EmbedSettings, IngestSettings
from ragserve.documents import Chunk, Document
from ragserve.heap import release_free_memory
from ragserve.ingest.chunk import chunk_sections
from ragserve.ingest.extract import empty_page_reason, extract_sections

logger = logging.getLogger(__name__)

Batch = dict[str, Any]

#: Separator for heading paths in columnar batches (a list column would need
#: Arrow list types on every hop; a joined string is simpler and exact).
HEADING_SEP = "\x1f"

CHUNK_COLUMNS = (
    "id",
    "text",
    "url",
    "section_url",
    "title",
    "heading_path",
    "ordinal",
    "document_hash",
    "chunk_count",
)


def document_to_row(document: Document) -> dict[str, Any]:
    return {
        "url": document.url,
        "content": document.content,
        "kind": document.kind,
        "content_hash": document.content_hash,
    }


@dataclass(frozen=True, slots=True)
class Chunking:
    """How pages are cut into chunks: the three settings the chunk stage and the schema need.

    A small frozen value travels to Ray tasks (and into the index schema)
    instead of the whole ``Settings``, so a stage depends only on what it uses.
    """

    size: int
    overlap: int
    section_aware: bool

    @classmethod
    def of(cls, settings: IngestSettings) -> Chunking:
        """The chunking an ingest run uses."""
        return cls(settings.chunk_size, settings.chunk_overlap, settings.section_aware)


def chunk_batch(batch: Batch, *, chunking: Chunking) -> Batch:
    """Extract and chunk a batch of documents into a batch of chunk rows.

    A page that yields no text gets one row with an empty ``id`` and the reason
    in ``text``, so the driver can report it instead of silently dropping it.
    """
    columns: dict[str, list[Any]] = {name: [] for name in CHUNK_COLUMNS}
    for url, content, kind, doc_hash in zip(
        batch["url"], batch["content"], batch["kind"], batch["content_hash"], strict=True
    ):
        document = Document(
            url=str(url), content=str(content), kind=kind, content_hash=str(doc_hash)
        )
        try:
            sections = extract_sections(document)
            chunks = chunk_sections(
                sections,
                document_hash=document.content_hash,
                chunk_size=chunking.size,
                chunk_overlap=chunking.overlap,
                section_aware=chunking.section_aware,
            )
        except Exception as exc:  # one bad page must not fail the job
            logger.warning("extracting %s failed: %s", url, exc)
            _append_problem(columns, document, f"extraction failed: {exc}")
            continue
        if not chunks:
            _append_problem(columns, document, empty_page_reason(document))
            continue
        for chunk in chunks:
            _append_chunk(columns, chunk)
    return {name: np.asarray(values, dtype=object) for name, values in columns.items()}


def _append_chunk(columns: dict[str, list[Any]], chunk: Chunk) -> None:
    columns["id"].append(chunk.id)
    columns["text"].append(chunk.text)
    columns["url"].append(chunk.url)
    columns["section_url"].append(chunk.section_url)
    columns["title"].append(chunk.title)
    columns["heading_path"].append(HEADING_SEP.join(chunk.heading_path))
    columns["ordinal"].append(chunk.ordinal)
    columns["document_hash"].append(chunk.document_hash)
    columns["chunk_count"].append(chunk.chunk_count)


def _append_problem(columns: dict[str, list[Any]], document: Document, reason: str) -> None:
    for name in CHUNK_COLUMNS:
        columns[name].append("" if name not in {"ordinal", "chunk_count"} else 0)
    columns["text"][-1] = reason
    columns["url"][-1] = document.url
    columns["document_hash"][-1] = document.content_hash


def rows_to_chunks(batch: Batch) -> list[Chunk]:
    """Rebuild ``Chunk`` values from a columnar batch (skipping problem rows)."""
    chunks = []
    for i in range(len(batch["id"])):
        if not batch["id"][i]:
            continue
        heading = str(batch["heading_path"][i])
        chunks.append(
            Chunk(
                id=str(batch["id"][i]),
                text=str(batch["text"][i]),
                url=str(batch["url"][i]),
                section_url=str(batch["section_url"][i]),
                title=str(batch["title"][i]),
                heading_path=tuple(heading.split(HEADING_SEP)) if heading else (),
                ordinal=int(batch["ordinal"][i]),
                document_hash=str(batch["document_hash"][i]),
                chunk_count=int(batch["chunk_count"][i]),
            )
        )
    return chunks


class EmbedBatch:
    """Ray Data actor: loads the embedder once, then embeds batch after batch."""

    def __init__(
        self, settings: EmbedSettings, models_dir: Path, threads: int | None = None
    ) -> None:
        from ragserve.embed import build_embedder

        # Ray pins OMP threads to the actor's num_cpus; embedding is the
        # bottleneck of CPU ingest, so the encoder gets the cores we were given.
        self._embedder = build_embedder(settings, models_dir=models_dir, threads=threads)
        self._embedder.warm_up()

    def __call__(self, batch: Batch) -> Batch:
        keep = np.asarray([bool(i) for i in batch["id"]], dtype=bool)
        texts = [str(t) for t, k in zip(batch["text"], keep, strict=True) if k]
        vectors = self._embedder.embed_documents(texts)
        dim = vectors.shape[1] if vectors.size else self._embedder.dimension
        dense = np.zeros((len(keep), dim), dtype=np.float32)
        dense[keep] = vectors
        out = dict(batch)
        out["dense"] = dense
        release_free_memory()  # the actor's RSS stays flat across batches (ragserve.heap)
        return out

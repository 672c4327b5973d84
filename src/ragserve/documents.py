"""The values that flow through ragserve, defined once.

Every stage takes and returns these plain frozen dataclasses, so extraction and
chunking stay pure functions that run unchanged inside Ray tasks, and the CLI
and HTTP API render the same ``Answer``.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

ContentKind = Literal["html", "markdown", "text"]

#: Namespace for deterministic point ids: the same chunk always gets the same id,
#: so re-ingesting is idempotent and a killed ingest resumes without duplicates.
CHUNK_ID_NAMESPACE = uuid.UUID("6f1c2a7e-4b1d-5c8e-9a3f-2d7b8e6c1a90")


def content_hash(data: str | bytes) -> str:
    """A stable short hash of a page's content (hex sha256, 32 chars)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:32]


def chunk_id(url: str, ordinal: int, document_hash: str) -> str:
    """Deterministic point id of the ``ordinal``-th chunk of a page version.

    The tutorial used ``hash(path)``, which gave every chunk of a page the same
    id, so each page kept only its last chunk. Including the ordinal keeps every
    chunk; including the page hash makes a changed page's chunks new points, so
    replacing a page is "write new, then delete the old hash".
    """
    return str(uuid.uuid5(CHUNK_ID_NAMESPACE, f"{url}\x00{ordinal}\x00{document_hash}"))


@dataclass(frozen=True, slots=True)
class Document:
    """One fetched page or file, before extraction."""

    url: str
    content: str
    kind: ContentKind = "html"
    content_hash: str = ""
    fetched_at: float = 0.0
    etag: str | None = None
    last_modified: str | None = None

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", content_hash(self.content))


@dataclass(frozen=True, slots=True)
class Section:
    """A run of a page's main text under one heading.

    ``anchor`` is the heading's ``id`` (empty for text before the first
    heading), so ``section_url`` deep-links to the place the text came from.
    """

    url: str
    title: str
    anchor: str
    heading_path: tuple[str, ...]
    text: str

    @property
    def section_url(self) -> str:
        return f"{self.url}#{self.anchor}" if self.anchor else self.url


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a section, the unit that is embedded and stored."""

    id: str
    text: str
    url: str
    section_url: str
    title: str
    heading_path: tuple[str, ...]
    ordinal: int
    document_hash: str
    chunk_count: int = 0

    def payload(self) -> dict[str, Any]:
        """The payload stored beside the vectors (see ``store``)."""
        return {
            "text": self.text,
            "url": self.url,
            "section_url": self.section_url,
            "title": self.title,
            "heading_path": list(self.heading_path),
            "ordinal": self.ordinal,
            "document_hash": self.document_hash,
            "chunk_count": self.chunk_count,
        }

    @classmethod
    def from_payload(cls, point_id: str, payload: dict[str, Any]) -> Chunk:
        return cls(
            id=str(point_id),
            text=str(payload.get("text", "")),
            url=str(payload.get("url", "")),
            section_url=str(payload.get("section_url", payload.get("url", ""))),
            title=str(payload.get("title", "")),
            heading_path=tuple(payload.get("heading_path") or ()),
            ordinal=int(payload.get("ordinal", 0)),
            document_hash=str(payload.get("document_hash", "")),
            chunk_count=int(payload.get("chunk_count", 0)),
        )


@dataclass(frozen=True, slots=True)
class SparseVector:
    """A keyword (BM25 term-frequency) vector: parallel index/value lists."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A chunk returned by a store query, with its (fused) score."""

    chunk: Chunk
    score: float


@dataclass(frozen=True, slots=True)
class Source:
    """A numbered citation in an answer: ``[n]`` in the text links here."""

    n: int
    url: str
    title: str
    score: float
    snippet: str
    page_url: str = ""
    heading_path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Answer:
    """What a question gets back, from the CLI and the API alike.

    ``degraded`` is true when the LLM could not be used and the text is an
    extractive fallback; ``warnings`` says why. ``grounded`` is false when
    the text cites no source, or cites a number that is not a source.
    """

    question: str
    text: str
    sources: tuple[Source, ...]
    model: str
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    degraded: bool = False
    warnings: tuple[str, ...] = ()
    grounded: bool = True

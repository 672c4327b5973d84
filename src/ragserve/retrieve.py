"""Question → the k chunks an answer is written from.

Dense (semantic) and BM25 (keyword) candidates are fused by reciprocal rank in
the store, then near-duplicate chunks are collapsed and at most
``max_per_page`` chunks per page are kept, so k slots cover k different places
in the docs instead of five neighbouring chunks of one page. An optional
cross-encoder reranks the survivors; ``min_score`` drops weak matches.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from ragserve.config import RetrieveSettings
from ragserve.documents import ScoredChunk
from ragserve.embed import Embedder
from ragserve.errors import QueryError
from ragserve.rerank import Reranker
from ragserve.store.base import SearchFilter, SearchMode, VectorStore
from ragserve.store.sparse import SparseEncoder

_SPACE = re.compile(r"\s+")
#: Reciprocal-rank constant for fusing the first stage with the reranker.
RRF_K = 2
#: Dense hits fetched among the chosen pages to find each one's closest section.
SECTION_POOL = 200


@dataclass(frozen=True, slots=True)
class Retrieval:
    """Ranked chunks plus seconds spent per stage (embed, retrieve, rerank)."""

    chunks: list[ScoredChunk]
    timings: dict[str, float] = field(default_factory=dict)


class Retriever:
    """Hybrid retrieval over one store; cheap per call, heavy parts shared."""

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        settings: RetrieveSettings | None = None,
        *,
        sparse_encoder: SparseEncoder | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings or RetrieveSettings()
        self.sparse_encoder = sparse_encoder or SparseEncoder()
        self.reranker = reranker

    def retrieve(
        self,
        question: str,
        *,
        k: int | None = None,
        search_filter: SearchFilter | None = None,
        mode: SearchMode | None = None,
        max_per_page: int | None = None,
    ) -> Retrieval:
        question = question.strip()
        if not question:
            raise QueryError(
                "the question is empty; ask something, e.g. 'How do I scale a deployment?'"
            )
        k = k or self.settings.k
        if k < 1:
            raise QueryError(f"k must be at least 1 (got {k})")
        mode = mode or self.settings.mode
        per_page = max_per_page or self.settings.max_per_page
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        dense = self.embedder.embed_query(question) if mode != "sparse" else None
        sparse = self.sparse_encoder.encode_query(question) if mode != "dense" else None
        timings["embed"] = time.perf_counter() - t0

        # Fetch enough fused chunks that diversity filtering can still fill k;
        # when one page holds most matches, widen until k pages are found.
        want = max(k * per_page, k) * (4 if per_page < k else 1)
        if self.reranker is not None:
            want = max(want, self.settings.rerank_candidates)
        pool = max(self.settings.candidates, want)
        t1 = time.perf_counter()
        limit = want
        while True:
            candidates = self.store.search(
                dense=dense,
                sparse=sparse,
                limit=limit,
                mode=mode,
                candidates=pool,
                search_filter=search_filter,
            )
            ranked = diversify(candidates, max_per_page=per_page)
            if len(ranked) >= max(k, want // 4) or len(candidates) < limit or limit >= pool:
                break
            limit = min(limit * 4, pool)
        hybrid = dense is not None and sparse is not None
        if hybrid and per_page == 1 and self.settings.section_by_meaning:
            assert dense is not None
            ranked = self._closest_sections(ranked[:k], dense, search_filter) + ranked[k:]
        timings["retrieve"] = time.perf_counter() - t1

        if self.reranker is not None:
            t2 = time.perf_counter()
            head = ranked[: self.settings.rerank_candidates]
            rescored = self.reranker.rerank(question, head)
            ranked = fuse_ranks(head, rescored, weight=self.settings.rerank_weight)
            timings["rerank"] = time.perf_counter() - t2
        if self.settings.min_score is not None:
            ranked = [c for c in ranked if c.score >= self.settings.min_score]
        return Retrieval(chunks=ranked[:k], timings=timings)

    def _closest_sections(
        self,
        top: list[ScoredChunk],
        dense: npt.NDArray[np.float32],
        search_filter: SearchFilter | None,
    ) -> list[ScoredChunk]:
        """Keep the pages fusion chose; represent each by its section closest in meaning.

        Every chunk of a page carries the page's title, so BM25 scores a page's
        sections alike and fusion may pick a section that only shares the
        title's words (the demo question got "Configuring Parallelism with
        OMP_NUM_THREADS" for autoscaling). One dense query restricted to the
        chosen pages picks each page's section by meaning instead; the fused
        score, and so the order, stays. Measured through ``ragserve eval``: the
        Ray docs dev set's section@5 0.505 → 0.532 (+5/−2), but Celery −2 and
        Git +1 questions, so ``retrieve.section_by_meaning`` is off by default.
        """
        pages = [scored.chunk.url for scored in top]
        if not pages or (search_filter is not None and "url" in search_filter.equals):
            return top
        equals = dict(search_filter.equals) if search_filter is not None else {}
        equals["url"] = pages
        within = SearchFilter(
            equals=equals, url_prefix=search_filter.url_prefix if search_filter else None
        )
        hits = self.store.search(
            dense=dense,
            sparse=None,
            limit=SECTION_POOL,
            mode="dense",
            candidates=SECTION_POOL,
            search_filter=within,
        )
        closest: dict[str, ScoredChunk] = {}
        for hit in hits:  # best first: the first hit of a page is its closest section
            closest.setdefault(hit.chunk.url, hit)
        return [
            replace(closest[scored.chunk.url], score=scored.score)
            if scored.chunk.url in closest
            else scored
            for scored in top
        ]


def fuse_ranks(
    first: Sequence[ScoredChunk],
    rescored: Sequence[ScoredChunk],
    *,
    weight: float,
    rrf_k: int = RRF_K,
) -> list[ScoredChunk]:
    """Combine the first-stage order with a reranker's by weighted reciprocal rank.

    A cross-encoder alone throws away what the first stage knew (on the Ray
    docs it ranked worse by itself); fused by rank, each list votes
    ``1 / (rrf_k + rank)``, the reranker's vote times ``weight``. The score of
    each returned chunk is the reranker's, so ``min_score`` keeps its meaning.
    ``weight=0`` keeps the first-stage order.
    """
    first_rank = {scored.chunk.id: rank for rank, scored in enumerate(first, start=1)}
    rerank_rank = {scored.chunk.id: rank for rank, scored in enumerate(rescored, start=1)}

    def fused(scored: ScoredChunk) -> float:
        chunk_id = scored.chunk.id
        return 1.0 / (rrf_k + first_rank[chunk_id]) + weight / (rrf_k + rerank_rank[chunk_id])

    return sorted(rescored, key=fused, reverse=True)


def diversify(chunks: Sequence[ScoredChunk], *, max_per_page: int) -> list[ScoredChunk]:
    """Drop near-duplicate texts and keep at most ``max_per_page`` per page, in order."""
    seen_texts: set[str] = set()
    per_page: dict[str, int] = {}
    kept = []
    for scored in chunks:
        key = _SPACE.sub(" ", scored.chunk.text).strip().lower()
        if key in seen_texts:
            continue
        page = scored.chunk.url
        if per_page.get(page, 0) >= max_per_page:
            continue
        seen_texts.add(key)
        per_page[page] = per_page.get(page, 0) + 1
        kept.append(scored)
    return kept

"""Diversification of ranked chunks: near-duplicates collapse, pages spread."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ragserve.documents import Chunk, ScoredChunk
from ragserve.retrieve import diversify, fuse_ranks

pytestmark = pytest.mark.unit


def scored(url: str, text: str, score: float) -> ScoredChunk:
    chunk = Chunk(
        id=f"{url}-{text}",
        text=text,
        url=url,
        section_url=url,
        title="",
        heading_path=(),
        ordinal=0,
        document_hash="h",
    )
    return ScoredChunk(chunk=chunk, score=score)


def test_at_most_max_per_page_chunks_per_page_in_rank_order() -> None:
    ranked = [scored("a", "1", 0.9), scored("a", "2", 0.8), scored("b", "3", 0.7)]
    kept = diversify(ranked, max_per_page=1)
    assert [c.chunk.text for c in kept] == ["1", "3"]


def test_identical_texts_from_different_pages_collapse() -> None:
    ranked = [scored("a", "Same  text", 0.9), scored("b", "same text", 0.8)]
    assert len(diversify(ranked, max_per_page=3)) == 1


def test_two_per_page_keeps_two() -> None:
    ranked = [scored("a", str(i), 1 - i / 10) for i in range(5)]
    assert len(diversify(ranked, max_per_page=2)) == 2


def test_answer_citing_its_sources_is_grounded() -> None:
    from ragserve.agent import check_citations

    assert check_citations("Set num_replicas [1], or autoscale [2].", 3) == (True, [])


def test_answer_citing_a_missing_source_is_flagged() -> None:
    from ragserve.agent import check_citations

    grounded, warnings = check_citations("See [4].", 3)
    assert grounded is False
    assert "[4]" in warnings[0]


def test_answer_without_citations_is_flagged_but_i_dont_know_is_not() -> None:
    from ragserve.agent import check_citations

    assert check_citations("Use more replicas.", 2)[0] is False
    assert check_citations("I don't know.", 2) == (True, [])


def test_fuse_ranks_weight_zero_keeps_the_first_stage_order() -> None:
    first = [scored(f"https://d/{n}.html", f"text {n}", 1.0 - n / 10) for n in range(4)]
    rescored = sorted(
        (replace(c, score=float(n)) for n, c in enumerate(first)), key=lambda c: -c.score
    )
    fused = fuse_ranks(first, rescored, weight=0.0)
    assert [c.chunk.url for c in fused] == [c.chunk.url for c in first]
    assert [c.score for c in fused] == [0.0, 1.0, 2.0, 3.0]  # the reranker's scores


def test_fuse_ranks_heavy_weight_follows_the_reranker_and_equal_weight_blends() -> None:
    first = [scored(f"https://d/{n}.html", f"text {n}", 1.0) for n in range(4)]
    # The reranker reverses the order.
    rescored = [replace(c, score=float(n)) for n, c in enumerate(first)][::-1]
    heavy = fuse_ranks(first, rescored, weight=100.0)
    assert [c.chunk.url for c in heavy] == [c.chunk.url for c in rescored]
    # Equal weight: 1/(2+1) + 1/(2+4) ties with 1/(2+4) + 1/(2+1); the two middle ones tie too.
    even = fuse_ranks(first, rescored, weight=1.0)
    assert {c.chunk.url for c in even[:2]} == {first[0].chunk.url, first[3].chunk.url}

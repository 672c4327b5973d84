"""Section-aware chunking: the invariants the index relies on, and the
behaviour the tutorial's splitter had, for comparison runs."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragserve.documents import Chunk, Document, Section, chunk_id
from ragserve.errors import ConfigError
from ragserve.ingest.chunk import chunk_sections, split_text
from ragserve.ingest.extract import extract_sections

pytestmark = pytest.mark.unit

URL = "https://docs.example.com/guide.html"
SITES = Path(__file__).resolve().parent.parent / "fixtures" / "sites"

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.()", min_size=1, max_size=12)
lines = st.lists(words, min_size=1, max_size=30).map(" ".join)
paragraphs = st.lists(lines, min_size=1, max_size=6).map("\n".join)
section_texts = st.lists(paragraphs, min_size=1, max_size=8).map("\n\n".join)
headings = st.text(alphabet="ABCdef xyz", min_size=1, max_size=40).map(str.strip).filter(bool)


@st.composite
def pages(draw: st.DrawFn) -> list[Section]:
    count = draw(st.integers(min_value=1, max_value=6))
    return [
        Section(
            url=URL,
            title="Guide",
            anchor=f"s{index}",
            # Distinct headings: identical chunks of a page are dropped as duplicates.
            heading_path=("Guide", f"{draw(headings)} {index}"),
            text=draw(section_texts),
        )
        for index in range(count)
    ]


sizes = st.integers(min_value=64, max_value=700).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(min_value=0, max_value=size // 4))
)


def check_page_invariants(chunks: list[Chunk], chunk_size: int) -> None:
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    assert {chunk.chunk_count for chunk in chunks} == {len(chunks)}
    assert [chunk.id for chunk in chunks] == [chunk_id(URL, c.ordinal, "h1") for c in chunks]
    assert len({chunk.id for chunk in chunks}) == len(chunks)
    assert len({chunk.text for chunk in chunks}) == len(chunks)
    for chunk in chunks:
        assert chunk.text.strip()
        assert len(chunk.text) <= chunk_size


@settings(max_examples=60, deadline=None)
@given(page=pages(), size_and_overlap=sizes, section_aware=st.booleans())
def test_chunks_fit_cover_every_word_and_have_stable_ids(
    page: list[Section], size_and_overlap: tuple[int, int], section_aware: bool
) -> None:
    chunk_size, chunk_overlap = size_and_overlap
    chunks = chunk_sections(
        page,
        document_hash="h1",
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        section_aware=section_aware,
    )
    check_page_invariants(chunks, chunk_size)
    assert chunks == chunk_sections(
        page,
        document_hash="h1",
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        section_aware=section_aware,
    )
    for section in page:
        own = (
            [c for c in chunks if c.section_url == section.section_url] if section_aware else chunks
        )
        chunk_words = {word for chunk in own for word in chunk.text.split()}
        assert set(section.text.split()) <= chunk_words


def test_section_that_fits_is_one_chunk_headed_by_its_path() -> None:
    section = Section(URL, "Ray Serve", "autoscaling", ("Ray Serve", "Autoscaling"), "Short text.")
    [chunk] = chunk_sections([section], document_hash="h1")
    assert chunk.text == "Ray Serve > Autoscaling\n\nShort text."
    assert chunk.section_url == f"{URL}#autoscaling"
    assert chunk.heading_path == ("Ray Serve", "Autoscaling")


def test_neighbouring_tiny_sections_are_never_merged() -> None:
    sections = [
        Section(URL, "Guide", "a", ("Guide", "A"), "Alpha."),
        Section(URL, "Guide", "b", ("Guide", "B"), "Beta."),
    ]
    chunks = chunk_sections(sections, document_hash="h1")
    assert [c.section_url for c in chunks] == [f"{URL}#a", f"{URL}#b"]


def test_long_section_splits_with_overlap_between_neighbours() -> None:
    text = " ".join(f"Sentence number {n} says something about autoscaling." for n in range(60))
    section = Section(URL, "Guide", "a", ("Guide",), text)
    chunks = chunk_sections([section], document_hash="h1", chunk_size=200, chunk_overlap=60)
    bodies = [chunk.text.split("\n\n", 1)[1] for chunk in chunks]
    assert len(bodies) > 5
    for previous, following in itertools.pairwise(bodies):
        first_sentence = following.split(". ")[0]
        assert first_sentence in previous  # the next chunk starts inside the previous one


def test_code_lines_are_not_cut_when_they_fit() -> None:
    code = "\n".join(f"    result_{n} = compute(value_{n}, option={n})" for n in range(40))
    section = Section(URL, "API", "code", ("API", "Code"), f"Example:\n\n{code}")
    chunks = chunk_sections([section], document_hash="h1", chunk_size=300, chunk_overlap=50)
    original_lines = set(code.splitlines()) | {"Example:"}
    for chunk in chunks:
        body = chunk.text.split("\n\n", 1)[1]
        for line in body.split("\n"):
            assert line in original_lines  # whole lines, indentation kept


def test_long_heading_path_is_capped_so_chunks_still_fit() -> None:
    path = tuple(f"A rather long heading number {n}" for n in range(10))
    section = Section(URL, "Title", "deep", path, "word " * 400)
    chunks = chunk_sections([section], document_hash="h1", chunk_size=256, chunk_overlap=20)
    assert all(len(c.text) <= 256 for c in chunks)
    assert chunks[0].text.startswith("…")
    assert "number 9\n\n" in chunks[0].text


def test_plain_mode_points_every_chunk_at_the_page() -> None:
    sections = extract_sections(
        Document(url=URL, content=(SITES / "sphinx-furo/guide.html").read_text(encoding="utf-8"))
    )
    chunks = chunk_sections(
        sections, document_hash="h1", chunk_size=200, chunk_overlap=20, section_aware=False
    )
    assert len(chunks) > 1
    assert {c.section_url for c in chunks} == {URL}
    assert all(c.heading_path == () for c in chunks)
    assert "Troubleshooting" in "\n".join(c.text for c in chunks)  # headings kept as lines


def test_plain_mode_splits_like_the_tutorials_splitter() -> None:
    splitters = pytest.importorskip("langchain_text_splitters")
    url = "https://docs.ray.io/en/master/serve/scaling-and-resource-allocation.html"
    html = (SITES / "ray-docs/scaling-and-resource-allocation.html").read_text(encoding="utf-8")
    sections = extract_sections(Document(url=url, content=html))
    ours = chunk_sections(sections, document_hash="h1", section_aware=False)
    page_text = "\n\n".join(
        f"{s.heading_path[-1]}\n\n{s.text}" if s.heading_path else s.text for s in sections
    )
    theirs = splitters.RecursiveCharacterTextSplitter(
        separators=["\n\n", "\n", " ", ""], chunk_size=512, chunk_overlap=50, length_function=len
    ).split_text(page_text)
    assert abs(len(ours) - len(theirs)) <= max(2, len(theirs) // 10)
    squash = re.compile(r"\s+")
    assert squash.sub(" ", ours[0].text) == squash.sub(" ", theirs[0])


def test_split_text_never_returns_blank_pieces() -> None:
    assert split_text("   \n\n  ", 10, 2) == []
    assert split_text("x" * 25, 10, 0) == ["x" * 10, "x" * 10, "x" * 5]


@pytest.mark.parametrize(("chunk_size", "chunk_overlap"), [(0, 0), (100, 100), (100, -1)])
def test_impossible_sizes_are_rejected_with_a_clear_error(
    chunk_size: int, chunk_overlap: int
) -> None:
    section = Section(URL, "T", "", (), "text")
    with pytest.raises(ConfigError, match="chunk_"):
        chunk_sections(
            [section], document_hash="h1", chunk_size=chunk_size, chunk_overlap=chunk_overlap
        )


def test_no_sections_gives_no_chunks() -> None:
    assert chunk_sections([], document_hash="h1") == []


def test_chunk_id_is_a_fixed_literal_across_processes() -> None:
    """Pinned literal: a salted hash() would pass a same-process comparison but not this."""
    assert chunk_id(URL, 3, "h1") == "f24b9638-902a-52fe-93b6-abff06e18e61"

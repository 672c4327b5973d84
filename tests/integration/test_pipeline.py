"""Ingest end to end on real Ray, real Qdrant Edge and real sample pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.site_server import SiteServer

from ragserve.errors import ContentError, SourceError
from ragserve.ingest.pipeline import run_ingest
from ragserve.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]


def stored_point_ids(settings: Any) -> list[str]:
    store = open_store(settings.store)
    try:
        states = store.page_states()
        return sorted(f"{url}:{state.points}" for url, state in states.items())
    finally:
        store.close()


def test_every_chunk_is_stored_and_reingest_writes_nothing(
    small_corpus: Path, make_settings: Callable[..., Any]
) -> None:
    settings = make_settings()
    events: list[tuple[str, int, int | None]] = []
    first = run_ingest(str(small_corpus), settings, progress=lambda *event: events.append(event))
    assert first.pages == 5
    # A folder knows its size up front: progress has a total (the ETA's basis).
    assert [e for e in events if e[0] == "pages"][-1] == ("pages", 5, 5)
    assert [e for e in events if e[0] == "written"][-1] == ("written", first.chunks, None)
    assert first.pages_failed == []
    assert first.chunks > 5  # many chunks per page, not one (the tutorial's id bug)
    assert first.points_written == first.chunks
    assert first.points_total == first.chunks

    second = run_ingest(str(small_corpus), settings)
    assert second.points_written == 0
    assert second.pages_skipped == 5
    assert second.points_total == first.points_total


def test_a_page_without_text_does_not_make_every_rerun_a_new_version(
    small_corpus: Path, make_settings: Callable[..., Any]
) -> None:
    # A page that yields no text is never stored, so every run offers it again;
    # that alone must not build and publish a new version of an unchanged index.
    (small_corpus / "serve" / "shell.html").write_text(
        "<html><head><title>App</title></head><body><div id='app'></div>"
        "<script src='app.js'></script></body></html>",
        encoding="utf-8",
    )
    settings = make_settings()
    first = run_ingest(str(small_corpus), settings)
    assert first.published
    assert any(failed["url"].endswith("shell.html") for failed in first.pages_failed)

    second = run_ingest(str(small_corpus), settings)
    assert second.unchanged
    assert not second.published
    assert second.version == first.version
    assert second.points_written == 0
    assert any(failed["url"].endswith("shell.html") for failed in second.pages_failed)
    store = open_store(settings.store)
    try:
        assert store.version_names() == [first.version]
    finally:
        store.close()


def test_changed_page_is_replaced_and_vanished_page_deleted(
    small_corpus: Path, make_settings: Callable[..., Any]
) -> None:
    settings = make_settings()
    first = run_ingest(str(small_corpus), settings)
    changed = small_corpus / "serve" / "architecture.html"
    html = changed.read_text(encoding="utf-8")
    changed.write_text(
        re.sub(r"(<h1[^>]*>)", r"\1Zanzibar quokka replica ", html, count=1), encoding="utf-8"
    )
    (small_corpus / "serve" / "getting_started.html").unlink()

    second = run_ingest(str(small_corpus), settings)
    assert second.pages_written == 1
    assert second.pages_deleted == 1
    assert second.points_deleted > 0

    # The index now holds exactly what a fresh ingest of the edited folder holds.
    fresh = make_settings(**{"store.collection": "fresh"})
    rebuilt = run_ingest(str(small_corpus), fresh)
    assert second.points_total == rebuilt.points_total
    assert stored_point_ids(settings) == stored_point_ids(fresh)
    assert first.points_total != second.points_total


def test_ingest_killed_midway_leaves_the_live_version_and_resumes_without_duplicates(
    small_corpus: Path, make_settings: Callable[..., Any]
) -> None:
    settings = make_settings(**{"ingest.batch_size": 16})
    run_ingest(str(small_corpus), settings)
    before = stored_point_ids(settings)
    changed = small_corpus / "serve" / "architecture.html"
    html = changed.read_text(encoding="utf-8")
    changed.write_text(
        re.sub(r"(<h1[^>]*>)", r"\1Zanzibar quokka replica ", html, count=1), encoding="utf-8"
    )

    class KilledError(Exception):
        pass

    def kill_after_first_write(stage: str, done: int, total: int | None) -> None:
        if stage == "written" and done > 0:
            raise KilledError

    with pytest.raises(KilledError):
        run_ingest(str(small_corpus), settings, progress=kill_after_first_write)
    assert stored_point_ids(settings) == before  # the build died beside the live version

    resumed = run_ingest(str(small_corpus), settings)
    assert resumed.published
    assert resumed.version == "v2"  # the dead draft left no trace
    reference = run_ingest(str(small_corpus), make_settings(**{"store.collection": "ref"}))
    assert resumed.points_total == reference.points_total
    assert stored_point_ids(settings) == stored_point_ids(
        make_settings(**{"store.collection": "ref"})
    )


def test_crawl_of_a_local_site_and_conditional_recrawl(
    small_corpus: Path, make_settings: Callable[..., Any]
) -> None:
    settings = make_settings(**{"ingest.allow_private": True})
    with SiteServer(root=small_corpus) as site:
        start = site.url("/serve/index.html")
        first = run_ingest(start, settings)
        assert first.pages >= 2
        assert first.points_total == first.chunks
        second = run_ingest(start, settings)
    assert second.points_written == 0
    assert second.points_total == first.points_total


def test_empty_folder_is_a_clear_error(tmp_path: Path, make_settings: Callable[..., Any]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ContentError, match=r"\.html"):
        run_ingest(str(empty), make_settings())


def test_unreachable_start_url_fails_the_job(make_settings: Callable[..., Any]) -> None:
    settings = make_settings(**{"ingest.allow_private": True, "ingest.retries": 0})
    with pytest.raises(SourceError, match=r"127\.0\.0\.1"):
        run_ingest("http://127.0.0.1:1/docs/", settings)


@pytest.mark.slow
def test_embedding_and_writing_start_while_the_crawl_is_still_fetching(
    make_settings: Callable[..., Any],
) -> None:
    """The crawl streams into the pipeline: chunks are stored before the last page is
    fetched (the old pipeline read the whole site first).

    The site's tail is held until the first chunks are written, so the test does not
    race the machine's speed: a pipeline that waits for the whole crawl before
    writing never releases the tail, and the server counts the wait as timed out.
    """
    import threading

    from tests.support.site_server import Page

    # Ray Data holds a read's output until it passes ingest.stream.BLOCK_BYTES
    # (256 KiB), so the part before the hold is three 32-page blocks of 8 KB pages
    # (~750 KB): more than one full Ray block reaches the embedder while the crawl waits.
    count, held_from = 104, 96
    links = "".join(f"<li><a href='p{i}.html'>page {i}</a></li>" for i in range(count))
    pages: dict[str, Page | str] = {"/docs/": f"<main><h1>Index</h1><ul>{links}</ul></main>"}
    filler = "".join(f"<p>Paragraph {n} says a little more on the topic.</p>" for n in range(150))
    first_written = threading.Event()
    for i in range(count):
        text = f"<main><h1>Page {i}</h1><p>Topic {i} is explained here.</p>{filler}</main>"
        held = first_written if i >= held_from else None
        pages[f"/docs/p{i}.html"] = Page(text, wait_for=held, wait_timeout_s=60.0)
    stages_before_release: list[str] = []

    def progress(stage: str, done: int, total: int | None) -> None:
        if not first_written.is_set():
            stages_before_release.append(stage)
        if stage == "written" and done > 0:
            first_written.set()

    settings = make_settings(
        **{
            "ingest.allow_private": True,
            "ingest.concurrency": 1,
            "ingest.batch_size": 8,
            "ingest.timeout_s": 120.0,
        }
    )
    with SiteServer(pages) as site:
        summary = run_ingest(site.url("/docs/"), settings, progress=progress)
    assert site.wait_timeouts == 0, "nothing was written until the crawl ended"
    assert "written" in stages_before_release
    assert site.hits(f"/docs/p{count - 1}.html") == 1
    assert summary.pages == count + 1
    assert summary.points_total == summary.chunks >= count

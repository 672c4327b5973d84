"""Ingest orchestration: source → sync plan → Ray Data (extract, chunk, embed) → store.

Pages stream (``ragserve.ingest.stream``): the source is read on a thread while
earlier pages are already being embedded and written, and only a bounded
number of pages is in flight, so memory does not grow with the corpus and a
crawl's network time overlaps the encoder's CPU time. The driver keeps only
the sync bookkeeping (each page's URL and content hash, ``SyncPlan``).

The stage graph follows the Anyscale tutorial's (which was worth keeping), with
its bugs fixed: every chunk gets its own deterministic id, unchanged pages are
skipped, changed pages are replaced only after their new chunks are stored, and
vanished pages are deleted. The store is written from the driver, because the
embedded Qdrant Edge store lives in this process; with a Qdrant server that
costs nothing measurable next to embedding.

Every run builds a new index version beside the live one (``ragserve.store.
versions``): the live version is copied, the copy is brought up to date, an
optional gate evaluates it, and only then does the live pointer move. Readers
(a running ``ragserve serve``) never see a half-done run; a failed or killed
run leaves the live version as it was. A run that changes nothing drops its
copy and leaves the live version in place.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragserve.config import EmbedSettings, IngestSettings, Settings
from ragserve.documents import Document
from ragserve.embed import embedding_dimension
from ragserve.errors import SourceError
from ragserve.heap import embed_actor_env, release_free_memory
from ragserve.ingest.items import NotModified, PageProblem, Validators, is_gone
from ragserve.ingest.sources import iter_source
from ragserve.ingest.stages import (
    Chunking,
    EmbedBatch,
    chunk_batch,
    rows_to_chunks,
)
from ragserve.ingest.stream import PageStream, queued_pages_dataset, streaming
from ragserve.ingest.sync import SyncPlan
from ragserve.ingest.urls import Scope, public_url
from ragserve.runtime import ensure_ray
from ragserve.store import (
    SPARSE_ENCODING,
    IndexedChunk,
    IndexSchema,
    SparseEncoder,
    VectorStore,
    open_store,
    versions,
)

logger = logging.getLogger(__name__)

#: progress(stage, done, total): stages are "pages", "embedded", "written".
Progress = Callable[[str, int, int | None], None]
#: gate(new version) -> {"passed": bool, ...}: runs before the new version goes live.
Gate = Callable[[VectorStore], dict[str, Any]]


@dataclass
class IngestSummary:
    """The report of one ingest run; ``--json`` prints it as one object."""

    source: str
    collection: str
    embed_model: str
    pages: int = 0
    pages_written: int = 0
    pages_skipped: int = 0
    pages_failed: list[dict[str, str]] = field(default_factory=list)
    pages_deleted: int = 0
    pages_vanished_kept: int = 0
    chunks: int = 0
    points_written: int = 0
    points_deleted: int = 0
    points_total: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: The version this run built (or the live one, when nothing changed).
    version: str | None = None
    #: The version that was live before; it stays live when ``published`` is False.
    previous_version: str | None = None
    published: bool = False
    unchanged: bool = False
    gate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


def run_ingest(
    source: str,
    settings: Settings,
    *,
    recreate: bool = False,
    progress: Progress | None = None,
    store: VectorStore | None = None,
    gate: Gate | None = None,
) -> IngestSummary:
    """Make the index match ``source`` in a new version; see the module docstring.

    ``recreate`` builds the new version empty instead of from a copy (the
    live one still serves until the switch). ``gate`` sees the finished new
    version before it goes live; when it returns ``passed: False`` the
    version is kept as ``rejected`` and the live one stays (``published`` is
    False). Raises ``SourceError`` when nothing could be read at all
    (unreachable start URL, empty folder), ``StoreError`` when the index
    cannot be used, ``VersionError`` when another build of the index runs.
    Per-page problems are collected in the summary, never raised.
    """
    own_store = store is None
    store = store or open_store(settings.store)
    try:
        with versions.build_lock(settings.store.data_dir, store.name):
            versions.discard_drafts(store)
            return _build_version(source, settings, store, recreate, progress or _noop, gate)
    finally:
        if own_store:
            store.close()


def _build_version(
    source: str,
    settings: Settings,
    live: VectorStore,
    recreate: bool,
    report: Progress,
    gate: Gate | None,
) -> IngestSummary:
    started = time.perf_counter()
    schema = _schema(settings.embed, settings.ingest, settings.models_dir, live, recreate)
    summary = IngestSummary(source=source, collection=live.name, embed_model=settings.embed.model)
    summary.previous_version = live.live_version()
    seeding = time.perf_counter()
    staged = live.stage_version(seed=not recreate)
    summary.version = staged.version
    summary.stage_seconds["seed"] = round(time.perf_counter() - seeding, 3)
    try:
        staged.open(schema, recreate=recreate)
        plan = SyncPlan(stored=staged.page_states(), prefix=source_prefix(source, settings.ingest))
        reading = time.perf_counter()
        items = iter_source(source, settings.ingest, _validators(plan))
        total = operator.length_hint(items) or None  # a folder's file count; a crawl's unknown
        with PageStream(items, functools.partial(_accept, plan, summary, report, total)) as stream:
            _write_pages(stream, plan, settings, staged, summary, report)
        summary.stage_seconds["source"] = round(stream.seconds, 3)
        summary.stage_seconds["embed_write"] = round(time.perf_counter() - reading, 3)
        if stream.error is not None:
            raise stream.error
        _check_source(source, plan, summary)
        _delete_vanished(plan, settings.ingest, staged, summary)
        wrote = bool(summary.points_written or summary.points_deleted)
        if not recreate and summary.previous_version and not wrote:
            # Nothing new, or only pages that yield no text (they are never stored,
            # so every run offers them again): nothing changed, no new version.
            return _unchanged(live, staged, summary, started, gate)
        if wrote:
            _optimize(staged, summary)
        summary.points_total = staged.count()
        summary.seconds = round(time.perf_counter() - started, 3)
        staged.set_meta({"last_ingest": {**summary.to_dict(), "finished_at": time.time()}})
        staged.close()  # a server may open it right after the switch (Edge: one process)
        if gate is not None:
            summary.gate = gate(staged)
            staged.close()
            if not summary.gate.get("passed", False):
                versions.mark(staged, "rejected", gate=summary.gate)
                return summary
            staged.set_meta({versions.EVAL_KEY: summary.gate})
        versions.publish(live, str(summary.version))
        summary.published = True
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary
    except BaseException:
        staged.close()
        # The live version is untouched; a draft the next run would drop anyway goes now.
        _drop_quietly(live, summary.version)
        raise


def _unchanged(
    live: VectorStore,
    staged: VectorStore,
    summary: IngestSummary,
    started: float,
    gate: Gate | None,
) -> IngestSummary:
    """Nothing to write or delete: drop the copy, the live version stays.

    A gate still runs, on the copy (the live content, without opening the
    live version, which a server may hold): its score becomes the live
    version's recorded score when it passes.
    """
    summary.points_total = staged.count()
    staged.close()
    if gate is not None:
        summary.gate = gate(staged)
        staged.close()
    _drop_quietly(live, summary.version)
    summary.version = summary.previous_version
    if summary.gate is not None and summary.gate.get("passed") and summary.version:
        live.at_version(summary.version).set_meta({versions.EVAL_KEY: summary.gate})
    summary.unchanged = True
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _drop_quietly(live: VectorStore, version: str | None) -> None:
    if version is None:
        return
    try:
        live.drop_version(version)
    except Exception as exc:  # cleanup must not mask the caller's own outcome
        logger.warning("could not drop unfinished version %s: %s", version, exc)


def _schema(
    embed: EmbedSettings,
    ingest: IngestSettings,
    models_dir: Path,
    store: VectorStore,
    recreate: bool,
) -> IndexSchema:
    """The schema this run writes; the model loads here only if its size is unknown.

    It reads the embed and ingest groups only (and where models live): the
    schema is fixed by the model and the chunking, nothing else in Settings.
    """
    existing = store.stored_schema() if store.exists() and not recreate else None
    if existing is not None and existing.embed_model == embed.model:
        dimension = existing.dimension  # a re-ingest need not load the model in the driver
    else:
        dimension = embedding_dimension(embed, models_dir=models_dir)
    return IndexSchema(
        embed_model=embed.model,
        dimension=dimension,
        chunk_size=ingest.chunk_size,
        chunk_overlap=ingest.chunk_overlap,
        section_aware=ingest.section_aware,
        sparse=SPARSE_ENCODING,
    )


def _validators(plan: SyncPlan) -> dict[str, Validators]:
    """Validators of every complete stored page, with or without an ETag: the
    crawler also uses them as seeds, since a 304 page yields no links."""
    return {
        url: Validators(etag=state.etag, last_modified=state.last_modified)
        for url, state in plan.stored.items()
        if state.complete
    }


def _accept(
    plan: SyncPlan, summary: IngestSummary, report: Progress, total: int | None, item: object
) -> Document | None:
    """One item of the source into the plan; the page when it must be (re)written.

    Progress counts pages read (of ``total`` when the source knows it): the
    stream lets reading run only a bounded way ahead of embedding, so pages
    read tracks the whole run and gives a fair ETA.

    Runs on the source's thread (``PageStream``); only it changes ``plan`` and
    ``summary.pages_failed`` until the source ends.
    """
    document: Document | None = None
    if isinstance(item, PageProblem):
        # 404/410 pages are deletable, crawl limits hide nothing; other failures keep data.
        if not is_gone(item) and not item.limit:
            plan.problem(item.url)
        summary.pages_failed.append({"url": item.url, "reason": item.reason})
    elif isinstance(item, NotModified):
        plan.not_modified(item.url)
    elif isinstance(item, Document) and plan.offer(item):
        plan.page_meta[item.url] = _page_meta(item)
        document = item
    report("pages", len(plan.seen) + len(summary.pages_failed), total)
    return document


def _check_source(source: str, plan: SyncPlan, summary: IngestSummary) -> None:
    summary.pages = len(plan.seen)
    summary.pages_skipped = len(plan.skipped)
    if not plan.seen and summary.pages_failed:
        first = summary.pages_failed[0]
        raise SourceError(
            f"no page of {source} could be ingested ({len(summary.pages_failed)} failed; "
            f"first: {first['url']}: {first['reason']})"
        )


def _write_pages(
    stream: PageStream,
    plan: SyncPlan,
    settings: Settings,
    store: VectorStore,
    summary: IngestSummary,
    report: Progress,
) -> None:
    """Embed and store the pages the stream yields, as it yields them."""
    encoder = SparseEncoder()
    pages_with_chunks: set[str] = set()
    for batch in _embedded_batches(stream, settings):
        problems = [i for i, chunk_id in enumerate(batch["id"]) if not chunk_id]
        for i in problems:
            url = str(batch["url"][i])
            plan.problem(url)
            summary.pages_failed.append({"url": url, "reason": str(batch["text"][i])})
        chunks = rows_to_chunks(batch)
        if not chunks:
            continue
        keep = [i for i, chunk_id in enumerate(batch["id"]) if chunk_id]
        dense = batch["dense"][keep]
        sparse = encoder.encode_documents([c.text for c in chunks])
        points = [
            IndexedChunk(chunk=c, dense=dense[i], sparse=sparse[i]) for i, c in enumerate(chunks)
        ]
        summary.points_written += store.upsert(points, page_meta=plan.page_meta)
        summary.chunks += len(chunks)
        pages_with_chunks.update(c.url for c in chunks)
        report("written", summary.chunks, None)
        release_free_memory()  # batches come and go; the driver's RSS should not climb
    # Old versions go only now that every new chunk is stored: a reader never
    # sees a page vanish, and a killed run leaves the old version in place.
    for url in sorted(pages_with_chunks):
        if url in plan.stored:
            summary.points_deleted += store.delete_page(url, keep_hash=plan.to_write[url])
    summary.pages_written = len(pages_with_chunks)


def _embedded_batches(stream: PageStream, settings: Settings) -> Iterator[dict[str, Any]]:
    """Chunk and embed the streamed pages on Ray Data; nothing starts without a page."""
    blocks = stream.blocks()
    first = next(blocks, None)
    if first is None:
        return  # nothing to write: no Ray, no model load
    ray = ensure_ray()
    embed = settings.embed
    gpus = embed.num_gpus
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    if embed.device in {"auto", "cuda"} and gpus == 0 and cluster_gpus > 0:
        gpus = 1.0
    threads = None if gpus else embed.threads or max(1, (os.cpu_count() or 1) // embed.actors)
    with streaming(ray, first, blocks) as pages:
        # Half a CPU each: extraction tasks then run beside the embedding actor
        # (and are not fused into it), so parsing overlaps with embedding.
        chunked = queued_pages_dataset(ray, pages).map_batches(
            chunk_batch,
            batch_size=16,
            batch_format="numpy",
            num_cpus=0.5,
            fn_kwargs={"chunking": Chunking.of(settings.ingest)},
        )
        embedded = chunked.map_batches(
            EmbedBatch,
            batch_size=settings.ingest.batch_size,
            batch_format="numpy",
            fn_constructor_kwargs={
                "settings": embed,
                "models_dir": settings.models_dir,
                "threads": threads,
            },
            compute=ray.data.ActorPoolStrategy(size=embed.actors),
            num_gpus=gpus or None,
            num_cpus=1,
            runtime_env={"env_vars": embed_actor_env(os.environ)},
        )
        # Re-batched to the write size: streamed blocks are small (see ingest.stream).
        yield from embedded.iter_batches(
            batch_size=settings.ingest.batch_size, batch_format="numpy"
        )


def _page_meta(document: Document) -> dict[str, Any]:
    return {
        "etag": document.etag,
        "last_modified": document.last_modified,
        "ingested_at": time.time(),
    }


def _delete_vanished(
    plan: SyncPlan, ingest: IngestSettings, store: VectorStore, summary: IngestSummary
) -> None:
    for url in _vanished(plan, ingest, summary):
        summary.points_deleted += store.delete_page(url)
        summary.pages_deleted += 1


def _vanished(
    plan: SyncPlan, ingest: IngestSettings, summary: IngestSummary, *, quiet: bool = False
) -> list[str]:
    """Stored pages to delete; none when the listing may be incomplete (kept, counted)."""
    truncated = summary.pages >= ingest.max_pages
    # A crawl discovers pages through links: a failed page hides its children,
    # so after failures "not seen" does not mean "gone". A folder listing is exact.
    crawl_failed = bool(plan.failed) and is_url(summary.source)
    listing_complete = not truncated and not crawl_failed
    candidates = plan.vanished(listing_complete=True)
    if not listing_complete:
        summary.pages_vanished_kept = len(candidates)
        if candidates and not quiet:
            logger.warning(
                "%d stored pages were not seen but are kept: the crawl was %s",
                len(candidates),
                "cut at max_pages" if truncated else "incomplete (some pages failed)",
            )
        return []
    return candidates


def is_url(source: str) -> bool:
    return source.strip().lower().startswith(("http://", "https://"))


def source_prefix(source: str, settings: IngestSettings) -> str:
    """The URL prefix every page of ``source`` is indexed under.

    Vanished-page deletion is limited to it, so ingesting a second site or
    folder into the same collection never deletes the first one's pages.
    """
    if is_url(source):
        scope = Scope.from_start_url(source.strip())
        return public_url(scope.root, scope, settings.base_url)
    if settings.base_url:
        return settings.base_url.rstrip("/") + "/"
    root = Path(os.path.abspath(Path(source).expanduser()))
    return root.as_uri().rstrip("/") + "/"


def _optimize(store: VectorStore, summary: IngestSummary) -> None:
    """Build the HNSW index once per run (Edge); servers optimise on their own."""
    t0 = time.perf_counter()
    store.optimize()
    summary.stage_seconds["optimize"] = round(time.perf_counter() - t0, 3)

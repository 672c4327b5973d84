"""``ragserve ingest``: crawl or read a source into a new index version, with progress.

On a terminal progress is drawn as bars; without one (``--json``, pipes, CI
logs, cron, Ray jobs) a one-line status goes to stderr periodically.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Annotated, Any

import typer

from ragserve.commands.options import (
    ANY_STORE,
    EXIT_GATE,
    AllowPrivateOpt,
    BaseUrlOpt,
    EmbedModelOpt,
    EvalOpt,
    JsonOpt,
    MaxDropOpt,
    MaxPagesOpt,
    MinScoreOpt,
    PrefixOpt,
    StoreChoice,
    VerboseOpt,
    err,
    fail,
    out,
    setup_logging,
    with_store_options,
)
from ragserve.commands.refresh import explain_gate, gate_for, with_gate_compat
from ragserve.errors import RagserveError


@with_store_options
def ingest(
    source: Annotated[
        str, typer.Argument(help="A docs URL to crawl, or a folder of .html/.md/.txt files.")
    ],
    store_options: StoreChoice = ANY_STORE,
    embed_model: EmbedModelOpt = None,
    base_url: BaseUrlOpt = None,
    max_pages: MaxPagesOpt = None,
    max_depth: Annotated[int | None, typer.Option("--max-depth", help="Link depth limit.")] = None,
    max_page_bytes: Annotated[
        int | None, typer.Option("--max-page-bytes", help="Skip larger pages.")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Parallel fetches.")
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", help="Characters per chunk [512].")
    ] = None,
    chunk_overlap: Annotated[
        int | None, typer.Option("--chunk-overlap", help="Overlap [50].")
    ] = None,
    allow_private: AllowPrivateOpt = False,
    ignore_robots: Annotated[
        bool, typer.Option("--ignore-robots", help="Do not honour robots.txt.")
    ] = False,
    recreate: Annotated[
        bool, typer.Option("--recreate", help="Drop the index and build it anew.")
    ] = False,
    eval_file: EvalOpt = None,
    min_score: MinScoreOpt = None,
    max_drop: MaxDropOpt = None,
    source_prefix: PrefixOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Crawl or read SOURCE into a new index version; switch to it when complete (and gated)."""
    setup_logging(verbose)
    from ragserve.ingest.pipeline import run_ingest

    try:
        settings = store_options.settings(
            **{
                "embed.model": embed_model,
                "ingest.base_url": base_url,
                "ingest.max_pages": max_pages,
                "ingest.max_depth": max_depth,
                "ingest.max_page_bytes": max_page_bytes,
                "ingest.concurrency": concurrency,
                "ingest.chunk_size": chunk_size,
                "ingest.chunk_overlap": chunk_overlap,
                "ingest.allow_private": True if allow_private else None,
                "ingest.respect_robots": False if ignore_robots else None,
            },
        )
        gate = gate_for(settings, eval_file, source_prefix or [], min_score, max_drop)
        with _IngestProgress(enabled=not as_json) as progress:
            summary = run_ingest(source, settings, recreate=recreate, progress=progress, gate=gate)
    except RagserveError as exc:
        raise fail(exc) from exc
    result = with_gate_compat(summary.to_dict())
    if as_json:
        out.print(json.dumps(result), markup=False)
    else:
        _print_ingest_summary(result)
    explain_gate(result)
    if result.get("gate") is not None and not result["gate"].get("passed"):
        raise typer.Exit(EXIT_GATE)


def _print_ingest_summary(result: dict[str, Any]) -> None:
    out.print(
        f"[bold]{result['collection']}[/bold]: {result['pages']} pages "
        f"({result['pages_written']} written, {result['pages_skipped']} unchanged, "
        f"{len(result['pages_failed'])} failed, {result['pages_deleted']} deleted) · "
        f"{result['chunks']} chunks · {result['points_written']} points written, "
        f"{result['points_deleted']} deleted, {result['points_total']} in the index · "
        f"{result['seconds']:.1f}s"
    )
    if result.get("unchanged"):
        out.print(f"  nothing changed: version {result['version']} stays live")
    elif result.get("published"):
        out.print(f"  version {result['version']} is live (was {result['previous_version']})")
    else:
        out.print(f"  version {result['version']} was built but is not live")
    failed = result["pages_failed"]
    for problem in failed[:20]:
        out.print(f"  [yellow]skipped[/yellow] {problem['url']}: {problem['reason']}", markup=True)
    if len(failed) > 20:
        out.print(f"  … and {len(failed) - 20} more (use --json for all)")
    if result.get("pages_vanished_kept"):
        out.print(
            f"  [yellow]kept[/yellow] {result['pages_vanished_kept']} pages not seen in this "
            "crawl (it was cut short or had failures); they are deleted after a complete crawl"
        )


class _IngestProgress:
    """Progress of an ingest: rich bars on a terminal, else periodic lines on stderr.

    With ``--json``, or when stderr is a pipe (CI logs, cron mail, a Ray job),
    bars would draw nothing until the end and a long ingest would look hung;
    there a one-line status goes to stderr every ``interval_s`` seconds.
    """

    def __init__(self, enabled: bool, *, interval_s: float = 15.0) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bars = enabled and err.is_terminal
        self._progress = Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=not self._bars,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._counts: dict[str, tuple[int, int | None]] = {}
        self._interval_s = interval_s
        self._started = time.monotonic()
        # A timer, not the callbacks, prints: a phase that reports nothing for
        # minutes (a model loading, a first batch embedding) still shows it is alive.
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="ingest-progress", daemon=True)

    def __enter__(self) -> _IngestProgress:
        self._progress.__enter__()
        if not self._bars:
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        self._progress.__exit__(None, None, None)

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self._bars:
            if stage not in self._tasks:
                label = {"pages": "pages", "written": "chunks"}.get(stage, stage)
                self._tasks[stage] = self._progress.add_task(label, total=total)
            self._progress.update(self._tasks[stage], completed=done, total=total)
            return
        self._counts[stage] = (done, total)

    def _tick(self) -> None:
        while not self._stop.wait(self._interval_s):
            line = progress_line(dict(self._counts), time.monotonic() - self._started)
            print(line, file=sys.stderr, flush=True)


def progress_line(counts: dict[str, tuple[int, int | None]], elapsed_s: float) -> str:
    """``ingest: 812 pages, 5,120 chunks written (41.2/s), 2m05s elapsed[, ETA 3m10s]``."""
    labels = {"pages": "pages", "embedded": "chunks embedded", "written": "chunks written"}
    parts = []
    for stage, (done, total) in counts.items():
        part = f"{done:,}" + (f"/{total:,}" if total else "") + f" {labels.get(stage, stage)}"
        if stage != "pages" and elapsed_s > 0:
            part += f" ({done / elapsed_s:.1f}/s)"
        parts.append(part)
    line = f"ingest: {', '.join(parts) or 'starting'}, {_duration(elapsed_s)} elapsed"
    known = [(done, total) for done, total in counts.values() if total and 0 < done < total]
    if known:
        done, total = max(known, key=lambda pair: pair[0] / pair[1])
        line += f", ETA {_duration(elapsed_s * (total - done) / done)}"
    return line


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"

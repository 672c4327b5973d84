"""The ``ragserve`` command: parse, call the library, render. Nothing else.

Exit codes (documented in the README):
  0  success
  1  the job failed (unreachable source, store down, no index, ...)
  2  bad usage or configuration
  3  ``ask --strict``: the LLM failed and the answer would be degraded
  4  quality gate: an eval score is below ``--min-score``
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ragserve.commands import feedback as feedback_commands
from ragserve.commands import index as index_commands
from ragserve.commands import models as models_commands
from ragserve.commands import refresh as refresh_commands
from ragserve.commands.options import (
    EXIT_DEGRADED,
    EXIT_GATE,
    AllowPrivateOpt,
    BaseUrlOpt,
    CollectionOpt,
    ConfigOpt,
    DataDirOpt,
    EmbedModelOpt,
    EvalOpt,
    JsonOpt,
    KOpt,
    LlmOpt,
    LlmUrlOpt,
    MaxDropOpt,
    MaxPagesOpt,
    MinScoreOpt,
    ModelOpt,
    PrefixOpt,
    QdrantKeyOpt,
    QdrantUrlOpt,
    VerboseOpt,
    build_settings,
    err,
    fail,
    llm_overrides,
    out,
    parse_prefixes,
    setup_logging,
    store_overrides,
)
from ragserve.commands.refresh import explain_gate, gate_for, with_gate_compat
from ragserve.errors import ConfigError, LLMError, QueryError, RagserveError
from ragserve.query import SearchFilter, filter_from_flags

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Question answering over your documentation, with cited sources.",
    pretty_exceptions_enable=False,
)


@app.command()
def ingest(
    source: Annotated[
        str, typer.Argument(help="A docs URL to crawl, or a folder of .html/.md/.txt files.")
    ],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_api_key: QdrantKeyOpt = None,
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
        settings = build_settings(
            config,
            **{
                **store_overrides(data_dir, collection, qdrant_url, qdrant_api_key),
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


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    k: KOpt = None,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter", help="key=value payload filter (url_prefix=... for a URL prefix)."
        ),
    ] = None,
    llm: LlmOpt = None,
    model: ModelOpt = None,
    llm_url: LlmUrlOpt = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit 3 instead of answering extractively when the LLM fails."
        ),
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_api_key: QdrantKeyOpt = None,
    embed_model: EmbedModelOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Answer QUESTION from the index, with numbered deep-linked sources."""
    setup_logging(verbose)
    from ragserve.agent import QueryAgent, answer_to_dict

    try:
        settings = build_settings(
            config,
            **{
                **store_overrides(data_dir, collection, qdrant_url, qdrant_api_key),
                "embed.model": embed_model,
                **llm_overrides(llm, llm_url, model),
            },
        )
        agent = QueryAgent(settings)
        search_filter = parse_filters(filters or [])
        answer = None
        stream_tokens = not as_json and out.is_terminal
        for event in agent.ask_stream(question, k=k, filters=search_filter, strict=strict):
            if event.kind == "token" and stream_tokens:
                out.print(event.text, end="", markup=False)
            elif event.kind == "done":
                answer = event.answer
    except LLMError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_DEGRADED) from exc
    except QueryError as exc:
        raise fail(ConfigError(str(exc))) from exc
    except RagserveError as exc:
        raise fail(exc) from exc
    assert answer is not None
    if as_json:
        out.print(json.dumps(answer_to_dict(answer)), markup=False)
        return
    if not stream_tokens:
        out.print(answer.text, markup=False)
    else:
        out.print()
    for warning in answer.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    out.print("\nSources:", style="bold")
    for source in answer.sources:
        out.print(f"  [{source.n}] {source.title} — {source.url}", markup=False)


def parse_filters(items: list[str]) -> SearchFilter:
    """``key=value`` flags → a ``SearchFilter``; repeated keys match any value."""
    return filter_from_flags(items)


@app.command()
def status(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_api_key: QdrantKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the index: points, schema, last ingest."""
    from ragserve.store import open_store

    try:
        settings = build_settings(
            config,
            **{
                **store_overrides(data_dir, collection, qdrant_url, qdrant_api_key),
            },
        )
        store = open_store(settings.store)
        try:
            exists = store.exists()
            schema = store.stored_schema() if exists else None
            info: dict[str, Any] = {
                "collection": store.name,
                "backend": settings.store.backend,
                "location": settings.store.url or str(settings.store.data_dir),
                "exists": exists,
                "live_version": store.live_version(),
                "points": store.count() if exists else 0,
                "schema": schema.to_dict() if schema else None,
                "last_ingest": store.get_meta().get("last_ingest") if exists else None,
            }
        finally:
            store.close()
    except RagserveError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print(json.dumps(info), markup=False)
        return
    if not exists:
        out.print(
            f"index '{info['collection']}' does not exist at {info['location']}; "
            "run `ragserve ingest`"
        )
        return
    out.print(
        f"[bold]{info['collection']}[/bold] ({info['backend']}, {info['location']}): "
        f"{info['points']} points, live version {info['live_version']}"
    )
    if schema:
        out.print(
            f"  model {schema.embed_model} ({schema.dimension}-d), "
            f"chunks {schema.chunk_size}/{schema.chunk_overlap}"
        )
    last = info["last_ingest"]
    if last:
        out.print(
            f"  last ingest: {last.get('source')} — {last.get('pages')} pages, "
            f"{last.get('points_written')} points written, {last.get('seconds')}s"
        )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Bind address [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port [8000].")] = None,
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    model: ModelOpt = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config", help="Print a Serve config YAML for `serve deploy` and exit."
        ),
    ] = False,
    replicas: Annotated[
        int | None,
        typer.Option("--replicas", help="Retriever replicas (Edge: each gets an index copy)."),
    ] = None,
    no_ray: Annotated[
        bool, typer.Option("--no-ray", help="Plain uvicorn in this process, without Ray Serve.")
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_api_key: QdrantKeyOpt = None,
    verbose: VerboseOpt = 0,
) -> None:
    """Serve the HTTP API (Ray Serve + FastAPI) until interrupted."""
    setup_logging(verbose)
    from ragserve.serve import run_uvicorn
    from ragserve.serve.deployments import run_serve, serve_config_yaml

    try:
        settings = build_settings(
            config,
            **{
                "serve.host": host,
                "serve.port": port,
                "serve.retriever_replicas": replicas,
                "serve.copy_edge_index": True if replicas and replicas > 1 else None,
                **llm_overrides(llm, llm_url, model),
                **store_overrides(data_dir, collection, qdrant_url, qdrant_api_key),
            },
        )
        copy_index = settings.serve.copy_edge_index
        if print_config:
            out.print(serve_config_yaml(settings, copy_edge_index=copy_index), markup=False)
            return
        err.print(f"serving on http://{settings.serve.host}:{settings.serve.port} (Ctrl-C stops)")
        if no_ray:
            run_uvicorn(settings)
        else:
            run_serve(settings, blocking=True, copy_edge_index=copy_index)
    except RagserveError as exc:
        raise fail(exc) from exc


@app.command("eval")
def eval_command(
    questions: Annotated[
        Path, typer.Option("--questions", "-q", help="JSONL: question, source[, answer].")
    ],
    k: KOpt = None,
    source_prefix: Annotated[
        list[str] | None,
        typer.Option("--source-prefix", help="Rewrite OLD=NEW in reference and retrieved URLs."),
    ] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="hybrid | dense | sparse.")] = None,
    answers: Annotated[
        bool, typer.Option("--answers", help="Also generate and score answers.")
    ] = False,
    generators: Annotated[
        str | None,
        typer.Option(
            "--generators",
            help="With --answers: comma-separated generators to compare, e.g. "
            "extractive,llamacpp,openai (default: the --llm provider).",
        ),
    ] = None,
    judge: Annotated[
        str,
        typer.Option(
            "--judge",
            help="With --answers: provider that grades answers 1-5, or none (auto: --llm).",
        ),
    ] = "auto",
    limit: Annotated[
        int | None, typer.Option("--limit", help="Evaluate only the first N questions.")
    ] = None,
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    model: ModelOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write results.jsonl, summary.json, report.html here."),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", help="Exit 4 if the retrieval score is below this."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="results.jsonl (or --out folder) of an earlier eval: questions gained/lost.",
        ),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_api_key: QdrantKeyOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Measure retrieval (and answer) quality of the index on a question set."""
    setup_logging(verbose)
    from ragserve.eval.metrics import compare_with_baseline
    from ragserve.eval.report import load_result_records, write_results
    from ragserve.eval.run import run_eval

    try:
        settings = build_settings(
            config,
            **{
                **store_overrides(data_dir, collection, qdrant_url, qdrant_api_key),
                "retrieve.mode": mode,
                **llm_overrides(llm, llm_url, model),
            },
        )
        result = run_eval(
            settings,
            questions,
            k=k,
            source_prefix=parse_prefixes(source_prefix or []),
            answers=answers,
            generators=generators.split(",") if generators else None,
            judge=judge,
            limit=limit,
        )
        if baseline is not None:
            compare_with_baseline(result, load_result_records(baseline), name=str(baseline))
        summary = result.summary()
        paths = write_results(result, out_dir) if out_dir else {}
    except RagserveError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print(json.dumps(summary), markup=False)
    else:
        _print_eval_summary(summary, paths)
    _warn_about_generators(summary.get("answers"))
    if min_score is not None and summary["retrieval_score"] < min_score:
        err.print(f"[red]quality gate failed:[/red] {summary['retrieval_score']:.3f} < {min_score}")
        raise typer.Exit(EXIT_GATE)


def _print_eval_summary(summary: dict[str, Any], paths: dict[str, Path]) -> None:
    k = summary["k"]
    interval = summary.get("retrieval_score_ci95")
    spread = f" (95% CI {interval[0]:.3f}–{interval[1]:.3f})" if interval else ""
    out.print(
        f"[bold]retrieval score@{k}[/bold] {summary['retrieval_score']:.3f}{spread} · "
        f"section@{k} {summary['section_score']:.3f} · MRR {summary['mrr'] or 0:.3f} · "
        f"{summary['n_questions']} questions"
    )
    recall = summary.get("recall_at") or {}
    out.print("  recall@" + "  ".join(f"{key}: {value:.3f}" for key, value in recall.items()))
    unreachable = summary.get("unreachable") or {}
    if unreachable.get("count"):
        out.print(f"  {unreachable['count']} questions reference pages that are not in the index")
    latency = summary.get("latency", {}).get("total")
    if latency:
        out.print(
            f"  latency p50 {latency['p50'] * 1000:.1f} ms, p99 {latency['p99'] * 1000:.1f} ms"
        )
    answers = summary.get("answers")
    if answers:
        _print_answer_summary(answers)
    versus = summary.get("vs_baseline")
    if versus:
        out.print(
            f"  vs baseline ({versus['baseline_score']:.3f}): +{versus['gained']}/-{versus['lost']}"
            f" questions, sign test p={versus['sign_test_p']:.2f}"
            + ("" if versus["sign_test_p"] < 0.05 else " (not a significant difference)")
        )
    for name, path in paths.items():
        out.print(f"  {name}: {path}")


def _print_answer_summary(answers: dict[str, Any]) -> None:
    from ragserve.eval.answers import format_generator_scores

    judge = answers.get("judge") or "none"
    out.print(f"  answers (similarity: {answers['similarity_model']}; judge: {judge}):")
    for name, scores in answers["by_generator"].items():
        out.print(f"    {name}: " + format_generator_scores(scores), markup=False)


def _warn_about_generators(answers: dict[str, Any] | None) -> None:
    """Generators (or the judge) that could not start, one line each, in any output mode."""
    from rich.markup import escape

    if not answers:
        return
    for name, reason in answers["not_started"].items():
        err.print(f"[yellow]generator {name} did not start:[/yellow] {escape(reason)}")
    if answers.get("judge_error"):
        err.print(f"[yellow]judge did not start:[/yellow] {escape(answers['judge_error'])}")


# Command groups live in ragserve.commands.<group> (one module each, sharing
# ragserve.commands.options); register each here with one app.add_typer(...) line.
app.add_typer(models_commands.app, name="models")
app.add_typer(feedback_commands.app, name="feedback")
app.add_typer(index_commands.app, name="index")
app.command("refresh")(refresh_commands.refresh)


def main() -> None:
    """Console entry point; the only broad ``except`` of the CLI."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()

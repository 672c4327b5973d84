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
from typing import Annotated, Any

import typer

from ragserve.commands import eval as eval_commands
from ragserve.commands import feedback as feedback_commands
from ragserve.commands import index as index_commands
from ragserve.commands import ingest as ingest_commands
from ragserve.commands import models as models_commands
from ragserve.commands import refresh as refresh_commands
from ragserve.commands.options import (
    ANY_STORE,
    EXIT_DEGRADED,
    EmbedModelOpt,
    JsonOpt,
    KOpt,
    LlmOpt,
    LlmUrlOpt,
    ModelOpt,
    StoreChoice,
    VerboseOpt,
    err,
    fail,
    llm_overrides,
    out,
    setup_logging,
    with_store_options,
)
from ragserve.errors import ConfigError, LLMError, QueryError, RagserveError
from ragserve.query import SearchFilter, filter_from_flags

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Question answering over your documentation, with cited sources.",
    pretty_exceptions_enable=False,
)

# The core commands, in the order `ragserve --help` lists them; the long ones
# (ingest, eval) live in ragserve.commands like the command groups.
app.command("ingest")(ingest_commands.ingest)


@app.command()
@with_store_options
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
    store_options: StoreChoice = ANY_STORE,
    embed_model: EmbedModelOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Answer QUESTION from the index, with numbered deep-linked sources."""
    setup_logging(verbose)
    from ragserve.agent import QueryAgent, answer_to_dict

    try:
        settings = store_options.settings(
            **{
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
@with_store_options
def status(
    store_options: StoreChoice = ANY_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Show the index: points, schema, last ingest."""

    try:
        with store_options.opened() as (settings, store):
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
@with_store_options
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
    store_options: StoreChoice = ANY_STORE,
    verbose: VerboseOpt = 0,
) -> None:
    """Serve the HTTP API (Ray Serve + FastAPI) until interrupted."""
    setup_logging(verbose)
    from ragserve.serve import run_uvicorn
    from ragserve.serve.deployments import run_serve, serve_config_yaml

    try:
        settings = store_options.settings(
            **{
                "serve.host": host,
                "serve.port": port,
                "serve.retriever_replicas": replicas,
                "serve.copy_edge_index": True if replicas and replicas > 1 else None,
                **llm_overrides(llm, llm_url, model),
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


app.command("eval")(eval_commands.eval_command)

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

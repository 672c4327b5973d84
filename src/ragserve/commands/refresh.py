"""``ragserve refresh SOURCE``: re-read the source, sync, gate, switch, prune, in one run.

Meant for cron, a Kubernetes CronJob or a Ray job: one JSON summary with
``--json`` and an exit code a scheduler can act on (see ``EXITS``). Also home
of the gate helpers ``ragserve ingest --eval`` shares.

A refresh never takes the live content away because the source misbehaves:
an unreachable source fails the run (exit 1) and the live version stays; pages
that fail in a crawl are kept, never deleted; a failed gate leaves the new
version as ``rejected`` beside the live one (exit 4).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ragserve.commands.options import (
    ANY_STORE,
    EXIT_FAILED,
    EXIT_GATE,
    AllowPrivateOpt,
    BaseUrlOpt,
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
    parse_prefixes,
    setup_logging,
    with_store_options,
)
from ragserve.config import Settings
from ragserve.errors import ConfigError, IndexBusyError, RagserveError
from ragserve.gate import Gate
from ragserve.store import open_store
from ragserve.store import versions as index_versions

#: Exit status of ``ragserve refresh`` (also in the README).
EXIT_BUSY = 5
EXITS = {
    0: "the index is fresh: a new version went live, or nothing had changed",
    EXIT_FAILED: "the refresh failed (source unreachable, store down); the live version stays",
    2: "bad usage or configuration (a gate file that does not exist, ...)",
    EXIT_GATE: "the gate failed: the new version was not switched in",
    EXIT_BUSY: "another ingest or refresh of this index is running; nothing was done",
}


def gate_for(
    settings: Settings,
    eval_file: Path | None,
    prefixes: list[str],
    min_score: float | None,
    max_drop: float | None,
) -> Gate | None:
    """The gate the options ask for, or None; raises ``ConfigError`` on a bad one."""
    if eval_file is None:
        if min_score is not None or max_drop is not None:
            raise ConfigError("--min-score and --max-drop need --eval FILE (the question set)")
        return None
    live_score = None
    if max_drop is not None:
        store = open_store(settings.store)
        try:
            live_score = index_versions.last_score(store) if store.live_version() else None
        finally:
            store.close()
    return Gate(
        settings=settings,
        questions_file=eval_file,
        report_root=settings.store.data_dir / "reports",
        min_score=min_score,
        max_drop=max_drop,
        live_score=live_score,
        source_prefix=parse_prefixes(prefixes),
    )


def with_gate_compat(result: dict[str, Any]) -> dict[str, Any]:
    """``eval`` as ``ingest --json`` printed it before versions, beside the new ``gate``."""
    gate = result.get("gate")
    if gate is not None:
        result["eval"] = {**gate, "gate_failed": not gate.get("passed", False)}
    return result


def explain_gate(result: dict[str, Any]) -> None:
    """Say on stderr what the gate decided and which version is live."""
    gate = result.get("gate")
    if gate is None:
        return
    for note in gate.get("notes", []):
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if gate.get("passed"):
        return
    live = result.get("previous_version") or "none"
    what = (
        f"nothing changed; live version {live} does not pass"
        if result.get("unchanged")
        else f"version {result.get('version')} was not switched in; {live} stays live"
    )
    err.print(
        f"[red]quality gate failed:[/red] {'; '.join(gate['reasons'])}. {what}. "
        f"Report: {gate['report']}",
        highlight=False,
    )


@with_store_options
def refresh(
    source: Annotated[str, typer.Argument(help="The docs URL or folder the index was built from.")],
    eval_file: EvalOpt = None,
    min_score: MinScoreOpt = None,
    max_drop: MaxDropOpt = None,
    source_prefix: PrefixOpt = None,
    keep: Annotated[
        int, typer.Option("--keep", help="Versions kept after a switch, live included [2].", min=1)
    ] = index_versions.DEFAULT_KEEP,
    base_url: BaseUrlOpt = None,
    max_pages: MaxPagesOpt = None,
    allow_private: AllowPrivateOpt = False,
    store_options: StoreChoice = ANY_STORE,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Bring the index up to date from SOURCE: crawl, sync, gate, switch, prune."""
    setup_logging(verbose)
    from ragserve.ingest.pipeline import run_ingest

    started = time.perf_counter()
    try:
        settings = store_options.settings(
            **{
                "ingest.base_url": base_url,
                "ingest.max_pages": max_pages,
                "ingest.allow_private": True if allow_private else None,
            },
        )
        gate = gate_for(settings, eval_file, source_prefix or [], min_score, max_drop)
        summary = run_ingest(source, settings, gate=gate)
        result = with_gate_compat(summary.to_dict())
        result["pruned"] = _prune_after(settings, keep) if summary.published else []
    except IndexBusyError as exc:
        _report_failure(as_json, source, exc, EXIT_BUSY)
        raise typer.Exit(EXIT_BUSY) from exc
    except ConfigError as exc:
        raise fail(exc) from exc
    except RagserveError as exc:
        live = _live_version(settings) if "settings" in locals() else None
        _report_failure(as_json, source, exc, EXIT_FAILED, live)
        raise typer.Exit(EXIT_FAILED) from exc
    result["live_version"] = (
        result["version"]
        if result["published"] or result["unchanged"]
        else result["previous_version"]
    )
    result["refresh_seconds"] = round(time.perf_counter() - started, 3)
    if as_json:
        out.print(json.dumps(result), markup=False)
    else:
        _print_refresh(result)
    explain_gate(result)
    if result.get("gate") is not None and not result["gate"].get("passed"):
        raise typer.Exit(EXIT_GATE)


def _prune_after(settings: Settings, keep: int) -> list[str]:
    store = open_store(settings.store)
    try:
        with index_versions.build_lock(settings.store.data_dir, store.name):
            return index_versions.prune(store, keep)
    finally:
        store.close()


def _live_version(settings: Settings) -> str | None:
    try:
        store = open_store(settings.store)
        try:
            return store.live_version()
        finally:
            store.close()
    except RagserveError:
        return None


def _report_failure(
    as_json: bool, source: str, exc: Exception, code: int, live: str | None = None
) -> None:
    stays = f"; live version {live} stays live" if live else ""
    err.print(f"[red]error:[/red] {exc}{stays}", highlight=False)
    if as_json:
        payload = {"source": source, "error": str(exc), "exit_code": code, "live_version": live}
        out.print(json.dumps(payload), markup=False)


def _print_refresh(result: dict[str, Any]) -> None:
    if result["unchanged"]:
        state = f"unchanged, {result['live_version']} stays live"
    elif result["published"]:
        state = f"{result['version']} is live (was {result['previous_version'] or 'none'})"
    else:
        state = f"{result['version']} built but not switched in"
    out.print(
        f"[bold]{result['collection']}[/bold]: {state} · {result['pages']} pages "
        f"({result['pages_written']} written, {result['pages_skipped']} unchanged, "
        f"{len(result['pages_failed'])} failed, {result['pages_deleted']} deleted) · "
        f"{result['points_written']} points written · {result['refresh_seconds']:.1f}s"
    )
    if result["pruned"]:
        out.print(f"  pruned {', '.join(result['pruned'])}")

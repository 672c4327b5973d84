"""``ragserve index list|rollback|prune``: operate the versions of an index.

Every ingest builds a new version beside the live one and switches to it
when it is complete (and passed its gate); these commands show the versions,
move the live pointer back, and delete old ones. A running ``ragserve serve``
follows the pointer within ``store.version_poll_s`` seconds, without restart.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from ragserve.commands.options import (
    ANY_STORE,
    JsonOpt,
    StoreChoice,
    fail,
    out,
    with_store_options,
)
from ragserve.config import Settings
from ragserve.errors import RagserveError
from ragserve.store import VectorStore
from ragserve.store import versions as index_versions

app = typer.Typer(no_args_is_help=True, help="List, roll back and prune index versions.")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command("list")
@with_store_options
def list_command(
    store_options: StoreChoice = ANY_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Every version: created, pages, chunks, embedder, last eval score, live?"""
    try:
        with store_options.opened() as (settings, store):
            rows = index_versions.list_versions(store)
    except RagserveError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print(json.dumps([row.to_dict() for row in rows]), markup=False)
        return
    if not rows:
        out.print(f"index '{settings.store.collection}' has no versions yet; run `ragserve ingest`")
        return
    out.print("   version   state     created                  pages  chunks  embedder   score")
    for row in rows:
        score = f"{row.eval_score:.3f}" if row.eval_score is not None else "-"
        out.print(
            f"{'*' if row.live else ' '}  {row.name:<9} {row.state:<9} {_when(row.created_at):<24} "
            f"{row.pages if row.pages is not None else '-':>5}  "
            f"{row.chunks if row.chunks is not None else '-':>6}  "
            f"{row.embed_model or '-'}  {score}",
            markup=False,
        )
    out.print("(* = live)")


@app.command("rollback")
@with_store_options
def rollback_command(
    version: Annotated[
        str | None,
        typer.Argument(help="Version to make live \\[the newest good one before the live one]."),
    ] = None,
    store_options: StoreChoice = ANY_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Make an earlier version live again (servers follow within seconds)."""
    try:
        with (
            store_options.opened() as (settings, store),
            index_versions.build_lock(settings.store.data_dir, store.name),
        ):
            previous, live = index_versions.rollback(store, version)
    except RagserveError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print(json.dumps({"previous": previous, "live": live}), markup=False)
    else:
        out.print(f"index '{settings.store.collection}': {live} is live (was {previous})")


@app.command("prune")
@with_store_options
def prune_command(
    keep: Annotated[
        int,
        typer.Option("--keep", help="Versions to keep, the live one included [2].", min=1),
    ] = index_versions.DEFAULT_KEEP,
    store_options: StoreChoice = ANY_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Delete old versions: keep the live one and the KEEP-1 newest good ones before it."""
    try:
        with store_options.opened() as (settings, store):
            dropped = _prune(settings, store, keep)
    except RagserveError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print(json.dumps({"dropped": dropped, "kept": keep}), markup=False)
    else:
        out.print(f"dropped {', '.join(dropped) if dropped else 'nothing'}")


def _prune(settings: Settings, store: VectorStore, keep: int) -> list[str]:
    with index_versions.build_lock(settings.store.data_dir, store.name):
        return index_versions.prune(store, keep)

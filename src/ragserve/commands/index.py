"""``ragserve index list|rollback|prune``: operate the versions of an index.

Every ingest builds a new version beside the live one and switches to it
when it is complete (and passed its gate); these commands show the versions,
move the live pointer back, and delete old ones. A running ``ragserve serve``
follows the pointer within ``store.version_poll_s`` seconds, without restart.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer

from ragserve.commands.options import (
    CollectionOpt,
    ConfigOpt,
    DataDirOpt,
    JsonOpt,
    QdrantKeyOpt,
    QdrantUrlOpt,
    build_settings,
    fail,
    out,
    store_overrides,
)
from ragserve.config import Settings
from ragserve.errors import RagserveError
from ragserve.store import VectorStore, open_store
from ragserve.store import versions as index_versions

app = typer.Typer(no_args_is_help=True, help="List, roll back and prune index versions.")


def _settings(
    config: Path | None,
    data_dir: Path | None,
    collection: str | None,
    qdrant_url: str | None,
    qdrant_api_key: str | None,
) -> Settings:
    return build_settings(
        config, **store_overrides(data_dir, collection, qdrant_url, qdrant_api_key)
    )


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command("list")
def list_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_api_key: QdrantKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every version: created, pages, chunks, embedder, last eval score, live?"""
    try:
        settings = _settings(config, data_dir, collection, qdrant_url, qdrant_api_key)
        store = open_store(settings.store)
        try:
            rows = index_versions.list_versions(store)
        finally:
            store.close()
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
def rollback_command(
    version: Annotated[
        str | None,
        typer.Argument(help="Version to make live \\[the newest good one before the live one]."),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_api_key: QdrantKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make an earlier version live again (servers follow within seconds)."""
    try:
        settings = _settings(config, data_dir, collection, qdrant_url, qdrant_api_key)
        store = open_store(settings.store)
        try:
            with index_versions.build_lock(settings.store.data_dir, store.name):
                previous, live = index_versions.rollback(store, version)
        finally:
            store.close()
    except RagserveError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print(json.dumps({"previous": previous, "live": live}), markup=False)
    else:
        out.print(f"index '{settings.store.collection}': {live} is live (was {previous})")


@app.command("prune")
def prune_command(
    keep: Annotated[
        int,
        typer.Option("--keep", help="Versions to keep, the live one included [2].", min=1),
    ] = index_versions.DEFAULT_KEEP,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_api_key: QdrantKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete old versions: keep the live one and the KEEP-1 newest good ones before it."""
    try:
        settings = _settings(config, data_dir, collection, qdrant_url, qdrant_api_key)
        store = open_store(settings.store)
        try:
            dropped = _prune(settings, store, keep)
        finally:
            store.close()
    except RagserveError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print(json.dumps({"dropped": dropped, "kept": keep}), markup=False)
    else:
        out.print(f"dropped {', '.join(dropped) if dropped else 'nothing'}")


def _prune(settings: Settings, store: VectorStore, keep: int) -> list[str]:
    with index_versions.build_lock(settings.store.data_dir, store.name):
        return index_versions.prune(store, keep)

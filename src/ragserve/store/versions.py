"""Index versions: build beside the live one, gate, switch, roll back, prune.

The backends provide the mechanics (``VectorStore.stage_version``,
``publish_version``, ``drop_version``: a ``current`` file on Qdrant Edge, a
collection alias on a Qdrant server). This module is the policy both share:

- every version records its state in its metadata (``meta["version"]``):
  ``draft`` while it is built, ``ready`` once it passed (or had no) gate and
  went live, ``rejected`` when its gate failed; the live pointer is the only
  thing readers look at, so a draft is never read;
- a build holds a lock file under the data directory: a second build of the
  same index refuses at once with who holds it (``kill -9`` frees it);
- drafts left by a killed build are dropped by the next build (which starts
  again from the live version, so no chunk is duplicated or lost);
- rollback moves the pointer back; prune keeps the live version and the
  ``keep - 1`` newest good versions before it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ragserve.errors import (
    IndexBusyError,
    IndexNotFoundError,
    StoreUnavailableError,
    VersionError,
)
from ragserve.store.base import VectorStore

logger = logging.getLogger(__name__)

State = Literal["draft", "ready", "rejected"]
VERSION_KEY = "version"
EVAL_KEY = "eval"
#: ``prune`` keeps the live version and one before it unless told otherwise.
DEFAULT_KEEP = 2


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One row of ``ragserve index list``."""

    name: str
    live: bool
    state: str
    created_at: float | None
    seeded_from: str | None
    pages: int | None
    chunks: int | None
    embed_model: str | None
    eval_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def version_info(store: VectorStore, name: str, live: str | None) -> VersionInfo:
    handle = store.at_version(name)
    try:
        meta = handle.get_meta()
        schema = handle.stored_schema()
    finally:
        handle.close()
    version = meta.get(VERSION_KEY) or {}
    last = meta.get("last_ingest") or {}
    evaluation = meta.get(EVAL_KEY) or version.get("gate") or {}
    return VersionInfo(
        name=name,
        live=name == live,
        # A version made before states existed was only ever written live.
        state=str(version.get("state", "ready")),
        created_at=version.get("created_at") or last.get("finished_at"),
        seeded_from=version.get("seeded_from"),
        pages=last.get("pages"),
        chunks=last.get("points_total"),
        embed_model=schema.embed_model if schema else None,
        eval_score=evaluation.get("retrieval_score"),
    )


def list_versions(store: VectorStore) -> list[VersionInfo]:
    """Every complete version, oldest first, with what it holds and whether it is live."""
    live = store.live_version()
    return [version_info(store, name, live) for name in store.version_names()]


def mark(handle: VectorStore, state: State, **fields: Any) -> None:
    """Record ``state`` (and extra fields) in the version ``handle`` is pinned to."""
    current = handle.get_meta().get(VERSION_KEY) or {}
    handle.set_meta({VERSION_KEY: {**current, "state": state, **fields}})


def discard_drafts(store: VectorStore) -> list[str]:
    """Drop versions a killed or failed build left as drafts (never the live one)."""
    live = store.live_version()
    dropped = []
    for info in list_versions(store):
        if info.state == "draft" and info.name != live:
            store.drop_version(info.name)
            dropped.append(info.name)
    if dropped:
        logger.warning("dropped unfinished index versions %s", ", ".join(dropped))
    return dropped


def publish(store: VectorStore, version: str, *, reason: str = "ingest") -> str | None:
    """Mark ``version`` ready and make it live; returns the version it replaced."""
    previous = store.live_version()
    handle = store.at_version(version)
    try:
        mark(handle, "ready", published_at=time.time(), published_by=reason)
    finally:
        handle.close()
    store.publish_version(version)
    logger.info("index '%s': version %s is live (was %s)", store.name, version, previous)
    return previous


def rollback(store: VectorStore, target: str | None = None) -> tuple[str | None, str]:
    """Make ``target`` (default: the newest good version before the live one) live.

    Returns (previous live, new live). Raises ``VersionError`` when there is
    nothing to go back to or ``target`` is a draft.
    """
    versions = list_versions(store)
    live = store.live_version()
    names = [info.name for info in versions]
    if target is None:
        before = names[: names.index(live)] if live in names else names
        good = [info.name for info in versions if info.name in before and info.state == "ready"]
        if not good:
            raise VersionError(
                f"index '{store.name}' has no earlier good version to roll back to "
                f"(versions: {', '.join(names) or 'none'}); see `ragserve index list`"
            )
        target = good[-1]
    chosen = next((info for info in versions if info.name == target), None)
    if chosen is None:
        raise VersionError(
            f"index '{store.name}' has no version {target} (versions: {', '.join(names)}); "
            f"see `ragserve index list`"
        )
    if chosen.state == "draft":
        raise VersionError(f"version {target} of index '{store.name}' is unfinished; build again")
    publish(store, target, reason="rollback")
    return live, target


def prune(store: VectorStore, keep: int = DEFAULT_KEEP) -> list[str]:
    """Keep the live version and the ``keep - 1`` newest good ones before it; drop the rest."""
    if keep < 1:
        raise VersionError("prune --keep must be at least 1 (the live version)")
    versions = list_versions(store)
    live = store.live_version()
    if live is None:
        raise IndexNotFoundError(f"index '{store.name}' has no live version; nothing to prune")
    names = [info.name for info in versions]
    before = names[: names.index(live)] if live in names else []
    good_before = [info.name for info in versions if info.name in before and info.state == "ready"]
    kept = {live, *good_before[len(good_before) - (keep - 1) :]} if keep > 1 else {live}
    doomed = [name for name in names if name not in kept]
    for name in doomed:
        store.drop_version(name)
    return doomed


def last_score(store: VectorStore) -> float | None:
    """The live version's recorded gate score, if it had one."""
    live = store.live_version()
    if live is None:
        return None
    score = version_info(store, live, live).eval_score
    return None if score is None else float(score)


@contextmanager
def build_lock(data_dir: Path, collection: str) -> Iterator[None]:
    """One version build per index at a time; the second refuses with the holder's pid.

    An ``flock`` on ``<data_dir>/.locks/<collection>.lock``: the kernel drops
    it when the holder exits, ``kill -9`` included, so a stale lock cannot
    block the next run. (With a Qdrant server shared by several machines,
    also serialise refreshes outside: a CronJob with ``concurrencyPolicy: Forbid``.)
    """
    path = data_dir / ".locks" / f"{collection}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held across the yield
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot create the build lock {path}: {exc}; choose a writable --data-dir"
        ) from exc
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise IndexBusyError(
                f"another ingest or refresh of index '{collection}' is running ({holder}); "
                f"wait for it to finish, then run again"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        yield
    finally:
        handle.close()

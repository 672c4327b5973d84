"""Crash cycles: kill -9 an ingest at a random moment, again and again, and check the index.

Modelled on Qdrant's ``crasher``. Each cycle edits, adds and removes pages of a
small synthetic folder corpus, starts ``ragserve ingest`` in its own process
group, kills the whole group with SIGKILL at a random moment, then opens the
index through the public ``open_store`` / ``VectorStore`` API and checks:

* no duplicate point: ``count()`` equals the points of all pages;
* no phantom: no page holds chunks of two versions, or an incomplete version;
* every stored page is a version of the last completed run's corpus (a killed
  run whose version went live before the kill counts as completed) or of the
  interrupted run's corpus (nothing older, nothing invented), and no page that
  both of them hold is missing;
* unfinished index versions (drafts a kill left) do not pile up;
* processes the killed run started (Ray workers in other process groups) are
  counted, and killed by pid if they outlive it.

After the last cycle one ingest runs to completion and its pages (URL, version
hash, point and chunk counts) must equal a clean ingest of the final corpus.

    python bench/crash.py --cycles 20        # writes bench/results/crash.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO, write_result
from ragserve.config import IngestSettings, Settings
from ragserve.documents import Document
from ragserve.ingest.sources import iter_source
from ragserve.store import open_store
from ragserve.store.versions import list_versions

WORDS = [
    *["replica", "deployment", "autoscaling", "request", "batch", "actor", "cluster", "node"],
    *["queue", "latency", "throughput", "handle", "proxy", "route", "model", "version"],
    *["config", "resource", "gpu", "memory", "retry"],
]

Corpus = dict[str, str]  # URL -> content hash


@dataclass
class Cycle:
    cycle: int
    pages: int
    killed_after_s: float
    completed: bool
    #: The run's version went live before the kill landed (the switch is its last step).
    published: bool = False
    stored_pages: int = 0
    points: int = 0
    orphaned_drafts: int = 0
    leftover_processes: int = 0
    leftover_max_s: float = 0.0
    violations: list[str] = field(default_factory=list)


# --- the corpus -------------------------------------------------------------------------


def write_page(folder: Path, name: str, rng: random.Random) -> None:
    paragraphs = "".join(
        f"<p>{' '.join(rng.choice(WORDS) for _ in range(rng.randint(40, 90)))}.</p>"
        for _ in range(rng.randint(2, 5))
    )
    html = (
        f"<html><head><title>{name}</title></head><body><main><h1>{name} {rng.random():.6f}</h1>"
        f"<h2>Details</h2>{paragraphs}</main></body></html>"
    )
    (folder / f"{name}.html").write_text(html, encoding="utf-8")


def mutate(folder: Path, rng: random.Random, next_name: list[int]) -> None:
    """Edit one or two pages, add one, remove one (never below four pages)."""
    pages = sorted(folder.glob("*.html"))
    for page in rng.sample(pages, k=min(len(pages), rng.randint(1, 2))):
        write_page(folder, page.stem, rng)
    write_page(folder, f"page{next_name[0]}", rng)
    next_name[0] += 1
    pages = sorted(folder.glob("*.html"))
    if len(pages) > 4:
        rng.choice(pages).unlink()


def corpus_hashes(folder: Path) -> Corpus:
    """URL -> content hash of each page, as the ingest names and hashes them."""
    items = iter_source(str(folder), IngestSettings())
    return {item.url: item.content_hash for item in items if isinstance(item, Document)}


# --- running and killing -------------------------------------------------------------------


def ingest_command(folder: Path, data_dir: Path) -> list[str]:
    ragserve = Path(sys.executable).parent / "ragserve"
    return [str(ragserve), "ingest", str(folder), "--data-dir", str(data_dir)]


def child_env(marker: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env["RAGSERVE_CRASH_RUN"] = marker  # inherited by every process the run starts
    return env


def processes_of(marker: str) -> list[int]:
    """Pids of live processes (of this user) whose environment carries ``marker``."""
    needle = f"RAGSERVE_CRASH_RUN={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def run_and_kill(command: list[str], kill_after_s: float | None) -> tuple[bool, float, list[int]]:
    """Run; SIGKILL its process group after ``kill_after_s``. (completed, seconds, leftovers)."""
    marker = uuid.uuid4().hex
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        env=child_env(marker),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, killed as a whole
    )
    try:
        _, stderr = proc.communicate(timeout=kill_after_s)
        if proc.returncode != 0:
            raise RuntimeError(f"ingest failed ({proc.returncode}): {stderr.decode()[-2000:]}")
        completed = True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        completed = False
    elapsed = time.monotonic() - started
    return completed, elapsed, processes_of(marker)


def reap(pids: list[int], marker_wait_s: float = 10.0) -> float:
    """Wait for leftovers to exit on their own (up to a bound), then kill them by pid."""
    started = time.monotonic()
    alive = list(pids)
    while alive and time.monotonic() - started < marker_wait_s:
        time.sleep(0.25)
        alive = [pid for pid in alive if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    lived = time.monotonic() - started if pids else 0.0
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return lived


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


# --- checking -------------------------------------------------------------------------------


def index_state(data_dir: Path) -> tuple[dict[str, tuple[str, ...]], dict[str, Any], int, int]:
    """(URL -> sorted version hashes, URL -> counts, count(), orphaned drafts), via open_store."""
    settings = Settings.model_validate({"store": {"data_dir": data_dir}})
    store = open_store(settings.store)
    try:
        if not store.exists():
            return {}, {}, 0, 0
        states = store.page_states()
        hashes = {url: tuple(sorted(state.document_hashes)) for url, state in states.items()}
        counts = {
            url: {"points": state.points, "chunks": state.chunk_count, "complete": state.complete}
            for url, state in states.items()
        }
        # Unfinished builds a kill left behind; ready versions stay until `index prune`.
        live = store.live_version()
        drafts = [v for v in list_versions(store) if v.state == "draft" and v.name != live]
        return hashes, counts, store.count(), len(drafts)
    finally:
        store.close()


def check(
    data_dir: Path, last_completed: Corpus, interrupted: Corpus, cycle: Cycle, max_versions: int
) -> None:
    hashes, counts, total, versions = index_state(data_dir)
    cycle.stored_pages, cycle.points, cycle.orphaned_drafts = len(hashes), total, versions
    found = cycle.violations
    page_points = sum(entry["points"] for entry in counts.values())
    if page_points != total:
        found.append(f"duplicate or stray points: count() {total} != pages' points {page_points}")
    for url, versions_of_page in hashes.items():
        if len(versions_of_page) > 1:
            found.append(f"phantom: {url} holds {len(versions_of_page)} versions")
        elif not counts[url]["complete"]:
            found.append(f"incomplete: {url} {counts[url]}")
        allowed = {last_completed.get(url), interrupted.get(url)} - {None}
        if not set(versions_of_page) <= allowed:
            found.append(f"unknown version of {url}: {versions_of_page} not in {sorted(allowed)}")
    for url in set(last_completed) & set(interrupted):
        if url not in hashes:
            found.append(f"missing: {url} is in both the last completed and the new corpus")
    if versions > max_versions:
        found.append(f"{versions} unfinished index versions on disk (over {max_versions})")


def live_version(data_dir: Path) -> str | None:
    settings = Settings.model_validate({"store": {"data_dir": data_dir}})
    store = open_store(settings.store)
    try:
        return store.live_version() if store.exists() else None
    finally:
        store.close()


# --- the run ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--pages", type=int, default=6, help="pages in the starting corpus")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--max-kill-s", type=float, default=0.0, help="0: measured full run")
    parser.add_argument("--max-drafts", type=int, default=1, help="a kill leaves at most one")
    parser.add_argument("--work", type=Path, default=REPO / "tmp" / "crash")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    folder, data_dir = args.work / "site", args.work / "index"
    folder.mkdir(parents=True)
    for n in range(args.pages):
        write_page(folder, f"page{n}", rng)
    next_name = [args.pages]

    # One complete run first: the baseline state and the length of a full run.
    completed, full_s, leftovers = run_and_kill(ingest_command(folder, data_dir), None)
    reap(leftovers)
    last_completed = corpus_hashes(folder)
    max_kill_s = args.max_kill_s or full_s * 1.1
    print(f"baseline ingest {full_s:.1f} s; kills drawn from 0.5..{max_kill_s:.1f} s", flush=True)

    cycles: list[Cycle] = []
    for number in range(1, args.cycles + 1):
        mutate(folder, rng, next_name)
        interrupted = corpus_hashes(folder)
        kill_after = rng.uniform(0.5, max_kill_s)
        live_before = live_version(data_dir)
        completed, elapsed, leftovers = run_and_kill(ingest_command(folder, data_dir), kill_after)
        cycle = Cycle(number, len(interrupted), round(elapsed, 2), completed)
        cycle.published = not completed and live_version(data_dir) != live_before
        cycle.leftover_processes = len(leftovers)
        cycle.leftover_max_s = round(reap(leftovers), 2)
        check(data_dir, last_completed, interrupted, cycle, args.max_drafts)
        if completed or cycle.published:
            last_completed = interrupted
        cycles.append(cycle)
        print(json.dumps(asdict(cycle)), flush=True)

    # Resume to completion, then compare with a clean ingest of the final corpus.
    _, resume_s, leftovers = run_and_kill(ingest_command(folder, data_dir), None)
    reap(leftovers)
    final = Cycle(0, len(last_completed), 0.0, True)
    final_corpus = corpus_hashes(folder)
    check(data_dir, final_corpus, final_corpus, final, args.max_drafts)
    clean_dir = args.work / "clean"
    _, clean_s, leftovers = run_and_kill(ingest_command(folder, clean_dir), None)
    reap(leftovers)
    resumed_state = index_state(data_dir)
    clean_state = index_state(clean_dir)
    same = resumed_state[:3] == clean_state[:3]
    if not same:
        final.violations.append("final index differs from a clean ingest of the final corpus")
    if set(resumed_state[0]) != set(final_corpus):
        final.violations.append("final index does not hold exactly the final corpus's pages")

    violations = sum(len(c.violations) for c in cycles) + len(final.violations)
    result = {
        "command": "python bench/crash.py " + " ".join(sys.argv[1:]),
        "cycles": len(cycles),
        "killed": sum(not c.completed for c in cycles),
        "completed_before_kill": sum(c.completed for c in cycles),
        "killed_after_publish": sum(c.published for c in cycles),
        "violations": violations,
        "final_equals_clean_ingest": same,
        "final_pages": len(final_corpus),
        "final_points": resumed_state[2],
        "max_orphaned_drafts": max([c.orphaned_drafts for c in cycles] + [final.orphaned_drafts]),
        "cycles_with_leftover_processes": sum(c.leftover_processes > 0 for c in cycles),
        "leftover_processes_max": max((c.leftover_processes for c in cycles), default=0),
        "leftover_lifetime_max_s": max((c.leftover_max_s for c in cycles), default=0.0),
        "baseline_ingest_s": round(full_s, 1),
        "resume_s": round(resume_s, 1),
        "clean_ingest_s": round(clean_s, 1),
        "per_cycle": [asdict(c) for c in cycles],
        "final": asdict(final),
    }
    path = write_result("crash", result)
    print(f"{len(cycles)} cycles, {violations} violations, final == clean: {same} -> {path}")


if __name__ == "__main__":
    main()

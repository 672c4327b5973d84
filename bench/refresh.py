"""Refresh cost: a full ingest against refreshes with 0%, 1% and 10% of pages changed.

Same run, same process, same corpus: a full ingest builds v1; then three
refreshes of the folder (nothing changed; 1% of pages edited; 10% edited),
each building a version seeded from the live one. Reports seconds and points
written per run, the time to seed a version (copy of the live one) and the
disk each version takes.

    python bench/refresh.py --corpus sample      # 43 pages
    python bench/refresh.py --corpus ray-docs    # 2,853 pages (../shared/corpora)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, unpack, write_result
from ragserve.config import load_settings
from ragserve.ingest.pipeline import run_ingest
from ragserve.store.edge import EdgeStore


def edit_pages(root: Path, fraction: float, tag: str) -> int:
    """Put a new sentence at the top of the first ``fraction`` of pages (sorted)."""
    pages = sorted(root.rglob("*.html"))
    count = max(1, round(len(pages) * fraction))
    for page in pages[:count]:
        html = page.read_text(encoding="utf-8", errors="replace")
        edited = re.sub(r"(<h1[^>]*>)", rf"\1{tag} ", html, count=1)
        page.write_text(edited if edited != html else f"<p>{tag}</p>{html}", encoding="utf-8")
    return count


def disk_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return round(int(out.stdout.split()[0]) / 1024, 1)


def run(corpus: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
    source = work / "site"
    shutil.copytree(unpack(corpus, work / "corpora"), source)
    settings = load_settings(None, **{"store.data_dir": work / "index", "embed.device": "cpu"})
    runs: dict[str, Any] = {}

    def timed(name: str) -> None:
        started = time.perf_counter()
        summary = run_ingest(str(source), settings)
        runs[name] = {
            "seconds": round(time.perf_counter() - started, 2),
            "points_written": summary.points_written,
            "points_deleted": summary.points_deleted,
            "pages_written": summary.pages_written,
            "version": summary.version,
            "published": summary.published,
            "unchanged": summary.unchanged,
            "stage_seconds": summary.stage_seconds,
        }
        print(name, runs[name], flush=True)

    timed("full_ingest")
    timed("refresh_unchanged")
    runs["pages_changed_1pct"] = edit_pages(source, 0.01, "Refreshed one percent.")
    timed("refresh_1pct_changed")
    runs["pages_changed_10pct"] = edit_pages(source, 0.10, "Refreshed ten percent.")
    timed("refresh_10pct_changed")

    store = EdgeStore(settings.store.data_dir, settings.store.collection)
    live_dir = store.at_version(str(store.live_version())).path
    started = time.perf_counter()
    staged = store.stage_version()
    seed_s = time.perf_counter() - started
    store.drop_version(str(staged.version))
    full = runs["full_ingest"]["seconds"]
    result = {
        "corpus": corpus,
        "pages": len(list(source.rglob("*.html"))),
        "runs": runs,
        "seed_version_seconds": round(seed_s, 3),
        "disk_per_version_mb": disk_mb(live_dir),
        "unchanged_vs_full": round(runs["refresh_unchanged"]["seconds"] / full, 4),
        "changed_1pct_vs_full": round(runs["refresh_1pct_changed"]["seconds"] / full, 4),
        "changed_10pct_vs_full": round(runs["refresh_10pct_changed"]["seconds"] / full, 4),
        "machine": machine(),
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default="sample", choices=["sample", "ray-docs"])
    args = parser.parse_args()
    result = run(args.corpus)
    path = write_result(f"refresh-{args.corpus}", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

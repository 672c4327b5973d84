"""Check that every reference URL of a question set exists in a docs folder.

    .venv/bin/python scripts/check_eval_sources.py eval/celery.jsonl \
        tmp/debian-docs/celery https://docs.celeryq.dev/en/v5.2.6/

A question set is only as good as its references: a ``source`` naming a page
that the folder does not hold, or an ``#anchor`` that is not an ``id`` (or
``<a name>``) in that page, scores as a miss for every retriever and hides
real regressions. The page URL is derived exactly as ``ragserve ingest FOLDER
--base-url BASE`` names folder files (``dir/index.html`` as ``dir/``), so a
passing check means the reference is reachable in the index. Prints one line
per problem and exits 1 if there is any; otherwise prints how the questions
spread over pages (a set that piles up on a few pages measures little).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

from ragserve.ingest.sources import folder_file_url

_ID = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")


def page_ids(path: Path) -> set[str]:
    """Every fragment a browser can scroll to in ``path``."""
    return set(_ID.findall(path.read_text(errors="replace")))


def check(questions: Path, folder: Path, base_url: str) -> list[str]:
    """Problems with ``questions``' references, one readable line each."""
    pages = {
        folder_file_url(folder, path, base_url, "html"): path for path in folder.rglob("*.html")
    }
    ids: dict[Path, set[str]] = {}
    problems: list[str] = []
    for number, line in enumerate(questions.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        for key in ("question", "source", "answer"):
            if not str(record.get(key, "")).strip():
                problems.append(f"line {number}: empty or missing {key!r}")
        page, _, anchor = str(record.get("source", "")).partition("#")
        path = pages.get(page)
        if path is None:
            problems.append(f"line {number}: page {page} is not in {folder}")
        elif anchor and anchor not in ids.setdefault(path, page_ids(path)):
            problems.append(f"line {number}: #{anchor} is not an anchor of {page}")
    return problems


def spread(questions: Path) -> str:
    """How many questions and pages, and the most-asked pages."""
    pages = collections.Counter(
        json.loads(line)["source"].partition("#")[0]
        for line in questions.read_text().splitlines()
        if line.strip()
    )
    top = ", ".join(f"{url.rsplit('/', 1)[-1] or url} ({n})" for url, n in pages.most_common(3))
    return f"{sum(pages.values())} questions over {len(pages)} pages; most asked: {top}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path, help="question set (JSONL)")
    parser.add_argument("folder", type=Path, help="extracted docs folder")
    parser.add_argument("base_url", help="the --base-url the folder is indexed under")
    args = parser.parse_args()
    problems = check(args.questions, args.folder, args.base_url)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"ok: {spread(args.questions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

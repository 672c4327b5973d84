"""eval/*.jsonl (held-out sites) and scripts/check_eval_sources.py.

The question files must load with the evaluator's own reader and point every
reference at the site's public base URL; the checker must catch a reference
to a missing page or anchor (a folder built in the test stands in for the
Debian package, which needs apt to fetch).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from ragserve.eval.metrics import load_questions

ROOT = Path(__file__).resolve().parents[2]
SETS = {
    "celery.jsonl": "https://docs.celeryq.dev/en/v5.2.6/",
    "git.jsonl": "https://mirrors.edge.kernel.org/pub/software/scm/git/docs/",
}


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    path = ROOT / "scripts" / "check_eval_sources.py"
    spec = importlib.util.spec_from_file_location("check_eval_sources", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "base"), sorted(SETS.items()))
def test_question_set_is_complete_and_spread(name: str, base: str) -> None:
    questions = load_questions(ROOT / "eval" / name)
    assert len(questions) >= 40
    assert all(q.source.startswith(base) and q.answer for q in questions)
    assert len({q.question.lower() for q in questions}) == len(questions)
    pages = [q.source.partition("#")[0] for q in questions]
    assert len(set(pages)) >= 25
    assert max(pages.count(page) for page in set(pages)) <= 10


def _site(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    (folder / "guide").mkdir(parents=True)
    (folder / "guide" / "index.html").write_text('<h1 id="top">Guide</h1>')
    (folder / "faq.html").write_text('<h2><a name="retry"></a>Retry</h2>')
    return folder


def _questions(tmp_path: Path, *sources: str) -> Path:
    path = tmp_path / "q.jsonl"
    lines = [
        json.dumps({"question": f"q{n}", "source": s, "answer": "a"}) for n, s in enumerate(sources)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_checker_accepts_pages_and_anchors_as_ingest_names_them(
    checker: ModuleType, tmp_path: Path
) -> None:
    base = "https://docs.example.com/v1/"
    questions = _questions(
        tmp_path, f"{base}guide/#top", f"{base}faq.html#retry", f"{base}faq.html"
    )
    assert checker.check(questions, _site(tmp_path), base) == []


def test_checker_reports_missing_page_and_anchor(checker: ModuleType, tmp_path: Path) -> None:
    base = "https://docs.example.com/v1/"
    questions = _questions(tmp_path, f"{base}guide/index.html", f"{base}faq.html#nope")
    problems = checker.check(questions, _site(tmp_path), base)
    assert problems == [
        f"line 1: page {base}guide/index.html is not in {tmp_path / 'site'}",
        f"line 2: #nope is not an anchor of {base}faq.html",
    ]

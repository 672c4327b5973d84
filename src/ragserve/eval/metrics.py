"""Measure how well ragserve finds (and answers from) the right documentation.

The headline number is the *retrieval score* of Anyscale's RAG guide
(``ray-project/llm-applications``, ``rag/evaluate.py``): the share of questions
whose reference page (URL without ``#anchor``) is the page of at least one of
the top-k retrieved chunks, a question with an empty reference counting as a
hit. Keeping that definition exactly lets our numbers sit next to the guide's
published ones. Around it we report what the guide does not: a section-level
score (the anchor must match too), recall@k and MRR over questions that have a
reference, per-stage latency percentiles, and the questions no retriever could
answer because their page is not in the index.

Everything is computed from one ranking per question, so ``retrieve`` is called
exactly once per question, with the deepest k any metric needs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragserve.errors import ConfigError
from ragserve.eval.answers import summarize_answers
from ragserve.eval.statistics import bootstrap_interval, latency_summary, sign_test_p

logger = logging.getLogger(__name__)

#: Timing key added by ``evaluate_retrieval`` when the retriever reports no total:
#: the wall time of the whole ``retrieve`` call as the evaluator saw it.
TOTAL_TIMING = "total"


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    """One line of a question file."""

    question: str
    source: str
    answer: str | None = None


@dataclass(frozen=True, slots=True)
class Retrieved:
    """What a retrieval call returns for one question, best chunk first."""

    urls: list[str]
    timings: dict[str, float]


@dataclass(slots=True)
class EvalResult:
    """Per-question records plus the settings needed to aggregate them.

    Aggregates are recomputed from ``records`` on demand, so records that gain
    answers later (``record["answers"][generator]``, see ``eval.answers``) stay
    consistent with the summary.
    """

    records: list[dict[str, Any]]
    k: int
    ks: tuple[int, ...]
    depth: int
    source_prefix: dict[str, str] = field(default_factory=dict)
    unreachable_checked: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    #: Set by ``compare_with_baseline``: this run against an earlier one.
    vs_baseline: dict[str, Any] | None = None
    #: Set when answers were generated: generators, judge, similarity model, start errors.
    answer_meta: dict[str, Any] = field(default_factory=dict)

    def hit_rate_at(self, k: int, *, section: bool = False) -> float:
        """Retrieval score (guide definition) at any ``k`` up to ``depth``."""
        rank_key = "section_rank" if section else "rank"
        hits = [
            not record["reference_page"] or _within(record[rank_key], k) for record in self.records
        ]
        return _mean_or_zero(hits)

    def unreachable(self) -> list[dict[str, str]]:
        return [
            {"question": record["question"], "source": record["source"]}
            for record in self.records
            if record["unreachable"]
        ]

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable aggregates; see the module docstring for definitions."""
        with_source = [record for record in self.records if record["reference_page"]]
        reachable = [record for record in self.records if not record["unreachable"]]
        unreachable = self.unreachable()
        summary: dict[str, Any] = {
            "n_questions": len(self.records),
            "n_with_source": len(with_source),
            "k": self.k,
            "depth": self.depth,
            "retrieval_score": _mean_or_zero([record["hit"] for record in self.records]),
            "retrieval_score_ci95": bootstrap_interval([record["hit"] for record in self.records]),
            "section_score": _mean_or_zero([record["section_hit"] for record in self.records]),
            "retrieval_score_reachable": _mean_or_none([record["hit"] for record in reachable]),
            "recall_at": {
                str(k): _mean_or_none([_within(record["rank"], k) for record in with_source])
                for k in self.ks
            },
            "mrr": _mean_or_none(
                [1.0 / record["rank"] if record["rank"] else 0.0 for record in with_source]
            ),
            "latency": latency_summary(record["timings"] for record in self.records),
            "unreachable": (
                {"count": len(unreachable), "questions": unreachable}
                if self.unreachable_checked
                else None
            ),
            "meta": dict(self.meta),
            "vs_baseline": self.vs_baseline,
        }
        answers = summarize_answers(self.records, self.answer_meta)
        if answers is not None:
            summary["answers"] = answers
        return summary


def load_questions(path: Path) -> list[EvalQuestion]:
    """Read a JSONL question file, failing with the line that is wrong.

    Every line needs ``question`` and ``source`` (use ``""`` for a question
    without a reference page: it then counts as a hit, as in the guide). A
    missing ``source`` key is an error rather than a silent hit, because a typo
    such as ``"sources"`` would otherwise inflate the score to 100%.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise ConfigError(f"question file {path} does not exist; pass an existing .jsonl") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"question file {path} could not be read: {exc}") from exc
    questions = [
        _parse_question_line(line, path, line_number)
        for line_number, line in enumerate(lines, start=1)
        if line.strip()
    ]
    if not questions:
        raise ConfigError(
            f"question file {path} holds no questions; write one JSON object a line, "
            'e.g. {"question": "...", "source": "https://.../page.html#anchor"}'
        )
    return questions


def _parse_question_line(line: str, path: Path, line_number: int) -> EvalQuestion:
    where = f"{path}:{line_number}"
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc.msg}); fix or remove the line") from exc
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a JSON object with 'question' and 'source'")
    question = item.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ConfigError(f"{where}: 'question' is missing or empty; every line needs one")
    source = item.get("source")
    if not isinstance(source, str):
        raise ConfigError(
            f"{where}: 'source' is missing or not a string; give the reference page URL, "
            'or "" for a question without one'
        )
    answer = item.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise ConfigError(f"{where}: 'answer' must be a string when present")
    return EvalQuestion(question=question, source=source.strip(), answer=answer)


def normalize_url(url: str, source_prefix: Mapping[str, str] | None = None) -> str:
    """Bring reference and retrieved URLs into one comparable form.

    The longest matching prefix in ``source_prefix`` is rewritten (so an index
    built from a local mirror, ``http://127.0.0.1:8000/``, can be scored
    against ``https://docs.ray.io/en/master/`` references, or both can be
    mapped to ``""``), and a trailing slash or ``/index.html`` on the page is
    dropped: ``serve/`` and ``serve/index.html`` are the same page, and the
    crawler indexes the former. The anchor is kept; an empty anchor
    (``page#``) is dropped.
    """
    page, _, anchor = url.strip().partition("#")
    if source_prefix:
        for prefix in sorted(source_prefix, key=len, reverse=True):
            if prefix and page.startswith(prefix):
                page = source_prefix[prefix] + page[len(prefix) :]
                break
    page = page.removesuffix("/index.html").rstrip("/")
    return f"{page}#{anchor}" if anchor else page


def page_of(url: str) -> str:
    """The page a section URL belongs to: everything before ``#``."""
    return url.partition("#")[0]


def evaluate_retrieval(
    questions: Sequence[EvalQuestion],
    retrieve: Callable[[str, int], Retrieved],
    *,
    k: int = 5,
    ks: Sequence[int] = (1, 3, 5, 10),
    source_prefix: Mapping[str, str] | None = None,
    indexed_pages: set[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Score a retriever on ``questions``, calling ``retrieve`` once per question.

    ``retrieve(question, depth)`` must return up to ``depth = max(k, *ks)``
    section URLs in rank order. ``indexed_pages`` (page URLs in the index, in
    either form: they are normalised here) lets questions whose page was never
    indexed be reported as unreachable; they still count in the headline score,
    as in the guide, and ``retrieval_score_reachable`` leaves them out.
    Exceptions from ``retrieve`` propagate: a failing index fails the run.
    """
    if not questions:
        raise ConfigError("no questions to evaluate; check the question file")
    if k < 1 or any(value < 1 for value in ks):
        raise ConfigError(f"k and every value of ks must be at least 1 (got k={k}, ks={ks})")
    prefix = dict(source_prefix or {})
    depth = max(k, *ks)
    indexed = None
    if indexed_pages is not None:
        indexed = {page_of(normalize_url(page, prefix)) for page in indexed_pages}
    records = []
    for done, question in enumerate(questions, start=1):
        started = time.perf_counter()
        retrieved = retrieve(question.question, depth)
        elapsed = time.perf_counter() - started
        timings = {name: float(seconds) for name, seconds in retrieved.timings.items()}
        timings.setdefault(TOTAL_TIMING, elapsed)
        records.append(
            _score_question(question, retrieved.urls[:depth], timings, k, prefix, indexed)
        )
        if progress is not None:
            progress(done, len(questions))
    result = EvalResult(
        records=records,
        k=k,
        ks=tuple(sorted(set(ks))),
        depth=depth,
        source_prefix=prefix,
        unreachable_checked=indexed is not None,
        meta=dict(meta or {}),
    )
    logger.info(
        "retrieval score@%d = %.3f over %d questions", k, result.hit_rate_at(k), len(records)
    )
    return result


def _score_question(
    question: EvalQuestion,
    urls: list[str],
    timings: dict[str, float],
    k: int,
    source_prefix: Mapping[str, str],
    indexed: set[str] | None,
) -> dict[str, Any]:
    reference = normalize_url(question.source, source_prefix) if question.source else ""
    reference_page = page_of(reference)
    normalized = [normalize_url(url, source_prefix) for url in urls]
    rank = section_rank = None
    if reference_page:
        rank = _first_rank(normalized, lambda url: page_of(url) == reference_page)
        # A reference without an anchor names a whole page: any section of it matches.
        section_target = reference if reference != reference_page else None
        section_rank = (
            _first_rank(normalized, lambda url: url == section_target) if section_target else rank
        )
    record: dict[str, Any] = {
        "question": question.question,
        "source": question.source,
        "reference_page": reference_page,
        "hit": not reference_page or _within(rank, k),
        "section_hit": not reference_page or _within(section_rank, k),
        "rank": rank,
        "section_rank": section_rank,
        "unreachable": bool(
            reference_page and indexed is not None and reference_page not in indexed
        ),
        "retrieved": list(urls),
        "timings": timings,
    }
    if question.answer is not None:
        record["answer"] = question.answer
    return record


def _first_rank(urls: Sequence[str], matches: Callable[[str], bool]) -> int | None:
    return next((rank for rank, url in enumerate(urls, start=1) if matches(url)), None)


def _within(rank: int | None, k: int) -> bool:
    return rank is not None and rank <= k


def _mean_or_zero(values: Sequence[bool | float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _mean_or_none(values: Sequence[bool | float]) -> float | None:
    return sum(values) / len(values) if values else None


def compare_with_baseline(
    result: EvalResult, baseline: Sequence[Mapping[str, Any]], *, name: str = ""
) -> dict[str, Any]:
    """Question-by-question comparison with an earlier run on the same questions.

    A score that moved by a point or two on ~100 questions is usually noise;
    the questions gained and lost, and the sign test on them, say whether it is.
    Questions present in only one run are counted, not compared.
    """
    before = {str(r["question"]): bool(r["hit"]) for r in baseline}
    gained: list[str] = []
    lost: list[str] = []
    compared = 0
    for record in result.records:
        question = record["question"]
        if question not in before:
            continue
        compared += 1
        if record["hit"] and not before[question]:
            gained.append(question)
        elif before[question] and not record["hit"]:
            lost.append(question)
    comparison = {
        "baseline": name,
        "compared": compared,
        "only_here": len(result.records) - compared,
        "baseline_score": _mean_or_zero(
            [before[r["question"]] for r in result.records if r["question"] in before]
        ),
        "gained": len(gained),
        "lost": len(lost),
        "sign_test_p": sign_test_p(len(gained), len(lost)),
        "gained_questions": gained,
        "lost_questions": lost,
    }
    result.vs_baseline = comparison
    return comparison

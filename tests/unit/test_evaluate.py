"""Retrieval metrics on a hand-scored fixture, question-file errors, answer checks.

``tests/fixtures/eval/tiny-questions.jsonl`` holds 7 questions and
``tiny-rankings.jsonl`` the ranking a retriever returned for each (served from a
local mirror at http://127.0.0.1:8765/, while references use docs.ray.io).
Scored by hand at k=5, page level, ranks within the top 10:

    q1 serve/index#key-concepts   page rank 1, section rank 1
    q2 data/loading-data#reading  page rank 2 (other anchor), section rank 6
    q3 empty source               hit by definition
    q4 cluster/kubernetes/        page rank 4 (trailing slashes, no anchor: page match)
    q5 train/train                never retrieved
    q6 ray-core/tasks             page rank 7 (11 urls returned, only 10 count)
    q7 ray-core/new-page          never retrieved, and not in the index at all
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ragserve.errors import ConfigError
from ragserve.eval.grading import judge_prompt, lexical_overlap, parse_judge_score
from ragserve.eval.metrics import (
    EvalQuestion,
    EvalResult,
    Retrieved,
    compare_with_baseline,
    evaluate_retrieval,
    load_questions,
    normalize_url,
    page_of,
)
from ragserve.eval.report import load_result_records, write_results
from ragserve.eval.statistics import bootstrap_interval, sign_test_p

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent.parent / "fixtures" / "eval"
MIRROR = "http://127.0.0.1:8765/"
PREFIX = {"https://docs.ray.io/en/master/": "", MIRROR: ""}


class FixtureRetriever:
    """Replays recorded rankings and remembers how it was called."""

    def __init__(self) -> None:
        lines = (FIXTURES / "tiny-rankings.jsonl").read_text().splitlines()
        self.rankings = {item["question"]: item for item in map(json.loads, lines)}
        self.calls: list[tuple[str, int]] = []

    def __call__(self, question: str, depth: int) -> Retrieved:
        self.calls.append((question, depth))
        item = self.rankings[question]
        return Retrieved(urls=list(item["urls"]), timings=dict(item["timings"]))

    def indexed_pages(self) -> set[str]:
        pages = {page_of(url) for item in self.rankings.values() for url in item["urls"]}
        return pages | {MIRROR + "train/train.html"}


def run_tiny(**kwargs: object) -> tuple[EvalResult, FixtureRetriever]:
    retriever = FixtureRetriever()
    questions = load_questions(FIXTURES / "tiny-questions.jsonl")
    result = evaluate_retrieval(
        questions,
        retriever,
        k=5,
        source_prefix=PREFIX,
        indexed_pages=retriever.indexed_pages(),
        **kwargs,  # type: ignore[arg-type]
    )
    return result, retriever


def test_hand_scored_fixture_gives_exact_metrics() -> None:
    summary = run_tiny()[0].summary()

    assert summary["n_questions"] == 7
    assert summary["n_with_source"] == 6
    assert summary["retrieval_score"] == pytest.approx(4 / 7)
    assert summary["section_score"] == pytest.approx(3 / 7)
    assert summary["recall_at"] == pytest.approx({"1": 1 / 6, "3": 2 / 6, "5": 3 / 6, "10": 4 / 6})
    assert summary["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 7) / 6)
    assert summary["retrieval_score_reachable"] == pytest.approx(4 / 6)


def test_page_missing_from_index_is_reported_unreachable_but_still_a_miss() -> None:
    result, _ = run_tiny()
    unreachable = result.summary()["unreachable"]

    assert unreachable["count"] == 1
    assert unreachable["questions"][0]["source"].endswith("ray-core/new-page.html")
    assert result.records[6]["hit"] is False


def test_per_question_records_carry_ranks_and_hits() -> None:
    records = run_tiny()[0].records

    assert [r["rank"] for r in records] == [1, 2, None, 4, None, 7, None]
    assert [r["section_rank"] for r in records] == [1, 6, None, 4, None, 7, None]
    assert [r["hit"] for r in records] == [True, True, True, True, False, False, False]
    assert [r["section_hit"] for r in records] == [True, False, True, True, False, False, False]
    assert len(records[5]["retrieved"]) == 10
    assert records[1]["answer"].startswith("Use ray.data")


def test_retriever_is_called_once_per_question_at_the_deepest_k() -> None:
    _, retriever = run_tiny()

    assert len(retriever.calls) == 7
    assert {depth for _, depth in retriever.calls} == {10}


def test_score_matches_the_guide_without_any_prefix_rewrite() -> None:
    questions = [
        EvalQuestion("a", "https://docs.ray.io/en/master/serve/index.html#x"),
        EvalQuestion("b", "https://docs.ray.io/en/master/data/api.html"),
        EvalQuestion("c", ""),
    ]
    ranked = {
        "a": ["https://docs.ray.io/en/master/serve/index.html#other"],
        "b": ["https://docs.ray.io/en/master/data/overview.html"],
        "c": [],
    }

    result = evaluate_retrieval(questions, lambda q, n: Retrieved(ranked[q], {}), k=1, ks=(1,))

    assert result.summary()["retrieval_score"] == pytest.approx(2 / 3)
    assert result.summary()["unreachable"] is None


def test_latency_percentiles_per_stage() -> None:
    latency = run_tiny()[0].summary()["latency"]

    assert latency["embed"] == pytest.approx(
        {"n": 7, "mean": 0.04, "p50": 0.04, "p95": 0.067, "p99": 0.0694}
    )
    assert latency["retrieve"]["p50"] == pytest.approx(0.08)
    assert latency["total"]["n"] == 7  # measured by the evaluator when not reported


def test_progress_reports_every_question() -> None:
    seen: list[tuple[int, int]] = []
    run_tiny(progress=lambda done, total: seen.append((done, total)))

    assert seen == [(n, 7) for n in range(1, 8)]


def test_summary_is_json_and_carries_meta() -> None:
    result, _ = run_tiny(meta={"mode": "hybrid", "chunk_size": 512})
    summary = json.loads(json.dumps(result.summary()))

    assert summary["meta"] == {"mode": "hybrid", "chunk_size": 512}
    assert summary["k"] == 5


def test_write_results_creates_report_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plots are test_report's job. Block the submodule too: once an earlier test has
    # imported matplotlib.figure, blocking only the package breaks matplotlib mid-plot.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result, _ = run_tiny()

    paths = write_results(result, tmp_path / "out")

    lines = paths["results"].read_text().splitlines()
    assert len(lines) == 7
    assert json.loads(lines[0])["hit"] is True
    assert json.loads(paths["summary"].read_text())["retrieval_score"] == pytest.approx(4 / 7)
    assert paths["report"].read_text().startswith("<!doctype html>")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://docs.ray.io/en/master/serve/", "serve"),
        ("https://docs.ray.io/en/master/serve/index.html#key", "serve#key"),
        ("http://127.0.0.1:8765/serve/#key", "serve#key"),
        ("https://docs.ray.io/en/master/serve/index.html#", "serve"),
        ("https://example.com/other/page/", "https://example.com/other/page"),
    ],
)
def test_normalize_url_rewrites_prefix_strips_slash_and_index(url: str, expected: str) -> None:
    assert normalize_url(url, PREFIX) == expected


def test_normalize_url_prefers_the_longest_prefix() -> None:
    prefix = {"https://docs.ray.io/": "root/", "https://docs.ray.io/en/master/": "/local/"}

    assert normalize_url("https://docs.ray.io/en/master/a.html", prefix) == "/local/a.html"


def test_bad_json_line_is_reported_with_its_line_number() -> None:
    with pytest.raises(ConfigError, match=r"bad-json\.jsonl:2: not valid JSON"):
        load_questions(FIXTURES / "bad-json.jsonl")


def test_missing_question_is_reported_with_its_line_number() -> None:
    with pytest.raises(ConfigError, match=r"missing-question\.jsonl:3: 'question' is missing"):
        load_questions(FIXTURES / "missing-question.jsonl")


def test_missing_source_key_is_an_error_not_a_free_hit(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "q", "sources": "https://x/a.html"}\n')

    with pytest.raises(ConfigError, match=r"q\.jsonl:1: 'source' is missing"):
        load_questions(path)


def test_empty_question_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")

    with pytest.raises(ConfigError, match="holds no questions"):
        load_questions(path)


def test_missing_question_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_questions(tmp_path / "nope.jsonl")


def test_dev_set_loads() -> None:
    # ../shared beside the checkout, as in CI.
    dev = Path(__file__).resolve().parents[3] / "shared" / "eval" / "ray-docs-dev.jsonl"
    if not dev.exists():
        pytest.skip("shared dev set not present")

    assert len(load_questions(dev)) == 109


def test_lexical_overlap_is_squad_token_f1() -> None:
    assert lexical_overlap("The cat sat.", "a cat sat") == 1.0
    assert lexical_overlap("use ray serve", "ray serve deployments") == pytest.approx(2 / 3)
    assert lexical_overlap("yes", "no") == 0.0
    assert lexical_overlap("", "") == 1.0


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"score": 4, "reasoning": "close"}', 4),
        ("Score: 5\nThe answer is right.", 5),
        ("3\nPartly correct", 3),
        ('{"score": 7}', None),
        ('{"score": 3.5}', None),
        ("I cannot grade this.", None),
    ],
)
def test_parse_judge_score(reply: str, score: int | None) -> None:
    assert parse_judge_score(reply) == score


def test_judge_prompt_holds_all_three_texts() -> None:
    prompt = judge_prompt("How to scale?", "Use autoscaling.", "Set num_replicas.")

    assert "How to scale?" in prompt
    assert "Use autoscaling." in prompt
    assert "Set num_replicas." in prompt
    assert '"score"' in prompt


def test_bootstrap_interval_brackets_the_score_and_is_reproducible() -> None:
    hits = [True] * 70 + [False] * 30
    low, high = bootstrap_interval(hits) or (0.0, 0.0)
    assert low < 0.70 < high
    # Binomial standard error at p=0.7, n=100 is 0.046: the 95% interval is about ±0.09.
    assert 0.06 < 0.70 - low < 0.12
    assert 0.06 < high - 0.70 < 0.12
    assert bootstrap_interval(hits) == [low, high]
    assert bootstrap_interval([True] * 5) == [1.0, 1.0]
    assert bootstrap_interval([]) is None


def test_sign_test_p_is_exact_and_two_sided() -> None:
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(3, 3) == 1.0
    # 2 of 14 disagreements one way: P(X <= 2 | n=14, p=1/2), doubled.
    assert sign_test_p(2, 12) == pytest.approx(2 * (1 + 14 + 91) / 2**14)
    assert sign_test_p(12, 2) == sign_test_p(2, 12)


def test_compare_with_baseline_counts_questions_gained_and_lost(tmp_path: Path) -> None:
    result, _ = run_tiny()
    out = write_results(result, tmp_path / "before")
    baseline = load_result_records(out["results"].parent)  # the --out folder works too
    # Flip two answers of the earlier run: one hit becomes a miss, one miss a hit.
    hit_index = next(i for i, r in enumerate(baseline) if r["hit"])
    miss_index = next(i for i, r in enumerate(baseline) if not r["hit"])
    baseline[hit_index]["hit"], baseline[miss_index]["hit"] = False, True
    baseline.append({"question": "only in the baseline", "hit": True})

    comparison = compare_with_baseline(result, baseline, name="before")

    assert comparison["compared"] == 7
    assert comparison["only_here"] == 0
    assert (comparison["gained"], comparison["lost"]) == (1, 1)
    assert comparison["gained_questions"] == [result.records[hit_index]["question"]]
    assert comparison["lost_questions"] == [result.records[miss_index]["question"]]
    assert comparison["sign_test_p"] == 1.0
    assert comparison["baseline_score"] == pytest.approx(4 / 7)
    assert result.summary()["vs_baseline"] == comparison


def test_baseline_that_is_not_eval_results_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ConfigError, match="earlier `ragserve eval`"):
        load_result_records(missing)
    other = tmp_path / "other.jsonl"
    other.write_text('{"question": "q"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="does not hold"):
        load_result_records(other)

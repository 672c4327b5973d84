"""Answer grading per generator, on tiny fixtures scored by hand.

Token F1 follows SQuAD: lower case, punctuation (``_`` too) and articles
removed, so ``num_replicas`` is the one token ``numreplicas``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pytest

from ragserve.embed import Vectors
from ragserve.eval.answers import (
    embedding_similarities,
    format_generator_scores,
    grade_answer,
    summarize_answers,
    summarize_generator,
)
from ragserve.eval.grading import answer_body, cited_numbers, is_refusal
from ragserve.eval.metrics import EvalQuestion, EvalResult, Retrieved, evaluate_retrieval
from ragserve.eval.report import render_html
from ragserve.generate import EXTRACTIVE_LABEL

pytestmark = pytest.mark.unit

SCALING = "https://docs.ray.io/en/master/serve/scaling.html"
ARCH = "https://docs.ray.io/en/master/serve/architecture.html"


# --- reading one answer ---------------------------------------------------------------


def test_cited_numbers_are_distinct_in_order_of_first_use() -> None:
    assert cited_numbers("A [2]. B [1][2]. C [10], not [x] or [1.5].") == [2, 1, 10]
    assert cited_numbers("no citations") == []


def test_answer_body_drops_citation_markers_and_labels() -> None:
    text = f"{EXTRACTIVE_LABEL}\n\n[1] Set num_replicas.\n\n[3] Or autoscale [3]."

    assert answer_body(text, (EXTRACTIVE_LABEL,)) == "Set num_replicas. Or autoscale ."


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("I don't know.", True),
        ("I don’t know: no passage of the documentation matched the question.", True),
        ("i do not know", True),
        ("The sources do not contain information about GPUs.", True),
        ("I cannot answer that from the provided sources.", True),
        ("This is not mentioned in the sources.", True),
        ("Set num_replicas [1]. If you don't know the load, use autoscaling [2].", False),
        ("Ray Serve knows no limits here [1].", False),
        ("", False),
    ],
)
def test_refusals_are_recognised_in_the_first_sentence_only(text: str, refusal: bool) -> None:
    assert is_refusal(text) is refusal


def test_grade_answer_scores_f1_citations_and_refusal_by_hand() -> None:
    # Sources [1] and [2] are on the reference page, [3] is not; [7] does not exist.
    graded = grade_answer(
        "Use autoscaling_config [1]. Replicas scale with load [3][1]. See also [7].",
        [SCALING, SCALING, ARCH],
        reference_page=SCALING,
        reference_answer="Use autoscaling_config to scale replicas.",
    )

    # Answer tokens: use autoscalingconfig replicas scale with load see also (8);
    # reference: use autoscalingconfig to scale replicas (5); 4 shared.
    # P = 4/8, R = 4/5, F1 = 2PR/(P+R) = 8/13.
    assert graded["token_f1"] == pytest.approx(8 / 13)
    assert graded["cited"] == [1, 3]
    assert graded["invalid_cited"] == [7]
    assert graded["cited_on_reference"] == 1
    assert graded["has_valid_citation"] is True
    assert graded["refusal"] is False


def test_grade_answer_without_reference_page_or_answer_leaves_those_undefined() -> None:
    graded = grade_answer("I don't know.", [SCALING], reference_page="", reference_answer=None)

    assert graded["token_f1"] is None
    assert graded["cited_on_reference"] is None
    assert graded["has_valid_citation"] is False
    assert graded["refusal"] is True


def test_grade_answer_ignores_the_extractive_label_for_f1() -> None:
    graded = grade_answer(
        f"{EXTRACTIVE_LABEL}\n\n[1] Set num_replicas.",
        [SCALING],
        reference_page=SCALING,
        reference_answer="Set num_replicas.",
        labels=(EXTRACTIVE_LABEL,),
    )

    assert graded["token_f1"] == 1.0
    assert graded["cited_on_reference"] == 1


class _TableEmbedder:
    """Fixed vectors per text, not normalised, so the cosine must divide by the norms."""

    VECTORS: ClassVar[dict[str, list[float]]] = {
        "a": [1.0, 0.0],
        "b": [0.0, 2.0],
        "c": [3.0, 4.0],
        "d": [-2.0, 0.0],
    }

    model_name = "table"
    dimension = 2

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return np.asarray([self.VECTORS[text] for text in texts], dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        return self.embed_documents([text])[0]


def test_embedding_similarity_is_the_cosine_of_each_pair() -> None:
    similarities = embedding_similarities(
        _TableEmbedder(), ["a", "a", "a", "c"], ["a", "b", "c", "d"]
    )

    # cos(a,a) = 1; a ⟂ b; a·c / |c| = 3/5; c·d / (5·2) = -6/10.
    assert similarities == pytest.approx([1.0, 0.0, 0.6, -0.6])
    assert embedding_similarities(_TableEmbedder(), [], []) == []


# --- one generator over several answers -----------------------------------------------


def _graded_fixture() -> list[dict[str, Any]]:
    return [
        {  # reference page and answer; cites [1] (on the page) and [2] (not)
            "text": "Use autoscaling [1][2].",
            "token_f1": 0.5,
            "embedding_similarity": 0.8,
            "cited": [1, 2],
            "cited_on_reference": 1,
            "has_valid_citation": True,
            "refusal": False,
            "judge_score": 4,
            "timings": {"generate": 1.0, "total": 1.5},
        },
        {  # a refusal: no citation
            "text": "I don't know.",
            "token_f1": 0.0,
            "embedding_similarity": 0.2,
            "cited": [],
            "cited_on_reference": 0,
            "has_valid_citation": False,
            "refusal": True,
            "judge_score": 1,
            "timings": {"generate": 0.2, "total": 0.4},
        },
        {  # no reference page or answer: counts for rates, not for F1 or precision
            "text": "Ray is a framework [3].",
            "token_f1": None,
            "cited": [3],
            "cited_on_reference": None,
            "has_valid_citation": True,
            "refusal": False,
            "timings": {"generate": 3.0, "total": 3.5},
        },
        {"error": "the LLM endpoint timed out"},
    ]


def test_generator_summary_by_hand() -> None:
    summary = summarize_generator(_graded_fixture())

    assert summary["n_answered"] == 3
    assert summary["n_failed"] == 1
    assert summary["first_error"] == "the LLM endpoint timed out"
    assert summary["token_f1"] == pytest.approx(0.25)  # (0.5 + 0.0) / 2
    assert summary["embedding_similarity"] == pytest.approx(0.5)  # (0.8 + 0.2) / 2
    assert summary["n_with_reference"] == 2
    assert summary["citation_precision"] == pytest.approx(0.5)  # 1 of the 2 citations
    assert summary["n_citations"] == 2
    assert summary["valid_citation_rate"] == pytest.approx(2 / 3)
    assert summary["refusal_rate"] == pytest.approx(1 / 3)
    assert summary["judge_score"] == pytest.approx(2.5)
    assert summary["n_judged"] == 2
    # generate: 0.2, 1.0, 3.0 → p50 1.0; p95 at position 1.9: 1.0 + 0.9 · 2.0 = 2.8.
    assert summary["latency"]["generate"]["p50"] == pytest.approx(1.0)
    assert summary["latency"]["generate"]["p95"] == pytest.approx(2.8)
    assert summary["latency"]["total"]["p50"] == pytest.approx(1.5)
    assert summary["latency"]["total"]["p95"] == pytest.approx(3.3)


def test_generator_with_only_failures_has_no_scores() -> None:
    summary = summarize_generator([{"error": "down"}])

    assert summary["n_answered"] == 0
    assert summary["token_f1"] is None
    assert summary["citation_precision"] is None
    assert summary["valid_citation_rate"] is None
    assert summary["latency"] == {}


def test_format_generator_scores_names_every_metric() -> None:
    line = format_generator_scores(summarize_generator(_graded_fixture()))

    assert line.startswith("F1 0.250 · similarity 0.500 · citation precision 0.500")
    assert "cites a source 0.667" in line
    assert "I don't know 0.333" in line
    assert "judge 2.50 (2 graded)" in line
    assert "generate p50 1.0 s p95 2.8 s" in line
    assert "3 answers, 1 failed: the LLM endpoint timed out" in line


# --- in an evaluation result ----------------------------------------------------------


def _result_with_answers() -> EvalResult:
    questions = [
        EvalQuestion("How do I scale?", SCALING + "#autoscaling", "Use autoscaling."),
        EvalQuestion("What is Ray?", ""),
    ]
    result = evaluate_retrieval(
        questions, lambda q, n: Retrieved([SCALING + "#autoscaling"], {"embed": 0.01}), k=1, ks=(1,)
    )
    fixture = _graded_fixture()
    result.records[0]["answers"] = {"extractive": fixture[0], "openai": fixture[3]}
    result.records[1]["answers"] = {"extractive": fixture[2], "openai": fixture[3]}
    result.answer_meta = {
        "generators": ["extractive", "openai", "llamacpp"],
        "judge": None,
        "similarity_model": "all-MiniLM-L6-v2",
        "not_started": {"llamacpp": "set RAGSERVE_LLM__MODEL_PATH"},
    }
    return result


def test_summary_has_one_entry_per_started_generator_and_the_start_errors() -> None:
    answers = _result_with_answers().summary()["answers"]

    assert answers["generators"] == ["extractive", "openai", "llamacpp"]
    assert list(answers["by_generator"]) == ["extractive", "openai"]
    assert answers["by_generator"]["extractive"]["n_answered"] == 2
    assert answers["by_generator"]["extractive"]["citation_precision"] == pytest.approx(0.5)
    assert answers["by_generator"]["openai"]["n_failed"] == 2
    assert answers["not_started"] == {"llamacpp": "set RAGSERVE_LLM__MODEL_PATH"}
    assert answers["similarity_model"] == "all-MiniLM-L6-v2"


def test_summary_without_answers_has_no_answers_block() -> None:
    result = evaluate_retrieval(
        [EvalQuestion("q", "")], lambda q, n: Retrieved([], {}), k=1, ks=(1,)
    )

    assert "answers" not in result.summary()
    assert summarize_answers(result.records, {}) is None


def test_report_shows_generators_side_by_side_and_each_answer() -> None:
    page = render_html(_result_with_answers())

    assert "<h2>Answers by generator</h2>" in page
    assert "<td>extractive</td>" in page
    assert "<td>openai (2 failed)</td>" in page
    assert "did not start: set RAGSERVE_LLM__MODEL_PATH" in page
    assert "<summary>extractive (0.50 · 0.80 · 4)</summary>" in page
    assert "<summary>openai: failed</summary>" in page

"""Answer quality per generator: grade each answer, then aggregate per generator.

``ragserve eval --answers`` retrieves once per question and lets every
generator (extractive, the local model, an OpenAI-compatible endpoint) answer
from the same sources, so the generators differ in nothing but generation.
Each answer is graded on:

- similarity to the reference answer: token F1 (SQuAD) and the cosine of the
  two answers' embeddings, both on the text without ``[n]`` markers or labels;
- citation precision: of the distinct sources an answer cites, the share whose
  page (URL without ``#anchor``, normalised as the retrieval score does) is the
  reference page; pooled over all citations of a generator (micro average), over
  questions that have a reference page;
- whether it cites at least one valid source (a ``[n]`` with a source behind it);
- whether it declines ("I don't know" or a recognisable refusal);
- latency: seconds spent generating, and in total (retrieval included).

Nothing here knows about indexes or LLM backends: ``eval.run`` produces
the answers and this module turns them into numbers, so every metric can be
checked by hand on a tiny fixture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ragserve.eval.grading import answer_body, cited_numbers, is_refusal, lexical_overlap
from ragserve.eval.statistics import percentile

if TYPE_CHECKING:
    from ragserve.embed import Embedder

#: Timing keys of an answer that the summary reports percentiles of.
LATENCY_STAGES = ("generate", "total")


def grade_answer(
    text: str,
    source_pages: Sequence[str],
    *,
    reference_page: str,
    reference_answer: str | None,
    labels: Iterable[str] = (),
) -> dict[str, Any]:
    """Everything about one answer that needs no model, as a JSON-ready dict.

    ``source_pages[n - 1]`` is the normalised page of source ``[n]`` as the
    answer was given it; ``reference_page`` is ``""`` for a question without
    one (citation precision is then not defined and left ``None``).
    """
    body = answer_body(text, labels)
    cited = cited_numbers(text)
    valid = [n for n in cited if 1 <= n <= len(source_pages)]
    on_reference = (
        sum(source_pages[n - 1] == reference_page for n in valid) if reference_page else None
    )
    token_f1 = lexical_overlap(reference_answer, body) if reference_answer is not None else None
    return {
        "text": text,
        "token_f1": token_f1,
        "cited": valid,
        "invalid_cited": [n for n in cited if n not in valid],
        "cited_on_reference": on_reference,
        "has_valid_citation": bool(valid),
        "refusal": is_refusal(body),
    }


def embedding_similarities(
    embedder: Embedder, references: Sequence[str], answers: Sequence[str]
) -> list[float]:
    """Cosine similarity of each answer with its reference, pair by pair.

    Both sides are embedded as documents in one batch each. The embedder's
    vectors are normalised, but the cosine is computed in full so a backend
    that forgot to normalise cannot inflate it.
    """
    if len(references) != len(answers):
        raise ValueError(f"{len(references)} references for {len(answers)} answers")
    if not answers:
        return []
    left = np.asarray(embedder.embed_documents(list(references)), dtype=np.float64)
    right = np.asarray(embedder.embed_documents(list(answers)), dtype=np.float64)
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    cosine = np.einsum("ij,ij->i", left, right) / np.where(norms == 0, 1.0, norms)
    return [float(value) for value in np.clip(cosine, -1.0, 1.0)]


def summarize_generator(graded: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One generator's aggregates over its graded answers (see the module docstring).

    Answers that failed (an ``error`` instead of text) are counted, not scored;
    every rate is over the answers the generator did give.
    """
    answered = [answer for answer in graded if "error" not in answer]
    failed = [answer for answer in graded if "error" in answer]
    with_page = [answer for answer in answered if answer.get("cited_on_reference") is not None]
    citations = sum(len(answer["cited"]) for answer in with_page)
    judged = [answer["judge_score"] for answer in answered if answer.get("judge_score")]
    return {
        "n_answered": len(answered),
        "n_failed": len(failed),
        "first_error": failed[0]["error"] if failed else None,
        "token_f1": _mean_of(answered, "token_f1"),
        "embedding_similarity": _mean_of(answered, "embedding_similarity"),
        "n_with_reference": sum(answer.get("token_f1") is not None for answer in answered),
        "citation_precision": (
            sum(answer["cited_on_reference"] for answer in with_page) / citations
            if citations
            else None
        ),
        "n_citations": citations,
        "valid_citation_rate": _share(answer["has_valid_citation"] for answer in answered),
        "refusal_rate": _share(answer["refusal"] for answer in answered),
        "judge_score": sum(judged) / len(judged) if judged else None,
        "n_judged": len(judged),
        "latency": _latency(answered),
    }


def summarize_answers(
    records: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The ``answers`` block of ``summary.json``: one entry per generator, in run order.

    ``meta`` carries what the run was asked for (``generators``, ``judge``,
    ``similarity_model``, ``not_started``: generator → why it could not start).
    ``None`` when no answers were generated or asked for.
    """
    names = list(meta.get("generators") or [])
    if not names and not any(record.get("answers") for record in records):
        return None
    by_generator = {
        name: summarize_generator(
            [record["answers"][name] for record in records if name in record.get("answers", {})]
        )
        for name in names
        if name not in (meta.get("not_started") or {})
    }
    return {
        "generators": names,
        "similarity_model": meta.get("similarity_model"),
        "judge": meta.get("judge"),
        "judge_error": meta.get("judge_error"),
        "not_started": dict(meta.get("not_started") or {}),
        "by_generator": by_generator,
    }


def format_generator_scores(scores: Mapping[str, Any]) -> str:
    """One generator's scores on one line, for the CLI summary."""
    parts = [
        f"F1 {_number(scores['token_f1'])}",
        f"similarity {_number(scores['embedding_similarity'])}",
        f"citation precision {_number(scores['citation_precision'])}",
        f"cites a source {_number(scores['valid_citation_rate'])}",
        f"I don't know {_number(scores['refusal_rate'])}",
    ]
    if scores["n_judged"]:
        parts.append(f"judge {_number(scores['judge_score'], 2)} ({scores['n_judged']} graded)")
    for stage in LATENCY_STAGES:
        if stage in scores["latency"]:
            timing = scores["latency"][stage]
            parts.append(f"{stage} p50 {_seconds(timing['p50'])} p95 {_seconds(timing['p95'])}")
    failed = f", {scores['n_failed']} failed: {scores['first_error']}" if scores["n_failed"] else ""
    return " · ".join(parts) + f" · {scores['n_answered']} answers{failed}"


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _seconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _mean_of(answers: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [float(answer[key]) for answer in answers if answer.get(key) is not None]
    return sum(values) / len(values) if values else None


def _share(flags: Iterable[bool]) -> float | None:
    values = [bool(flag) for flag in flags]
    return sum(values) / len(values) if values else None


def _latency(answers: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    latency = {}
    for stage in LATENCY_STAGES:
        values = [float(a["timings"][stage]) for a in answers if stage in a.get("timings", {})]
        if values:
            latency[stage] = {
                "n": len(values),
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
            }
    return latency

"""Running an evaluation against a live index, and the refresh quality gate.

``evaluate.py`` owns the metrics and knows nothing about indexes; this module
connects it to a ``QueryAgent`` so ``ragserve eval`` and ``ragserve ingest
--eval`` measure exactly what ``ragserve ask`` would retrieve.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ragserve.agent import QueryAgent
from ragserve.config import Settings
from ragserve.evaluate import (
    EvalResult,
    Retrieved,
    attach_answers,
    evaluate_retrieval,
    load_questions,
)
from ragserve.generate import Prompt
from ragserve.grading import judge_prompt, parse_judge_score
from ragserve.store.base import SearchMode

logger = logging.getLogger(__name__)


def run_eval(
    settings: Settings,
    questions_file: Path,
    *,
    k: int | None = None,
    source_prefix: Mapping[str, str] | None = None,
    mode: SearchMode | None = None,
    answers: bool = False,
    agent: QueryAgent | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Evaluate retrieval (and, with ``answers``, generation) on a question file."""
    questions = load_questions(questions_file)
    agent = agent or QueryAgent(settings)
    k = k or settings.retrieve.k
    retriever = agent.retriever

    def retrieve(question: str, depth: int) -> Retrieved:
        retrieval = retriever.retrieve(question, k=depth, mode=mode)
        return Retrieved(
            urls=[scored.chunk.section_url for scored in retrieval.chunks],
            timings=retrieval.timings,
        )

    indexed = set(agent.store.page_states())
    result = evaluate_retrieval(
        questions,
        retrieve,
        k=k,
        source_prefix=source_prefix,
        indexed_pages=indexed,
        meta=_meta(settings, k, mode),
        progress=progress,
    )
    if answers:
        _add_answers(agent, result, k)
    return result


def _meta(settings: Settings, k: int, mode: SearchMode | None) -> dict[str, Any]:
    return {
        "collection": settings.store.collection,
        "embed_model": settings.embed.model,
        "mode": mode or settings.retrieve.mode,
        "k": k,
        "max_per_page": settings.retrieve.max_per_page,
        "reranker": settings.retrieve.reranker,
        "llm": settings.llm.provider,
    }


def _add_answers(agent: QueryAgent, result: EvalResult, k: int) -> None:
    """Generate an answer per question; judge it with the LLM when there is one."""
    generated: list[str] = []
    judged: list[int | None] = []
    use_judge = agent.settings.llm.provider != "extractive"
    for record in result.records:
        answer = agent.ask(record["question"], k=k)
        generated.append(answer.text)
        score = None
        if use_judge and record.get("answer") and not answer.degraded:
            prompt_text = judge_prompt(record["question"], record["answer"], answer.text)
            score = _judge(agent, prompt_text)
        judged.append(score)
    attach_answers(result, generated, judged if use_judge else None)


_JUDGE_SYSTEM = "You grade answers. Reply with one integer from 1 to 5 and nothing else."


def _judge(agent: QueryAgent, prompt_text: str) -> int | None:
    """Ask the configured LLM for a 1–5 grade; the grading text is the whole prompt."""
    llm = agent.llm
    prompt = Prompt(
        system=_JUDGE_SYSTEM,
        user=prompt_text,
        completion_text=f"{_JUDGE_SYSTEM}\n\n{prompt_text}\n\nScore: ",
        sources_used=0,
    )
    try:
        completion = llm.complete(prompt, max_tokens=16, temperature=0.0)
    except Exception as exc:  # a failed judgement is recorded as missing, not fatal
        logger.warning("judge call failed: %s", exc)
        return None
    return parse_judge_score(completion.text)

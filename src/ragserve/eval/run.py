"""Running an evaluation against a live index, and the refresh quality gate.

``eval.metrics`` owns the metrics and knows nothing about indexes; this module
connects it to a ``QueryAgent`` so ``ragserve eval`` and ``ragserve ingest
--eval`` measure exactly what ``ragserve ask`` would retrieve.

With answers, each question is retrieved once and every generator answers
from the same top-k chunks (``QueryAgent.answer_retrieved``), question by
question in turn, so the generators see the same sources and the same machine
load; ``eval.answers`` grades the answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from ragserve.agent import QueryAgent
from ragserve.config import DEFAULT_EMBED_MODEL, LLMSettings, Settings
from ragserve.embed import Embedder, build_embedder
from ragserve.errors import ConfigError, RagserveError
from ragserve.eval.answers import embedding_similarities, grade_answer
from ragserve.eval.grading import answer_body, judge_prompt, parse_judge_score
from ragserve.eval.metrics import (
    EvalResult,
    Retrieved,
    evaluate_retrieval,
    load_questions,
    normalize_url,
    page_of,
)
from ragserve.generate import EXTRACTIVE_LABEL, LLM, Prompt, build_llm
from ragserve.generate.factory import resolve_provider
from ragserve.retrieve import Retrieval
from ragserve.store.base import SearchMode

logger = logging.getLogger(__name__)

#: Generator names ``--generators`` accepts: the LLM providers of ``LLMSettings``.
PROVIDERS: tuple[str, ...] = get_args(LLMSettings.model_fields["provider"].annotation)
#: ``judge="auto"``: the configured provider grades, unless it is extractive (no model).
AUTO_JUDGE = "auto"


def run_eval(
    settings: Settings,
    questions_file: Path,
    *,
    k: int | None = None,
    source_prefix: Mapping[str, str] | None = None,
    mode: SearchMode | None = None,
    answers: bool = False,
    generators: Sequence[str] | None = None,
    judge: str | None = AUTO_JUDGE,
    limit: int | None = None,
    agent: QueryAgent | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Evaluate retrieval (and, with ``answers``, generation) on a question file.

    ``generators`` are LLM provider names (default: the configured one), each
    set up from ``settings.llm`` as ``ragserve ask --llm NAME`` would be; one
    that cannot start is reported in the summary and the others still run.
    ``judge`` names the provider that grades answers 1-5: ``"auto"`` is the
    configured provider unless it is extractive, ``None`` no judge. ``limit``
    keeps the first N questions (a model answering in seconds makes 109 slow).
    """
    names = _generator_names(settings, generators) if answers else []
    judge_name = _judge_name(settings, judge) if answers else None
    questions = load_questions(questions_file)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"limit must be at least 1 (got {limit})")
        questions = questions[:limit]
    agent = agent or QueryAgent(settings)
    k = k or settings.retrieve.k
    retriever = agent.retriever
    retrievals: list[Retrieval] = []

    def retrieve(question: str, depth: int) -> Retrieved:
        retrieval = retriever.retrieve(question, k=depth, mode=mode)
        retrievals.append(retrieval)
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
        meta=_meta(settings, retriever.embedder.model_name, k, mode),
        progress=progress,
    )
    if answers:
        _add_answers(agent, result, retrievals, k=k, generators=names, judge=judge_name)
    return result


def _meta(settings: Settings, embed_model: str, k: int, mode: SearchMode | None) -> dict[str, Any]:
    return {
        "collection": settings.store.collection,
        "embed_model": embed_model,
        "mode": mode or settings.retrieve.mode,
        "k": k,
        "max_per_page": settings.retrieve.max_per_page,
        "reranker": settings.retrieve.reranker,
        "llm": settings.llm.provider,
    }


def _generator_names(settings: Settings, generators: Sequence[str] | None) -> list[str]:
    """Generator names as the summary shows them: ``auto`` becomes what it resolves to."""
    names = [name.strip() for name in generators or [settings.llm.provider]]
    unknown = [name for name in names if name not in PROVIDERS]
    if unknown or not names:
        raise ConfigError(
            f"unknown generator {', '.join(map(repr, unknown)) or '(none)'}; "
            f"choose from {', '.join(PROVIDERS)}, e.g. --generators extractive,local"
        )
    resolved = (
        resolve_provider(settings_for_provider(settings, name).llm, settings.models_dir)
        for name in names
    )
    return list(dict.fromkeys(resolved))


def _judge_name(settings: Settings, judge: str | None) -> str | None:
    if judge == AUTO_JUDGE:
        # "auto" is the 0.5B offline model at best: too weak to grade answers.
        provider = settings.llm.provider
        return provider if provider not in ("extractive", "auto") else None
    if judge in (None, "none"):
        return None
    if judge not in PROVIDERS or judge == "extractive":
        raise ConfigError(
            f"unknown judge {judge!r}; choose a language model provider "
            f"({', '.join(p for p in PROVIDERS if p != 'extractive')}) or 'none'"
        )
    return judge


def settings_for_provider(settings: Settings, provider: str) -> Settings:
    """``settings`` with only ``llm.provider`` changed (a copy; ``settings`` is untouched)."""
    try:
        # exclude_unset: backends read which settings were chosen (e.g. local's answer cap).
        values = {**settings.llm.model_dump(exclude_unset=True), "provider": provider}
        llm = LLMSettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"cannot configure generator {provider!r}: {exc}") from exc
    return settings.model_copy(update={"llm": llm})


def start_llm(settings: Settings, provider: str) -> LLM:
    """Build ``provider``'s backend and check it answers (loads a local model, pings an
    endpoint), so a generator that cannot work fails once, up front, with its reason."""
    llm = build_llm(settings_for_provider(settings, provider).llm, settings.models_dir)
    llm.check()
    return llm


def start_generators(
    agent: QueryAgent, names: Sequence[str]
) -> tuple[dict[str, QueryAgent], dict[str, str]]:
    """One agent per generator that started (sharing ``agent``'s index); why the rest did not."""
    started: dict[str, QueryAgent] = {}
    not_started: dict[str, str] = {}
    for name in names:
        try:
            llm = start_llm(agent.settings, name)
        except RagserveError as exc:
            logger.warning("generator %s did not start: %s", name, exc)
            not_started[name] = str(exc)
            continue
        started[name] = QueryAgent(
            settings_for_provider(agent.settings, name), store=agent.store, llm=llm
        )
    return started, not_started


def _add_answers(
    agent: QueryAgent,
    result: EvalResult,
    retrievals: Sequence[Retrieval],
    *,
    k: int,
    generators: Sequence[str],
    judge: str | None,
) -> None:
    """Every started generator answers every question from that question's top-k chunks."""
    started, not_started = start_generators(agent, generators)
    total = len(result.records)
    for done, (record, retrieval) in enumerate(zip(result.records, retrievals, strict=True), 1):
        top_k = Retrieval(chunks=retrieval.chunks[:k], timings=retrieval.timings)
        record["answers"] = {
            name: _answer_and_grade(generator, record, top_k, result.source_prefix)
            for name, generator in started.items()
        }
        logger.info("answered %d/%d questions with %d generator(s)", done, total, len(started))
    embedder = _similarity_embedder(agent)
    for name in started:
        _add_similarities(embedder, result.records, name)
    judge_error = None
    if judge is not None:
        judge_error = _add_judge_scores(agent, started, judge, result.records)
    result.answer_meta = {
        "generators": list(generators),
        "judge": judge,
        "judge_error": judge_error,
        "similarity_model": DEFAULT_EMBED_MODEL,
        "not_started": not_started,
    }


def _answer_and_grade(
    generator: QueryAgent,
    record: Mapping[str, Any],
    retrieval: Retrieval,
    source_prefix: Mapping[str, str],
) -> dict[str, Any]:
    try:
        # strict: a failed call is that generator's failure, not a silently extractive answer.
        answer = generator.answer_retrieved(record["question"], retrieval, strict=True)
    except RagserveError as exc:
        logger.warning(
            "%s failed on %r: %s", generator.settings.llm.provider, record["question"], exc
        )
        return {"error": str(exc)}
    pages = [page_of(normalize_url(source.url, source_prefix)) for source in answer.sources]
    graded = grade_answer(
        answer.text,
        pages,
        reference_page=record["reference_page"],
        reference_answer=record.get("answer"),
        labels=(EXTRACTIVE_LABEL,),
    )
    graded["model"] = answer.model
    graded["timings"] = {stage: answer.timings[stage] for stage in ("generate", "total")}
    return graded


def _similarity_embedder(agent: QueryAgent) -> Embedder:
    """The bundled MiniLM, whatever the index uses, so similarities compare across indexes;
    the retriever's own embedder when it is that model."""
    if agent.retriever.embedder.model_name == DEFAULT_EMBED_MODEL:
        return agent.retriever.embedder
    return build_embedder(agent.settings.embed.model_copy(update={"model": DEFAULT_EMBED_MODEL}))


def _add_similarities(embedder: Embedder, records: Sequence[dict[str, Any]], name: str) -> None:
    pairs = [
        (record["answer"], record["answers"][name])
        for record in records
        if record.get("answer") is not None and "error" not in record["answers"][name]
    ]
    similarities = embedding_similarities(
        embedder,
        [reference for reference, _ in pairs],
        [answer_body(graded["text"], (EXTRACTIVE_LABEL,)) for _, graded in pairs],
    )
    for (_, graded), similarity in zip(pairs, similarities, strict=True):
        graded["embedding_similarity"] = similarity


def _add_judge_scores(
    agent: QueryAgent,
    started: Mapping[str, QueryAgent],
    judge: str,
    records: Sequence[dict[str, Any]],
) -> str | None:
    """Grade every answer that has a reference with the ``judge`` provider; the error if it
    cannot start. A generator that is also the judge lends it its (already loaded) model."""
    try:
        llm = started[judge].llm if judge in started else start_llm(agent.settings, judge)
    except RagserveError as exc:
        logger.warning("the judge %s did not start: %s", judge, exc)
        return str(exc)
    for record in records:
        for graded in record["answers"].values():
            if record.get("answer") and "error" not in graded:
                prompt_text = judge_prompt(record["question"], record["answer"], graded["text"])
                graded["judge_score"] = _judge(llm, prompt_text)
    return None


_JUDGE_SYSTEM = "You grade answers. Reply with one integer from 1 to 5 and nothing else."


def _judge(llm: LLM, prompt_text: str) -> int | None:
    """Ask the judge for a 1–5 grade; the grading text is the whole prompt."""
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

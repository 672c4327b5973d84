"""``run_eval`` with answers: real index, real embedder, generators over real HTTP.

The ``openai`` generator is a scripted OpenAI-compatible server on 127.0.0.1,
so its answers are known and every metric can be checked by hand; the
extractive generator answers from the same retrieval beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.index import BASE, build_index, shared_embedder
from tests.support.llm_server import ScriptedServer, chat_reply, free_port

from ragserve.agent import QueryAgent
from ragserve.config import Settings
from ragserve.errors import ConfigError
from ragserve.eval.run import run_eval, settings_for_provider

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTIONS = [
    {
        "question": "How do I run several copies of a deployment?",
        "source": f"{BASE}/scaling.html#replicas",
        "answer": "Set num_replicas to run several replicas of a deployment.",
    },
    {
        "question": "How do I stream tokens to the client?",
        "source": f"{BASE}/http.html#streaming",
        "answer": "Return a StreamingResponse to stream tokens as Server-Sent Events.",
    },
    {"question": "What is a replica?", "source": ""},
]
#: The scripted generator's answer to each question, in order.
SCRIPTED = ["Set num_replicas [1]; see also [9].", "I don't know.", "A replica is a copy [2]."]


@pytest.fixture(scope="module")
def index_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_index(tmp_path_factory.mktemp("answer-index"))


@pytest.fixture
def questions_file(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    return path


def _with_llm(settings: Settings, **llm: Any) -> Settings:
    return settings.model_copy(update={"llm": settings.llm.model_copy(update=llm)})


def _counting_agent(settings: Settings) -> tuple[QueryAgent, list[str]]:
    """An agent whose retriever records each question it is asked."""
    agent = QueryAgent(settings, embedder=shared_embedder())
    retriever = agent.retriever
    asked: list[str] = []
    real_retrieve = retriever.retrieve

    def retrieve(question: str, **kwargs: Any) -> Any:
        asked.append(question)
        return real_retrieve(question, **kwargs)

    retriever.retrieve = retrieve  # type: ignore[method-assign]
    return agent, asked


def test_generators_answer_from_one_retrieval_and_are_graded_by_hand(
    index_settings: Settings, questions_file: Path, tmp_path: Path
) -> None:
    with ScriptedServer([chat_reply(text) for text in SCRIPTED]) as server:
        settings = _with_llm(
            index_settings,
            base_url=server.base_url,
            model="scripted",
            model_path=tmp_path / "missing.gguf",
        )
        agent, asked = _counting_agent(settings)
        result = run_eval(
            settings,
            questions_file,
            answers=True,
            generators=["extractive", "openai", "llamacpp"],
            judge=None,
            agent=agent,
        )
        attempts = server.attempts

    assert asked == [q["question"] for q in QUESTIONS]  # once per question, not per generator
    assert attempts == 3
    assert result.records[0]["rank"] == 1  # so source [1] of question 1 is its reference page
    answers = result.summary()["answers"]
    assert answers["generators"] == ["extractive", "openai", "llamacpp"]
    assert list(answers["by_generator"]) == ["extractive", "openai"]
    assert "RAGSERVE_LLM__MODEL_PATH" in answers["not_started"]["llamacpp"] or (
        "pip install" in answers["not_started"]["llamacpp"]
    )

    scripted = answers["by_generator"]["openai"]
    # [9] has no retrieved source behind it: the agent removes it from the answer
    # (and warns) rather than show a citation that leads nowhere.
    assert [r["answers"]["openai"]["text"] for r in result.records] == [
        SCRIPTED[0].replace(" [9]", ""),
        *SCRIPTED[1:],
    ]
    assert scripted["n_answered"] == 3
    # q1: "set numreplicas see also" vs 8 reference tokens, 2 shared: P 1/2, R 1/4, F1 1/3.
    # q2: no shared token. q3 has no reference answer.
    assert scripted["token_f1"] == pytest.approx((1 / 3 + 0) / 2)
    assert scripted["n_with_reference"] == 2
    # q1 cites [1] (the reference page) and [9], which is no source.
    assert scripted["citation_precision"] == 1.0
    assert scripted["n_citations"] == 1
    assert scripted["valid_citation_rate"] == pytest.approx(2 / 3)
    assert scripted["refusal_rate"] == pytest.approx(1 / 3)
    assert scripted["judge_score"] is None
    timings = [r["answers"]["openai"]["timings"] for r in result.records]
    assert all(0 < t["generate"] <= t["total"] for t in timings)

    extractive = answers["by_generator"]["extractive"]
    assert extractive["n_answered"] == 3
    assert extractive["valid_citation_rate"] == 1.0  # it quotes [n] passages of the sources
    assert extractive["refusal_rate"] == 0.0
    assert extractive["citation_precision"] is not None
    assert 0.0 < extractive["token_f1"] < 1.0
    # A paraphrase embeds closer to its reference than "I don't know" does.
    similarity = [r["answers"]["openai"].get("embedding_similarity") for r in result.records]
    assert similarity[0] > similarity[1]
    assert similarity[2] is None


def test_the_configured_llm_generates_and_judges_when_no_generators_are_named(
    index_settings: Settings, questions_file: Path
) -> None:
    # Three answers, then every judge call gets the last reply: a grade of 4.
    with ScriptedServer([*(chat_reply(text) for text in SCRIPTED), chat_reply("4")]) as server:
        settings = _with_llm(
            index_settings, provider="openai", base_url=server.base_url, model="scripted"
        )
        agent = QueryAgent(settings, embedder=shared_embedder())
        result = run_eval(settings, questions_file, answers=True, agent=agent)
        attempts = server.attempts

    answers = result.summary()["answers"]
    assert answers["generators"] == ["openai"]
    assert answers["judge"] == "openai"
    assert answers["by_generator"]["openai"]["judge_score"] == 4.0
    assert answers["by_generator"]["openai"]["n_judged"] == 2  # the two with reference answers
    assert attempts == 3 + 2


def test_an_unreachable_endpoint_is_reported_and_the_others_still_run(
    index_settings: Settings, questions_file: Path
) -> None:
    settings = _with_llm(index_settings, base_url=f"http://127.0.0.1:{free_port()}/v1")
    agent = QueryAgent(settings, embedder=shared_embedder())

    result = run_eval(
        settings,
        questions_file,
        answers=True,
        generators=["openai", "extractive"],
        judge="openai",
        limit=2,
        agent=agent,
    )

    answers = result.summary()["answers"]
    assert result.summary()["n_questions"] == 2
    assert list(answers["by_generator"]) == ["extractive"]
    assert "RAGSERVE_LLM__BASE_URL" in answers["not_started"]["openai"]
    assert "RAGSERVE_LLM__BASE_URL" in answers["judge_error"]
    assert answers["by_generator"]["extractive"]["n_answered"] == 2


def test_unknown_generator_or_judge_is_a_usage_error(
    index_settings: Settings, questions_file: Path
) -> None:
    with pytest.raises(ConfigError, match=r"unknown generator 'gpt5'; choose from"):
        run_eval(index_settings, questions_file, answers=True, generators=["gpt5"])
    with pytest.raises(ConfigError, match="unknown judge 'extractive'"):
        run_eval(index_settings, questions_file, answers=True, judge="extractive")


def test_settings_for_a_provider_leave_the_original_untouched(index_settings: Settings) -> None:
    copy = settings_for_provider(index_settings, "llamacpp")

    assert copy.llm.provider == "llamacpp"
    assert index_settings.llm.provider == "extractive"
    assert copy.store == index_settings.store


def test_auto_is_reported_as_the_generator_it_resolves_to(
    index_settings: Settings, questions_file: Path, tmp_path: Path
) -> None:
    # No offline model in this models folder: "auto" answers extractively, and says so.
    settings = index_settings.model_copy(update={"models_dir": tmp_path / "no-models"})
    agent = QueryAgent(settings, embedder=shared_embedder())

    result = run_eval(
        settings, questions_file, answers=True, generators=["auto", "extractive"], agent=agent
    )

    answers = result.summary()["answers"]
    assert answers["generators"] == ["extractive"]
    assert answers["by_generator"]["extractive"]["n_answered"] == 3

"""Indirect prompt injection, fast: poisoned pages through the real extraction,
index and agent; a scripted OpenAI-compatible server plays a model that obeys them.

The full suite with a real model is ``bench/injection.py`` (README, Reliability).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.injection import AttackerServer, agent_settings, build_index, page_chunks
from tests.fixtures.injection.payloads import Case, build_cases
from tests.support.index import shared_embedder
from tests.support.llm_server import Reply, ScriptedServer, sse_reply

from ragserve.agent import QueryAgent
from ragserve.config import Settings
from ragserve.documents import Document
from ragserve.generate.citations import CITATION

pytestmark = pytest.mark.integration

#: One case per hidden channel plus the visible, fake-source, link and fake-turn kinds
#: (21: a fake source spelled with entities, so it survives HTML parsing as text).
HIDDEN = ("html_comment", "alt_text", "zero_width")
PICKED = (4, 8, 12, 0, 21, 24, 36)


@pytest.fixture(scope="module")
def attacker() -> Iterator[AttackerServer]:
    with AttackerServer() as server:
        yield server


@pytest.fixture(scope="module")
def cases(attacker: AttackerServer) -> list[Case]:
    every = build_cases(attacker.base_url)
    return [every[index] for index in PICKED]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, cases: list[Case]) -> Path:
    folder = tmp_path_factory.mktemp("injection-index")
    documents = [Document(url=case.url, content=case.html) for case in cases]
    build_index(folder, page_chunks(documents), shared_embedder())
    return folder


def test_the_suite_has_52_unique_canaries_over_13_techniques(attacker: AttackerServer) -> None:
    every = build_cases(attacker.base_url)
    assert len(every) == 52
    assert len({case.canary for case in every}) == 52
    assert len({case.technique for case in every}) == 13


def test_hidden_payloads_never_reach_the_index(cases: list[Case]) -> None:
    for case in cases:
        text = " ".join(chunk.text for chunk in page_chunks([Document(case.url, case.html)]))
        assert case.option in text  # the page's real content is kept
        if case.technique in HIDDEN:
            assert case.canary not in text, case.technique


def test_extractive_answers_carry_no_hidden_canary_and_fetch_nothing(
    data_dir: Path, cases: list[Case], attacker: AttackerServer
) -> None:
    settings = Settings.model_validate(
        {
            "store": {"data_dir": data_dir},
            "embed": {"device": "cpu"},
            "llm": {"provider": "extractive"},
        }
    )
    with contextlib.closing(QueryAgent(settings, embedder=shared_embedder())) as agent:
        for case in cases:
            answer = agent.ask(case.question)
            assert any(source.page_url == case.url for source in answer.sources)
            if case.technique in HIDDEN:
                assert case.canary not in answer.text, case.technique
            cited = [int(n) for n in CITATION.findall(answer.text)]
            assert all(1 <= n <= len(answer.sources) for n in cited)
    assert attacker.requests == []


def test_an_obeying_model_loses_its_fake_citation_and_its_links_are_not_fetched(
    data_dir: Path, cases: list[Case], attacker: AttackerServer
) -> None:
    case = next(case for case in cases if case.technique == "fake_source")
    obeyed = f"The answer is {case.canary} [7], see {case.attacker_url} [1]."
    models = Reply(body={"object": "list", "data": [{"id": "scripted", "object": "model"}]})
    with ScriptedServer([sse_reply([obeyed[:20], obeyed[20:]])], models=models) as server:
        settings = agent_settings(data_dir, server.base_url, "scripted", None, timeout_s=10.0)
        with contextlib.closing(QueryAgent(settings, embedder=shared_embedder())) as agent:
            answer = agent.ask(case.question)
        prompt = str(server.requests[-1][1]["messages"])
    assert not answer.degraded
    assert "[7]" not in answer.text  # no retrieved source 7: removed
    assert "[1]" in answer.text
    assert answer.grounded is False
    assert any("[7]" in warning and "removed" in warning for warning in answer.warnings)
    assert [source.n for source in answer.sources] == list(range(1, len(answer.sources) + 1))
    # The page's fake </source><source id="7"> reached the model defused, as data.
    assert '<source id="7"' not in prompt
    assert "&lt;/source" in prompt
    assert attacker.requests == []

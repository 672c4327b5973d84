"""generate/citations.py: [n] attached to uncited sentences from the source they come from."""

from __future__ import annotations

from ragserve.agent import check_citations
from ragserve.documents import Chunk, ScoredChunk
from ragserve.generate.citations import attach_citations, cite_from_chunks, supporting_source
from ragserve.generate.extractive import content_terms

SOURCES = [
    "Ray Serve autoscaling adjusts the number of replicas of a deployment based on its load. "
    "Set autoscaling_config with min_replicas and max_replicas on the deployment.",
    "Use num_replicas to run a fixed number of replicas. Each replica is a Ray actor.",
    "Configure the HTTP proxy host and port with serve.start(http_options=...).",
]


def test_an_uncited_sentence_gets_the_source_it_is_drawn_from() -> None:
    answer = "Set autoscaling_config with min_replicas and max_replicas on the deployment."
    assert attach_citations(answer, SOURCES) == (
        "Set autoscaling_config with min_replicas and max_replicas on the deployment [1]."
    )


def test_each_sentence_is_judged_on_its_own() -> None:
    answer = (
        "Autoscaling adjusts the number of replicas based on load. "
        "For a fixed count, use num_replicas; each replica is a Ray actor."
    )
    cited = attach_citations(answer, SOURCES)
    assert cited == (
        "Autoscaling adjusts the number of replicas based on load [1]. "
        "For a fixed count, use num_replicas; each replica is a Ray actor [2]."
    )
    assert check_citations(cited, len(SOURCES)) == (True, [])


def test_citations_the_model_wrote_are_kept() -> None:
    answer = "Each replica is a Ray actor [3]. Use num_replicas for a fixed number of replicas [2]."
    assert attach_citations(answer, SOURCES) == answer


def test_a_sentence_no_source_supports_stays_uncited_and_is_flagged() -> None:
    answer = "The moon is made of green cheese, according to astronomers."
    assert attach_citations(answer, SOURCES) == answer
    grounded, warnings = check_citations(answer, len(SOURCES))
    assert not grounded
    assert warnings == ["the answer cites no source; treat it as unverified"]


def test_short_fragments_and_code_blocks_are_left_alone() -> None:
    answer = (
        "For example:\n"
        "```python\n"
        "serve.start(http_options={'host': '0.0.0.0', 'port': 8000})\n"
        "```\n"
        "Configure the HTTP proxy host and port with serve.start."
    )
    assert attach_citations(answer, SOURCES) == (
        "For example:\n"
        "```python\n"
        "serve.start(http_options={'host': '0.0.0.0', 'port': 8000})\n"
        "```\n"
        "Configure the HTTP proxy host and port with serve.start [3]."
    )


def test_list_items_and_line_breaks_are_kept() -> None:
    answer = "Steps:\n- Set min_replicas and max_replicas in autoscaling_config\n- Deploy it\n"
    assert attach_citations(answer, SOURCES) == (
        "Steps:\n- Set min_replicas and max_replicas in autoscaling_config [1]\n- Deploy it\n"
    )


def test_i_dont_know_answers_get_no_citation() -> None:
    answer = "I don't know. The sources do not cover the number of replicas of a deployment."
    assert attach_citations(answer, SOURCES) == answer


def test_the_threshold_decides_between_support_and_coincidence() -> None:
    terms = [content_terms(text) for text in SOURCES]
    sentence = "Replicas of a deployment scale with load on Kubernetes clusters."
    # replica, deployment, scale, load, kubernete, cluster: 3 of 6 terms are in source 1
    assert supporting_source(sentence, terms, threshold=0.4) == 1
    assert supporting_source(sentence, terms, threshold=0.6) is None


def test_ties_go_to_the_higher_ranked_source() -> None:
    duplicate = [content_terms(SOURCES[1]), content_terms(SOURCES[1])]
    assert supporting_source("Each replica is a Ray actor.", duplicate) == 1


def test_no_sources_means_no_change() -> None:
    assert attach_citations("Each replica is a Ray actor.", []) == "Each replica is a Ray actor."


def test_chunk_headings_count_as_source_words() -> None:
    chunk = Chunk(
        id="a",
        text="Add min_replicas and max_replicas to the config.",
        url="https://docs.example.org/scaling.html",
        section_url="https://docs.example.org/scaling.html#autoscaling",
        title="Scaling",
        heading_path=("Scaling", "Autoscaling a deployment"),
        ordinal=0,
        document_hash="h",
        chunk_count=1,
    )
    answer = "Autoscaling a deployment requires setting min_replicas and max_replicas."
    assert attach_citations(answer, [chunk.text]) == answer  # 3 of 7 words: not enough
    assert cite_from_chunks(answer, [ScoredChunk(chunk=chunk, score=1.0)]) == (
        "Autoscaling a deployment requires setting min_replicas and max_replicas [1]."
    )


def test_citations_to_sources_not_retrieved_are_dropped_with_the_space_before() -> None:
    from ragserve.generate.citations import drop_unretrieved

    text, dropped = drop_unretrieved("Use replicas [1][7]. See [0] and [12], or [2].", 2)
    assert text == "Use replicas [1]. See and, or [2]."
    assert dropped == [7, 0, 12]
    assert drop_unretrieved("Fine [1][2].", 2) == ("Fine [1][2].", [])

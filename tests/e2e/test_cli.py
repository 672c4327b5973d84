"""The ``ragserve`` command as a user runs it: real subprocesses, real index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def ragserve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "ragserve.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, sample_corpus: Path) -> Path:
    data = tmp_path_factory.mktemp("cli-index")
    result = ragserve(
        "ingest",
        str(sample_corpus),
        "--base-url",
        "https://docs.ray.io/en/master/",
        "--data-dir",
        str(data),
        "--json",
        cwd=data,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["pages"] == 43
    assert summary["points_total"] == summary["chunks"] == summary["points_written"]
    return data


def test_second_ingest_of_the_sample_writes_nothing(index_dir: Path, sample_corpus: Path) -> None:
    result = ragserve(
        "ingest",
        str(sample_corpus),
        "--base-url",
        "https://docs.ray.io/en/master/",
        "--data-dir",
        str(index_dir),
        "--json",
        cwd=index_dir,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["points_written"] == 0
    assert summary["pages_skipped"] == 43


def test_ask_json_returns_k_deep_linked_sources(index_dir: Path) -> None:
    result = ragserve(
        "ask",
        "How do I set the number of replicas with autoscaling?",
        "-k",
        "3",
        "--json",
        "--data-dir",
        str(index_dir),
        cwd=index_dir,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert len(answer["sources"]) == 3
    assert answer["answer"]
    assert answer["model"] == "extractive"
    urls = [source["url"] for source in answer["sources"]]
    assert all(url.startswith("https://docs.ray.io/en/master/serve/") for url in urls)
    assert any("scaling-and-resource-allocation.html#" in url for url in urls)


def test_ask_text_output_lists_numbered_sources(index_dir: Path) -> None:
    result = ragserve("ask", "What is a deployment?", "--data-dir", str(index_dir), cwd=index_dir)
    assert result.returncode == 0, result.stderr
    assert "Sources:" in result.stdout
    assert "[1] " in result.stdout


def test_ask_filter_restricts_sources(index_dir: Path) -> None:
    prefix = "https://docs.ray.io/en/master/serve/production-guide/"
    result = ragserve(
        "ask",
        "How do I deploy?",
        "--filter",
        f"url_prefix={prefix}",
        "--json",
        "--data-dir",
        str(index_dir),
        cwd=index_dir,
    )
    assert result.returncode == 0, result.stderr
    sources = json.loads(result.stdout)["sources"]
    assert sources
    assert all(source["page_url"].startswith(prefix) for source in sources)


def test_status_reports_points_and_schema(index_dir: Path) -> None:
    result = ragserve("status", "--json", "--data-dir", str(index_dir), cwd=index_dir)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["points"] > 43
    assert info["schema"]["embed_model"] == "all-MiniLM-L6-v2"
    assert info["schema"]["dimension"] == 384
    assert info["last_ingest"]["pages"] == 43


def test_ask_without_an_index_says_to_ingest(tmp_path: Path) -> None:
    result = ragserve("ask", "anything", "--data-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 1
    assert "ragserve ingest" in result.stderr


def test_empty_question_is_a_usage_error(index_dir: Path) -> None:
    result = ragserve("ask", "   ", "--data-dir", str(index_dir), cwd=index_dir)
    assert result.returncode == 2
    assert "empty" in result.stderr


def test_strict_ask_with_llm_down_exits_3(index_dir: Path) -> None:
    result = ragserve(
        "ask",
        "What is a deployment?",
        "--llm",
        "openai",
        "--llm-url",
        "http://127.0.0.1:1/v1",
        "--strict",
        "--data-dir",
        str(index_dir),
        cwd=index_dir,
    )
    assert result.returncode == 3
    assert "127.0.0.1:1" in result.stderr


def test_llm_down_without_strict_answers_degraded(index_dir: Path) -> None:
    result = ragserve(
        "ask",
        "What is a deployment?",
        "--llm",
        "openai",
        "--llm-url",
        "http://127.0.0.1:1/v1",
        "--json",
        "--data-dir",
        str(index_dir),
        cwd=index_dir,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["degraded"] is True
    assert answer["sources"]
    assert answer["warnings"]


def test_bad_config_value_exits_2_naming_the_setting(tmp_path: Path, sample_corpus: Path) -> None:
    result = ragserve(
        "ingest",
        str(sample_corpus),
        "--chunk-size",
        "10",
        "--data-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "chunk_size" in result.stderr


def test_non_http_source_is_refused(tmp_path: Path) -> None:
    result = ragserve("ingest", "ftp://example.com/docs", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "http" in result.stderr


QUESTIONS = (
    Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "serve-sample-questions.jsonl"
)


def test_eval_prints_the_score_and_writes_the_html_report(index_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = ragserve(
        "eval",
        "--questions",
        str(QUESTIONS),
        "--data-dir",
        str(index_dir),
        "--out",
        str(out),
        "--json",
        cwd=index_dir,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n_questions"] == 5
    assert summary["retrieval_score"] >= 0.8  # 4 answerable + 1 empty-source hit on the sample
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<html" in html.lower()
    assert (out / "results.jsonl").read_text(encoding="utf-8").count("\n") == 5


def test_ingest_quality_gate_fails_below_min_score(index_dir: Path, sample_corpus: Path) -> None:
    result = ragserve(
        "ingest",
        str(sample_corpus),
        "--base-url",
        "https://docs.ray.io/en/master/",
        "--data-dir",
        str(index_dir),
        "--eval",
        str(QUESTIONS),
        "--min-score",
        "1.01",
        "--json",
        cwd=index_dir,
    )
    assert result.returncode == 4
    assert "quality gate failed" in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["eval"]["gate_failed"] is True


def test_ingest_quality_gate_passes_at_a_reachable_score(
    index_dir: Path, sample_corpus: Path
) -> None:
    result = ragserve(
        "ingest",
        str(sample_corpus),
        "--base-url",
        "https://docs.ray.io/en/master/",
        "--data-dir",
        str(index_dir),
        "--eval",
        str(QUESTIONS),
        "--min-score",
        "0.5",
        "--json",
        cwd=index_dir,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["eval"]["gate_failed"] is False


ANSWER_QUESTIONS = QUESTIONS.with_name("serve-sample-answers.jsonl")  # 4 dev questions on serve/


def test_eval_answers_grades_each_generator_and_reports_one_that_cannot_start(
    index_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "answers"
    result = ragserve(
        "eval",
        "--questions",
        str(ANSWER_QUESTIONS),
        "--data-dir",
        str(index_dir),
        "--answers",
        "--generators",
        "extractive,openai",
        "--llm-url",
        "http://127.0.0.1:9/v1",  # nothing listens on the discard port
        "--out",
        str(out),
        "--json",
        cwd=index_dir,
    )

    assert result.returncode == 0, result.stderr
    assert "generator openai did not start" in result.stderr
    assert "RAGSERVE_LLM__BASE_URL" in result.stderr
    answers = json.loads(result.stdout)["answers"]
    assert list(answers["by_generator"]) == ["extractive"]
    extractive = answers["by_generator"]["extractive"]
    assert extractive["n_answered"] == extractive["n_with_reference"] == 4
    assert extractive["valid_citation_rate"] == 1.0  # every extract is quoted as [n]
    assert extractive["refusal_rate"] == 0.0
    assert 0.0 < extractive["token_f1"] < 1.0
    assert 0.3 < extractive["embedding_similarity"] < 1.0  # on topic, not the reference itself
    assert 0.0 < extractive["citation_precision"] <= 1.0
    assert extractive["latency"]["total"]["p50"] >= extractive["latency"]["generate"]["p50"]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(record["answers"]["extractive"]["cited"] for record in records)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Answers by generator" in html
    assert "did not start" in html

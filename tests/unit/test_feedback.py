"""The feedback log and its export: SQLite round trips, eval lines, counts, the CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragserve.cli import app
from ragserve.errors import FeedbackError
from ragserve.eval.metrics import load_questions
from ragserve.feedback import (
    Feedback,
    FeedbackSource,
    FeedbackStore,
    eval_questions,
    feedback_path,
    feedback_stats,
    write_jsonl,
)

pytestmark = pytest.mark.unit

SCALING = "https://docs.example.org/serve/scaling.html#autoscaling"
HTTP = "https://docs.example.org/serve/http.html#streaming"


def verdict(
    question: str = "How do I autoscale?",
    rating: str = "up",
    *,
    source: str | None = None,
    at: float = 1.0,
    **extra: object,
) -> Feedback:
    return Feedback(
        rating=rating,  # type: ignore[arg-type]
        question=question,
        answer=f"Answer to {question} [1]",
        sources=(FeedbackSource(n=1, url=SCALING, title="Scaling", score=0.03),),
        correct_source=source,
        created_at=at,
        updated_at=at,
        **extra,  # type: ignore[arg-type]
    )


def test_records_survive_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    path = feedback_path(tmp_path)
    FeedbackStore(path).record(verdict(source=SCALING, comment="spot on", index_version="v3"))

    [stored] = FeedbackStore(path, create=False).all()

    assert stored.correct_source == SCALING
    assert stored.comment == "spot on"
    assert stored.index_version == "v3"
    assert stored.sources == (FeedbackSource(n=1, url=SCALING, title="Scaling", score=0.03),)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_recording_the_same_id_updates_the_verdict(tmp_path: Path) -> None:
    store = FeedbackStore(feedback_path(tmp_path))
    first = store.record(verdict(rating="up"))
    store.record(
        Feedback(
            rating="down",
            question=first.question,
            answer=first.answer,
            comment="wrong page",
            id=first.id,
            created_at=first.created_at,
        )
    )

    assert store.count() == 1
    updated = store.get(first.id)
    assert updated is not None
    assert (updated.rating, updated.comment) == ("down", "wrong page")


def test_reading_a_missing_log_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(FeedbackError, match=r"no feedback log at .*--data-dir"):
        FeedbackStore(feedback_path(tmp_path / "nowhere"), create=False).all()
    assert not (tmp_path / "nowhere").exists()


def test_export_keeps_marked_sources_and_approved_answers() -> None:
    exported = eval_questions(
        [
            verdict("How do I autoscale?", "up", source=SCALING),
            verdict("How do I stream?", "down", source=HTTP),
            verdict("What is Serve?", "up"),
            verdict("Why is it slow?", "down"),  # nothing to check against
        ]
    )

    by_question = {line["question"]: line for line in exported.lines}
    assert by_question["How do I autoscale?"]["source"] == SCALING
    assert by_question["How do I autoscale?"]["answer"] == "Answer to How do I autoscale? [1]"
    assert by_question["How do I stream?"]["source"] == HTTP
    assert "answer" not in by_question["How do I stream?"]  # a rejected answer is no reference
    assert by_question["What is Serve?"]["source"] == ""
    assert "Why is it slow?" not in by_question
    assert exported.without_reference == 1


def test_a_repeated_question_keeps_its_latest_verdict() -> None:
    exported = eval_questions(
        [
            verdict("How do I autoscale?", "up", source=HTTP, at=1.0),
            verdict("how do I  autoscale?", "up", source=SCALING, at=2.0),
        ]
    )

    assert [line["source"] for line in exported.lines] == [SCALING]
    assert exported.duplicates == 1


def test_exported_file_is_a_question_file_eval_reads(tmp_path: Path) -> None:
    exported = eval_questions([verdict(source=SCALING), verdict("What is Serve?", "up")])
    target = tmp_path / "out" / "feedback.jsonl"

    write_jsonl(exported.lines, target)

    questions = load_questions(target)
    assert [(q.question, q.source) for q in questions] == [
        ("How do I autoscale?", SCALING),
        ("What is Serve?", ""),
    ]
    assert questions[0].answer == "Answer to How do I autoscale? [1]"


def test_stats_count_ratings_versions_and_the_most_disliked_questions() -> None:
    stats = feedback_stats(
        [
            verdict("Why is it slow?", "down", index_version="v1"),
            verdict("Why is it slow?", "down", index_version="v2"),
            verdict("How do I autoscale?", "up", index_version="v2", comment="good"),
        ]
    )

    assert (stats["total"], stats["up"], stats["down"], stats["share_up"]) == (3, 1, 2, 0.333)
    assert stats["with_comment"] == 1
    assert stats["by_index_version"] == {"v1": {"up": 0, "down": 1}, "v2": {"up": 1, "down": 1}}
    assert stats["most_down"][0] == {"question": "Why is it slow?", "down": 2}


def test_cli_exports_and_counts(tmp_path: Path) -> None:
    store = FeedbackStore(feedback_path(tmp_path))
    store.record(verdict(source=SCALING))
    store.record(verdict("Why is it slow?", "down"))
    out_file = tmp_path / "questions.jsonl"
    runner = CliRunner()

    exported = runner.invoke(
        app, ["feedback", "export", "--data-dir", str(tmp_path), "--out", str(out_file)]
    )
    stats = runner.invoke(app, ["feedback", "stats", "--data-dir", str(tmp_path), "--json"])
    missing = runner.invoke(app, ["feedback", "stats", "--data-dir", str(tmp_path / "x")])

    assert exported.exit_code == 0, exported.output
    assert "wrote 1 question to" in exported.output
    assert "left out 1 thumbs-down" in exported.output
    assert json.loads(out_file.read_text())["source"] == SCALING
    assert stats.exit_code == 0
    assert json.loads(stats.output)["total"] == 2
    assert missing.exit_code == 1
    assert "no feedback log" in missing.output

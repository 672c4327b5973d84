"""``ragserve feedback``: what readers said about answers, as eval questions and counts.

``export`` writes the JSONL question file ``ragserve eval`` reads, so real
questions with the source a reader marked right (and the answer they
approved) become a regression set; ``stats`` shows the counts. Both read the
SQLite log ``ragserve serve`` writes under its data dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ragserve.commands.options import (
    ConfigOpt,
    DataDirOpt,
    JsonOpt,
    build_settings,
    fail,
    out,
)
from ragserve.errors import RagserveError
from ragserve.feedback import (
    Feedback,
    FeedbackStore,
    eval_questions,
    feedback_path,
    feedback_stats,
    write_jsonl,
)

app = typer.Typer(
    no_args_is_help=True,
    help="Readers' thumbs up/down from the web page: export as eval questions, or count.",
)


def _records(config: Path | None, data_dir: Path | None) -> tuple[Path, list[Feedback]]:
    settings = build_settings(config, **{"store.data_dir": data_dir})
    path = feedback_path(settings.store.data_dir)
    return path, FeedbackStore(path, create=False).all()


@app.command()
def export(
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="JSONL file to write (question, source, answer).")
    ],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write rated questions as a question file for `ragserve eval --questions FILE`."""
    try:
        path, records = _records(config, data_dir)
        exported = eval_questions(records)
        write_jsonl(exported.lines, out_file)
    except RagserveError as exc:
        raise fail(exc) from exc
    summary = {
        "feedback": len(records),
        "questions": len(exported.lines),
        "with_source": sum(1 for line in exported.lines if line["source"]),
        "with_answer": sum(1 for line in exported.lines if "answer" in line),
        "without_reference": exported.without_reference,
        "duplicates": exported.duplicates,
        "out": str(out_file),
        "log": str(path),
    }
    if as_json:
        out.print(json.dumps(summary), markup=False)
        return
    out.print(
        f"wrote {summary['questions']} question{'' if summary['questions'] == 1 else 's'} "
        f"to {out_file} "
        f"({summary['with_source']} with a marked source, {summary['with_answer']} with an "
        f"approved answer) from {summary['feedback']} verdicts",
        markup=False,
    )
    if exported.without_reference:
        out.print(
            f"  left out {exported.without_reference} thumbs-down verdicts with no marked source "
            "(nothing to check an answer against)",
            markup=False,
        )
    if exported.duplicates:
        out.print(f"  {exported.duplicates} repeated questions kept their latest verdict")
    out.print(f"  next: ragserve eval --questions {out_file}", markup=False)


@app.command()
def stats(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Count verdicts: thumbs up/down, comments, marked sources, per index version."""
    try:
        path, records = _records(config, data_dir)
    except RagserveError as exc:
        raise fail(exc) from exc
    summary = feedback_stats(records)
    if as_json:
        out.print(json.dumps({**summary, "log": str(path)}), markup=False)
        return
    _print_stats(summary)


def _print_stats(summary: dict[str, Any]) -> None:
    total = summary["total"]
    if not total:
        out.print("no feedback recorded yet")
        return
    out.print(
        f"[bold]{total}[/bold] verdicts: {summary['up']} up, {summary['down']} down "
        f"({summary['share_up']:.0%} up) · {summary['with_comment']} with a comment · "
        f"{summary['with_marked_source']} with a marked source"
    )
    for version, counts in summary["by_index_version"].items():
        out.print(f"  index {version}: {counts['up']} up, {counts['down']} down", markup=False)
    if summary["most_down"]:
        out.print("  most often marked down:")
        for item in summary["most_down"]:
            out.print(f"    {item['down']}× {item['question']}", markup=False)

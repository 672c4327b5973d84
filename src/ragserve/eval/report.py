"""A self-contained HTML report of an evaluation run, for people.

One file a person can open or mail: numbers first, then where retrieval fails
(by docs section, by k), then every question with its hits and misses linked
to the pages. Plots are matplotlib PNGs inlined as ``data:`` URIs, drawn on
``Figure`` objects directly (no pyplot), so rendering neither needs a display
nor changes the caller's matplotlib backend. Without matplotlib the report
still renders, with tables only and the install command.

The files of a run (``results.jsonl``, ``summary.json``, ``report.html``) are
written and read back here too, so the metrics module knows nothing of files
and nothing imports back into it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragserve.errors import ConfigError
from ragserve.eval.metrics import EvalResult, normalize_url, page_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1200px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 12px}
.sub{color:#59636e;margin:0 0 20px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:12px 16px;min-width:150px}
.card .v{font-size:26px;font-weight:600}.card .l{color:#59636e;font-size:12px}
.card.main{border-color:#0969da;border-width:2px}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:12px}
.tables{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
table.q td:nth-child(2){width:30%}table.q td:nth-child(3){width:22%}
.plots figure{margin:0;background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:8px}
.plots img{width:100%;height:auto;display:block}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
th,td{border:1px solid #d1d9e0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;position:sticky;top:0}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.miss td.hit{background:#ffebe9}tr.hit td.hit{background:#dafbe1}
.best{font-weight:700}
ol.urls{margin:0;padding-left:20px}
ol.urls li.match,ol.urls li.match a{font-weight:600;color:#1a7f37}
a{color:#0969da;text-decoration:none;word-break:break-all}a:hover{text-decoration:underline}
.note{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px}
label.filter{display:inline-block;margin:0 0 8px}
body.only-miss tr.hit{display:none}
details{margin:8px 0}
"""

_FILTER_JS = (
    "document.getElementById('only-miss').addEventListener('change',"
    "e=>document.body.classList.toggle('only-miss',e.target.checked));"
)


def render_html(result: EvalResult, sweep: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The whole report as one HTML string (UTF-8, no external resources)."""
    summary = result.summary()
    groups = section_hit_rates(result)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        "<title>ragserve evaluation</title>",
        f"<style>{_CSS}</style></head><body><main>",
        _header(result, summary),
        _cards(summary),
        _plots_html(result, groups),
        "<div class='tables'>",
        _summary_table(summary),
        _sections_table(groups, result.k),
        "</div>",
    ]
    if summary.get("answers"):
        parts.append(_answers_table(summary["answers"]))
    if sweep:
        parts.append(_sweep_table(sweep))
    parts.append(_unreachable_html(summary))
    parts.append(_questions_table(result))
    parts.append(f"</main><script>{_FILTER_JS}</script></body></html>")
    return "\n".join(parts)


# --- numbers --------------------------------------------------------------------------


def section_of(page: str, bases: Sequence[str]) -> str:
    """The top-level docs section of a page, e.g. ``serve`` for ``.../serve/x.html``."""
    for base in sorted(bases, key=len, reverse=True):
        if page.startswith(base):
            page = page[len(base) :]
            break
    page = page.lstrip("/")
    head, slash, _ = page.partition("/")
    return head if slash else "(top level)"


def _section_bases(result: EvalResult) -> list[str]:
    """Where section paths start: the prefix targets, else the pages' common folder."""
    pages = [r["reference_page"] for r in result.records if r["reference_page"]]
    bases = [target for target in result.source_prefix.values() if target]
    if any(page.startswith(base) for page in pages for base in bases):
        return bases
    absolute = [page for page in pages if "://" in page]
    if not absolute:
        return []
    folders = [page.split("/")[:-1] for page in absolute]
    common: list[str] = []
    for parts in zip(*folders, strict=False):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    return ["/".join(common) + "/"]


def section_hit_rates(result: EvalResult) -> list[dict[str, Any]]:
    """Hit rate at ``result.k`` per docs section, largest section first."""
    bases = _section_bases(result)
    by_section: dict[str, list[Mapping[str, Any]]] = {}
    for record in result.records:
        name = section_of(record["reference_page"], bases) if record["reference_page"] else "(none)"
        by_section.setdefault(name, []).append(record)
    rows = [
        {
            "section": name,
            "n": len(records),
            "hits": sum(bool(r["hit"]) for r in records),
            "hit_rate": sum(bool(r["hit"]) for r in records) / len(records),
            "section_hit_rate": sum(bool(r["section_hit"]) for r in records) / len(records),
        }
        for name, records in by_section.items()
    ]
    return sorted(rows, key=lambda row: (-row["n"], row["section"]))


def _interval(bounds: Sequence[float] | None) -> str:
    return "–" if not bounds else f"{bounds[0]:.3f} – {bounds[1]:.3f}"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ms(seconds: float) -> str:
    milliseconds = seconds * 1000
    return f"{milliseconds:.1f} ms" if milliseconds >= 1 else f"{milliseconds:.3f} ms"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# --- sections of the page -------------------------------------------------------------


def _header(result: EvalResult, summary: Mapping[str, Any]) -> str:
    meta = ", ".join(f"{_e(key)}={_e(value)}" for key, value in result.meta.items())
    generated = time.strftime("%Y-%m-%d %H:%M")
    return (
        "<h1>ragserve retrieval evaluation</h1>"
        f"<p class='sub'>{summary['n_questions']} questions · k={result.k} · "
        f"generated {generated}{' · ' + meta if meta else ''}</p>"
    )


def _cards(summary: Mapping[str, Any]) -> str:
    k = summary["k"]
    cards = [
        (f"retrieval score @{k}", _fmt(summary["retrieval_score"]), True),
        (f"section score @{k}", _fmt(summary["section_score"]), False),
        ("MRR", _fmt(summary["mrr"]), False),
    ]
    cards += [(f"recall@{n}", _fmt(value), False) for n, value in summary["recall_at"].items()]
    total = summary["latency"].get("total")
    if total:
        cards.append(("latency p50 / p95", f"{_ms(total['p50'])} / {_ms(total['p95'])}", False))
    if summary["unreachable"] is not None:
        cards.append(("pages not in index", str(summary["unreachable"]["count"]), False))
    return (
        "<div class='cards'>"
        + "".join(
            f"<div class='card{' main' if main else ''}'><div class='v'>{_e(value)}</div>"
            f"<div class='l'>{_e(label)}</div></div>"
            for label, value, main in cards
        )
        + "</div>"
    )


def _summary_table(summary: Mapping[str, Any]) -> str:
    rows = [
        ("questions", summary["n_questions"]),
        ("questions with a reference page", summary["n_with_source"]),
        (f"retrieval score @{summary['k']} (guide definition)", summary["retrieval_score"]),
        ("retrieval score, 95% bootstrap interval", _interval(summary.get("retrieval_score_ci95"))),
        (f"section score @{summary['k']}", summary["section_score"]),
        ("retrieval score, indexed pages only", summary["retrieval_score_reachable"]),
        (f"MRR (ranks 1..{summary['depth']})", summary["mrr"]),
    ]
    rows += [(f"recall@{n}", value) for n, value in summary["recall_at"].items()]
    versus = summary.get("vs_baseline")
    if versus:
        rows.append(("baseline retrieval score (same questions)", versus["baseline_score"]))
        rows.append(
            ("vs baseline: questions gained / lost", f"+{versus['gained']} / -{versus['lost']}")
        )
        rows.append(("vs baseline: sign test p", versus["sign_test_p"]))
    body = "".join(
        f"<tr><td>{_e(label)}</td><td class='n'>{_fmt(v)}</td></tr>" for label, v in rows
    )
    latency = "".join(
        f"<tr><td>{_e(stage)}</td><td class='n'>{stats['n']}</td>"
        + "".join(f"<td class='n'>{_ms(stats[key])}</td>" for key in ("mean", "p50", "p95", "p99"))
        + "</tr>"
        for stage, stats in summary["latency"].items()
    )
    return (
        "<div><h2>Summary</h2><table style='width:auto'><tr><th>metric</th><th>value</th></tr>"
        f"{body}</table></div><div><h2>Latency per stage</h2><table style='width:auto'><tr>"
        "<th>stage</th><th>n</th><th>mean</th><th>p50</th><th>p95</th><th>p99</th></tr>"
        f"{latency}</table></div>"
    )


def _sections_table(groups: Sequence[Mapping[str, Any]], k: int) -> str:
    rows = "".join(
        f"<tr><td>{_e(g['section'])}</td><td class='n'>{g['n']}</td><td class='n'>{g['hits']}</td>"
        f"<td class='n'>{_fmt(g['hit_rate'])}</td><td class='n'>{_fmt(g['section_hit_rate'])}</td>"
        "</tr>"
        for g in groups
    )
    return (
        f"<div><h2>By docs section (@{k})</h2><table style='width:auto'><tr><th>section</th>"
        "<th>questions</th><th>hits</th><th>retrieval score</th><th>section score</th></tr>"
        f"{rows}</table></div>"
    )


_ANSWER_COLUMNS = (
    ("answers", "n_answered"),
    ("token F1", "token_f1"),
    ("embedding similarity", "embedding_similarity"),
    ("citation precision", "citation_precision"),
    ("cites a valid source", "valid_citation_rate"),
    ("“I don't know”", "refusal_rate"),
    ("judge (1–5)", "judge_score"),
)


def _answers_table(answers: Mapping[str, Any]) -> str:
    """Generators side by side: same questions, same retrieved sources."""
    stages = ("generate", "total")
    head = "".join(f"<th>{_e(label)}</th>" for label, _ in _ANSWER_COLUMNS)
    head += "".join(f"<th>{stage} p50 / p95</th>" for stage in stages)
    rows = []
    for name, scores in answers["by_generator"].items():
        cells = "".join(f"<td class='n'>{_fmt(scores[key])}</td>" for _, key in _ANSWER_COLUMNS)
        for stage in stages:
            timing = scores["latency"].get(stage)
            cells += (
                f"<td class='n'>{_ms(timing['p50'])} / {_ms(timing['p95'])}</td>"
                if timing
                else "<td>–</td>"
            )
        failed = f" ({scores['n_failed']} failed)" if scores["n_failed"] else ""
        rows.append(f"<tr><td>{_e(name)}{_e(failed)}</td>{cells}</tr>")
    for name, reason in answers["not_started"].items():
        span = len(_ANSWER_COLUMNS) + len(stages)
        rows.append(
            f"<tr><td>{_e(name)}</td><td colspan='{span}'>did not start: {_e(reason)}</td></tr>"
        )
    judge = answers.get("judge") or "none"
    return (
        "<h2>Answers by generator</h2><p>Every generator answered from the same retrieved "
        f"sources. Similarity by {_e(answers.get('similarity_model'))}; judge: {_e(judge)}. "
        "Citation precision: share of cited sources on the reference page.</p>"
        f"<table style='width:auto'><tr><th>generator</th>{head}</tr>{''.join(rows)}</table>"
    )


def _sweep_table(sweep: Sequence[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in sweep:
        columns += [key for key in row if key not in columns]
    scores = [row.get("retrieval_score") for row in sweep]
    best = max((s for s in scores if isinstance(s, int | float)), default=None)
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        f"<tr class='{'best' if best is not None and row.get('retrieval_score') == best else ''}'>"
        + "".join(_sweep_cell(row.get(c)) for c in columns)
        + "</tr>"
        for row in sweep
    )
    return f"<h2>Sweep</h2><table><tr>{head}</tr>{body}</table>"


def _sweep_cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f"<td{' class=n' if numeric else ''}>{_e(_fmt(value))}</td>"


def _unreachable_html(summary: Mapping[str, Any]) -> str:
    unreachable = summary["unreachable"]
    if not unreachable or not unreachable["count"]:
        return ""
    items = "".join(
        f"<li>{_e(q['question'])} — {_link(q['source'])}</li>" for q in unreachable["questions"]
    )
    return (
        f"<h2>Reference pages not in the index ({unreachable['count']})</h2>"
        "<p>No retriever can find these; they still count as misses in the retrieval score, "
        f"as in the guide.</p><ul>{items}</ul>"
    )


def _link(url: str, text: str | None = None) -> str:
    if not url:
        return "<em>(none)</em>"
    return f"<a href='{_e(url)}' title='{_e(url)}'>{_e(text or url)}</a>"


def _shortener(result: EvalResult) -> Callable[[str], str]:
    """Link text without the common site prefix: ``serve/index.html#x`` reads better."""
    bases = sorted(_section_bases(result), key=len, reverse=True)

    def short(url: str) -> str:
        normalized = normalize_url(url, result.source_prefix)
        for base in bases:
            if normalized.startswith(base):
                return normalized[len(base) :].lstrip("/") or normalized
        return normalized

    return short


def _questions_table(result: EvalResult) -> str:
    with_answers = any(record.get("answers") for record in result.records)
    short = _shortener(result)
    rows = "".join(
        _question_row(number, record, result, short, with_answers)
        for number, record in enumerate(result.records, start=1)
    )
    answer_head = "<th>answers (F1 · similarity · judge)</th>" if with_answers else ""
    return (
        "<h2>Questions</h2><label class='filter'><input type='checkbox' id='only-miss'> "
        "show misses only</label><table class='q'><tr><th>#</th><th>question</th>"
        f"<th>reference</th><th>@{result.k}</th><th>section</th><th>rank</th>"
        f"<th>top {result.k} retrieved (reference page in green)</th>{answer_head}</tr>"
        f"{rows}</table>"
    )


def _question_row(
    number: int,
    record: Mapping[str, Any],
    result: EvalResult,
    short: Callable[[str], str],
    with_answers: bool,
) -> str:
    reference = record["reference_page"]
    items = []
    for url in record["retrieved"][: result.k]:
        is_match = (
            bool(reference) and page_of(normalize_url(url, result.source_prefix)) == reference
        )
        items.append(f"<li class='{'match' if is_match else ''}'>{_link(url, short(url))}</li>")
    status = "hit" if record["hit"] else "miss"
    answer_cells = ""
    if with_answers:
        answer_cells = f"<td>{_answer_cell(record.get('answers') or {})}</td>"
    source = record["source"]
    return (
        f"<tr class='{status}'><td class='n'>{number}</td><td>{_e(record['question'])}</td>"
        f"<td>{_link(source, short(source) if source else None)}</td>"
        f"<td class='hit'>{status}</td><td>{_fmt(record['section_hit'])}</td>"
        f"<td class='n'>{_fmt(record['rank'])}</td>"
        f"<td><ol class='urls'>{''.join(items)}</ol></td>{answer_cells}</tr>"
    )


def _answer_cell(answers: Mapping[str, Mapping[str, Any]]) -> str:
    items = []
    for name, graded in answers.items():
        if "error" in graded:
            items.append(
                f"<details><summary>{_e(name)}: failed</summary>{_e(graded['error'])}</details>"
            )
            continue
        scores = " · ".join(
            _fmt(graded.get(key), 2) for key in ("token_f1", "embedding_similarity", "judge_score")
        )
        items.append(
            f"<details><summary>{_e(name)} ({scores})</summary>{_e(graded['text'])}</details>"
        )
    return "".join(items)


# --- plots ----------------------------------------------------------------------------


def _plots_html(result: EvalResult, groups: Sequence[Mapping[str, Any]]) -> str:
    try:
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        return (
            "<p class='note'>Plots are left out because matplotlib is not installed. "
            "Install it with: <code>pip install 'ragserve[eval]'</code></p>"
        )
    images = [
        ("Retrieval score vs k", _plot_score_vs_k(result)),
        ("Retrieval score by docs section", _plot_sections(groups, result.k)),
        ("Latency per stage", _plot_latency(result)),
    ]
    figures = "".join(
        f"<figure><img alt='{_e(title)}' src='data:image/png;base64,{data}'></figure>"
        for title, data in images
        if data
    )
    return f"<h2>Plots</h2><div class='plots'>{figures}</div>"


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _new_figure(width: float = 5.6, height: float = 3.6) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _plot_score_vs_k(result: EvalResult) -> str:
    ks = list(range(1, result.depth + 1))
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.plot(ks, [result.hit_rate_at(k) for k in ks], marker="o", label="page (retrieval score)")
    axes.plot(
        ks,
        [result.hit_rate_at(k, section=True) for k in ks],
        marker="s",
        linestyle="--",
        label="section (anchor matches)",
    )
    axes.axvline(result.k, color="grey", linewidth=0.8, linestyle=":")
    axes.set(xlabel="k (chunks retrieved)", ylabel="share of questions hit", ylim=(0, 1.02))
    axes.set_title("Retrieval score vs k")
    axes.set_xticks(ks)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _png(figure)


def _plot_sections(groups: Sequence[Mapping[str, Any]], k: int) -> str:
    if not groups:
        return ""
    shown = list(reversed(groups))
    figure = _new_figure(height=max(2.4, 0.32 * len(shown) + 1.0))
    axes = figure.add_subplot()
    labels = [f"{g['section']} ({g['n']})" for g in shown]
    bars = axes.barh(labels, [g["hit_rate"] for g in shown], color="#0969da")
    axes.bar_label(bars, labels=[f"{g['hit_rate']:.2f}" for g in shown], padding=3, fontsize=9)
    axes.set(xlim=(0, 1.12), xlabel=f"retrieval score @{k}")
    axes.set_title("By docs section (questions)")
    axes.tick_params(axis="y", labelsize=9)
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def _plot_latency(result: EvalResult) -> str:
    by_stage: dict[str, list[float]] = {}
    for record in result.records:
        for stage, seconds in record["timings"].items():
            by_stage.setdefault(stage, []).append(seconds * 1000)
    if not by_stage:
        return ""
    figure = _new_figure()
    axes = figure.add_subplot()
    low = min(min(values) for values in by_stage.values())
    high = max(max(values) for values in by_stage.values())
    # Stages differ by orders of magnitude (embedding ~ms, LLM ~s): use log bins then.
    log_scale = low > 0 and high / low > 50
    bins: Any = 30
    if log_scale:
        bins = [low * (high / low) ** (step / 40) for step in range(41)]
        axes.set_xscale("log")
    for stage, values in by_stage.items():
        axes.hist(values, bins=bins, histtype="step", linewidth=1.5, label=stage)
    axes.set(xlabel="milliseconds" + (" (log scale)" if log_scale else ""), ylabel="questions")
    axes.set_title("Latency per stage")
    axes.grid(alpha=0.3)
    axes.legend()
    return _png(figure)


# --- result files ---------------------------------------------------------------------


def write_results(result: EvalResult, out_dir: Path) -> dict[str, Path]:
    """Write ``results.jsonl``, ``summary.json`` and ``report.html`` into ``out_dir``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "results": out_dir / "results.jsonl",
            "summary": out_dir / "summary.json",
            "report": out_dir / "report.html",
        }
        with paths["results"].open("w", encoding="utf-8") as handle:
            for record in result.records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        paths["summary"].write_text(
            json.dumps(result.summary(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        paths["report"].write_text(render_html(result), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"could not write evaluation results to {out_dir}: {exc}; pass a writable --out"
        ) from exc
    return paths


def load_result_records(path: Path) -> list[dict[str, Any]]:
    """The per-question records of an earlier ``ragserve eval --out`` (``results.jsonl``)."""
    if path.is_dir():
        path = path / "results.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"cannot read baseline results {path}: {exc}; pass the results.jsonl (or the "
            "--out folder) of an earlier `ragserve eval`"
        ) from exc
    if not all(isinstance(r, dict) and "question" in r and "hit" in r for r in records):
        raise ConfigError(f"{path} does not hold `ragserve eval` results (question, hit)")
    return records

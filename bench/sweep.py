"""Helpers for experiment sweeps: the grid of configurations and the results table.

Only the benchmarks use them (``bench/quality.py``), so they live beside them
rather than in the package. The sweep runner ingests once per index-shaping
configuration and evaluates each retrieval configuration against it; these
helpers stay free of that machinery so the grid and the README table are
trivially testable.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from ragserve.errors import ConfigError
from ragserve.eval.metrics import EvalResult


def sweep_grid(spec: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the parameter lists, the last parameter varying fastest.

    ``{"chunk_size": [256, 512], "mode": ["dense", "hybrid"]}`` gives four
    configurations in a stable order, so reruns line up row by row. A bare
    string or an empty list is refused: ``{"mode": "dense"}`` would otherwise
    sweep over the letters d, e, n, s, e.
    """
    for name, values in spec.items():
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise ConfigError(
                f"sweep parameter {name!r} must be a list of values, e.g. [{values!r}]"
            )
        if not values:
            raise ConfigError(f"sweep parameter {name!r} has no values; give at least one")
    names = list(spec)
    return [
        dict(zip(names, combination, strict=True))
        for combination in itertools.product(*(spec[name] for name in names))
    ]


def result_row(config: Mapping[str, Any], result: EvalResult) -> dict[str, Any]:
    """One flat sweep row: the configuration, then the scores worth comparing."""
    summary = result.summary()
    row: dict[str, Any] = dict(config)
    row["retrieval_score"] = summary["retrieval_score"]
    row["section_score"] = summary["section_score"]
    row["mrr"] = summary["mrr"]
    for k, recall in summary["recall_at"].items():
        row[f"recall@{k}"] = recall
    total = summary["latency"].get("total")
    if total:
        row["p50_ms"] = round(total["p50"] * 1000, 1)
        row["p95_ms"] = round(total["p95"] * 1000, 1)
    return row


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table of ``columns`` from ``rows``.

    Floats get three decimals, ``None`` a dash, a missing key an empty cell;
    columns whose values are all numbers are right-aligned.
    """
    if not columns:
        raise ConfigError("format_table needs at least one column")
    cells = [[_cell(row[c]) if c in row else "" for c in columns] for row in rows]
    numeric = [
        all(_is_number(row[c]) for row in rows if row.get(c) is not None)
        and any(_is_number(row.get(c)) for row in rows)
        for c in columns
    ]
    header = [_cell(c) for c in columns]
    widths = [
        max(len(header[i]), 3, *(len(line[i]) for line in cells)) for i in range(len(columns))
    ]
    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(w) if num else value.ljust(w)
            for value, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    return "\n".join([line(header), line(rule), *(line(values) for values in cells)]) + "\n"

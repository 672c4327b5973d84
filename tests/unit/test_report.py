"""The HTML report and the sweep helpers."""

from __future__ import annotations

import html.parser
import sys

import pytest
from bench.sweep import format_table, result_row, sweep_grid

from ragserve.errors import ConfigError
from ragserve.eval.metrics import EvalQuestion, EvalResult, Retrieved, evaluate_retrieval
from ragserve.eval.report import render_html, section_hit_rates

pytestmark = pytest.mark.unit

BASE = "https://docs.ray.io/en/master/"


def small_result() -> EvalResult:
    questions = [
        EvalQuestion("How does <Serve> scale?", BASE + "serve/scaling.html#autoscaling"),
        EvalQuestion("Read parquet?", BASE + "data/loading-data.html#parquet"),
        EvalQuestion("What is Ray?", ""),
    ]
    ranked = {
        "How does <Serve> scale?": [BASE + "serve/scaling.html#autoscaling", BASE + "serve/a.html"],
        "Read parquet?": [BASE + "data/other.html", BASE + "data/loading-data.html#csv"],
        "What is Ray?": [],
    }
    return evaluate_retrieval(
        questions,
        lambda q, n: Retrieved(ranked[q], {"embed": 0.004, "retrieve": 0.012}),
        k=1,
        ks=(1, 2),
        meta={"mode": "hybrid"},
    )


class _StrictParser(html.parser.HTMLParser):
    """Checks that every non-void element is closed in order."""

    VOID = frozenset({"meta", "img", "input", "br", "hr", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()


def assert_well_formed(page: str) -> None:
    parser = _StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.stack == []


def test_report_is_valid_html_with_numbers_and_embedded_plots() -> None:
    page = render_html(small_result())

    assert_well_formed(page)
    assert "0.667" in page  # retrieval score @1: serve hit + empty source
    assert "0.500" in page  # MRR: rank 1 for serve, none for data
    assert page.count("data:image/png;base64,") == 3
    assert "How does &lt;Serve&gt; scale?" in page
    assert f"href='{BASE}data/loading-data.html#parquet'" in page
    assert "mode=hybrid" in page


def test_report_without_matplotlib_has_tables_and_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)

    page = render_html(small_result())

    assert_well_formed(page)
    assert "data:image/png" not in page
    assert "pip install 'ragserve[eval]'" in page
    assert "0.667" in page


def test_sweep_rows_render_as_a_comparison_table() -> None:
    result = small_result()
    rows = [
        result_row({"mode": "dense", "chunk_size": 512}, result),
        {"mode": "sparse", "chunk_size": 512, "retrieval_score": 0.9},
    ]
    import ragserve.eval.report as report

    page = report._sweep_table(rows)

    assert "<h2>Sweep</h2>" in page
    assert "<tr class='best'><td>sparse</td>" in page


def test_section_hit_rates_group_by_top_level_docs_folder() -> None:
    groups = {g["section"]: g for g in section_hit_rates(small_result())}

    assert set(groups) == {"serve", "data", "(none)"}
    assert groups["serve"]["hit_rate"] == 1.0
    assert groups["data"]["hit_rate"] == 0.0


def test_sweep_grid_is_the_cartesian_product_in_stable_order() -> None:
    grid = sweep_grid({"chunk_size": [256, 512], "mode": ["dense", "hybrid"], "k": [5]})

    assert grid == [
        {"chunk_size": 256, "mode": "dense", "k": 5},
        {"chunk_size": 256, "mode": "hybrid", "k": 5},
        {"chunk_size": 512, "mode": "dense", "k": 5},
        {"chunk_size": 512, "mode": "hybrid", "k": 5},
    ]


@pytest.mark.parametrize("bad", [{"mode": "dense"}, {"k": []}])
def test_sweep_grid_refuses_strings_and_empty_lists(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="sweep parameter"):
        sweep_grid(bad)  # type: ignore[arg-type]


def test_format_table_is_markdown_with_numbers_right_aligned() -> None:
    table = format_table(
        [
            {"mode": "dense", "score": 0.52, "k": 5},
            {"mode": "hy|brid", "score": None, "k": 13},
        ],
        ["mode", "score", "k"],
    )

    assert table == (
        "| mode     | score |   k |\n"
        "| -------- | ----: | --: |\n"
        "| dense    | 0.520 |   5 |\n"
        "| hy\\|brid |     – |  13 |\n"
    )

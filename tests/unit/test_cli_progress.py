"""Ingest progress without a terminal: one readable line per interval on stderr."""

from __future__ import annotations

import time

import pytest

from ragserve.commands.ingest import _IngestProgress, progress_line


def test_progress_line_names_counts_rate_and_elapsed() -> None:
    line = progress_line({"pages": (812, None), "written": (5120, None)}, 125.0)
    assert line == "ingest: 812 pages, 5,120 chunks written (41.0/s), 2m05s elapsed"


def test_progress_line_gives_an_eta_when_a_total_is_known() -> None:
    line = progress_line({"written": (250, 1000)}, 60.0)
    assert line.endswith("ETA 3m00s")
    assert "250/1,000 chunks written" in line


def test_progress_line_before_anything_happened() -> None:
    assert progress_line({}, 0.5) == "ingest: starting, 0s elapsed"


def test_without_a_terminal_a_timer_prints_lines_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = _IngestProgress(enabled=False, interval_s=0.05)
    with progress:
        progress("pages", 3, None)
        progress("written", 40, None)
        time.sleep(0.3)  # no callback for a while: the timer still reports
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) >= 2
    assert lines[-1].startswith("ingest: 3 pages, 40 chunks written")


def test_a_long_interval_keeps_stderr_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    progress = _IngestProgress(enabled=False, interval_s=3600.0)
    with progress:
        progress("pages", 3, None)
    assert capsys.readouterr().err == ""


def test_bracketed_defaults_survive_rich_markup_in_help() -> None:
    """``[docs]`` in a help string is a rich style tag unless escaped: the default vanished."""
    from typer.testing import CliRunner

    from ragserve.cli import app

    result = CliRunner().invoke(app, ["ask", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Index name [docs]" in result.output
    assert "[extractive]" in result.output
    assert "[all-MiniLM-L6-v2]" in result.output

"""``ragserve refresh`` as cron runs it: exit codes, the JSON summary, the live version kept."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support.index import build_index

from ragserve.store import versions as index_versions
from ragserve.store.edge import EdgeStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUESTIONS = (
    Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "serve-sample-questions.jsonl"
)


def ragserve(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "ragserve.cli", *args, "--data-dir", str(data_dir)],
        cwd=data_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def last_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def live_points(data_dir: Path) -> tuple[str | None, int]:
    store = EdgeStore(data_dir, "docs")
    try:
        return store.live_version(), store.count()
    finally:
        store.close()


def test_an_unreachable_source_fails_and_keeps_the_live_version(tmp_path: Path) -> None:
    data_dir = tmp_path / "index"
    build_index(data_dir)
    before = live_points(data_dir)

    result = ragserve(
        "refresh", "http://127.0.0.1:1/docs/", "--allow-private", "--json", data_dir=data_dir
    )

    assert result.returncode == 1
    assert "live version v1 stays live" in result.stderr
    assert last_json(result)["live_version"] == "v1"
    assert live_points(data_dir) == before
    assert EdgeStore(data_dir, "docs").version_names() == ["v1"]  # no draft left behind


def test_a_missing_gate_file_is_a_usage_error_before_any_work(tmp_path: Path) -> None:
    data_dir = tmp_path / "index"
    build_index(data_dir)

    result = ragserve(
        "refresh", str(tmp_path), "--eval", str(tmp_path / "nope.jsonl"), data_dir=data_dir
    )

    assert result.returncode == 2
    assert "nope.jsonl does not exist" in result.stderr


def test_a_second_refresh_while_one_runs_exits_5_and_changes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "index"
    build_index(data_dir)
    before = live_points(data_dir)

    with index_versions.build_lock(data_dir, "docs"):
        result = ragserve("refresh", str(tmp_path), "--json", data_dir=data_dir)

    assert result.returncode == 5
    assert "is running" in result.stderr
    assert live_points(data_dir) == before


def test_refresh_gates_switches_and_prunes(small_corpus: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "index"
    common = ("--base-url", "https://docs.ray.io/en/master/", "--json")
    first = ragserve("refresh", str(small_corpus), *common, data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    assert last_json(first)["live_version"] == "v1"

    page = small_corpus / "serve" / "architecture.html"
    html = page.read_text(encoding="utf-8")
    page.write_text(re.sub(r"(<h1[^>]*>)", r"\1Zanzibar quokka ", html, count=1), "utf-8")
    gate = ("--eval", str(QUESTIONS))
    failed = ragserve(
        "refresh", str(small_corpus), *common, *gate, "--min-score", "1.01", data_dir=data_dir
    )
    assert failed.returncode == 4, failed.stderr
    summary = last_json(failed)
    assert summary["live_version"] == "v1"
    assert summary["version"] == "v2"
    assert "v1 stays live" in failed.stderr
    assert Path(summary["gate"]["report"]).is_file()
    assert live_points(data_dir)[0] == "v1"

    passed = ragserve(
        "refresh", str(small_corpus), *common, *gate, "--min-score", "0", data_dir=data_dir
    )
    assert passed.returncode == 0, passed.stderr
    summary = last_json(passed)
    assert summary["live_version"] == "v3"
    assert summary["pruned"] == ["v2"]  # keeps the live one and the good one before it
    listed = ragserve("index", "list", "--json", data_dir=data_dir)
    rows = json.loads(listed.stdout)
    assert [(row["name"], row["live"]) for row in rows] == [("v1", False), ("v3", True)]
    assert rows[1]["eval_score"] == summary["gate"]["retrieval_score"]

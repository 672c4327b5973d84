"""The evaluation package imports without a cycle, each module on its own.

A cycle between two modules of ``ragserve.eval`` shows up as an ImportError
(or a half-initialised module) only for the import order that hits it, so
every module is imported first in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

MODULES = ["statistics", "grading", "answers", "metrics", "report", "run"]


@pytest.mark.parametrize("name", MODULES)
def test_each_eval_module_imports_first_in_a_fresh_interpreter(name: str) -> None:
    module = f"ragserve.eval.{name}"
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_metrics_and_report_stay_free_of_the_query_path() -> None:
    """Scoring a results file must not start torch, Ray or a store client."""
    code = (
        "import sys, ragserve.eval.metrics, ragserve.eval.report; "
        "heavy = [m for m in ('ray', 'torch', 'qdrant_client', 'qdrant_edge', 'ragserve.agent') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == ""

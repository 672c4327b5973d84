"""The refresh gate: evaluate a new index version before it goes live.

``ragserve ingest --eval FILE --min-score X [--max-drop D]`` and ``ragserve
refresh`` hand a ``Gate`` to ``run_ingest``; it runs the question set against
the finished but unpublished version (exactly what ``ragserve eval`` would
measure once it is live), writes the report next to the index, and says
whether the version may be switched in.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragserve.agent import QueryAgent
from ragserve.config import Settings
from ragserve.errors import ConfigError
from ragserve.eval.report import write_results
from ragserve.store.base import VectorStore


@dataclass(frozen=True)
class Gate:
    """A question set and the scores a new version must reach.

    ``max_drop`` is relative: the new version fails when its retrieval score
    falls more than that below ``live_score`` (the live version's recorded
    gate score; without one only ``min_score`` applies, and the outcome says so).
    """

    settings: Settings
    questions_file: Path
    report_root: Path
    min_score: float | None = None
    max_drop: float | None = None
    live_score: float | None = None
    source_prefix: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.questions_file.is_file():
            raise ConfigError(
                f"the gate's question set {self.questions_file} does not exist; pass a JSONL "
                f"file of questions to --eval (see `ragserve eval --help`)"
            )

    def __call__(self, version: VectorStore) -> dict[str, Any]:
        """Evaluate ``version`` (not yet live); the outcome ``run_ingest`` records."""
        from ragserve.eval.run import run_eval

        agent = QueryAgent(self.settings, store=version)
        try:
            result = run_eval(
                self.settings, self.questions_file, source_prefix=self.source_prefix, agent=agent
            )
        finally:
            agent.close()
        report_dir = self.report_root / f"{version.name}-{version.version}"
        paths = write_results(result, report_dir)
        score = float(result.summary()["retrieval_score"])
        reasons = self.failures(score)
        notes = []
        if self.max_drop is not None and self.live_score is None:
            notes.append("the live version has no recorded score: --max-drop was not applied")
        return {
            "passed": not reasons,
            "retrieval_score": score,
            "min_score": self.min_score,
            "max_drop": self.max_drop,
            "live_score": self.live_score,
            "reasons": reasons,
            "notes": notes,
            "report": str(paths["report"]),
            "questions": str(self.questions_file),
            "evaluated_at": time.time(),
        }

    def failures(self, score: float) -> list[str]:
        """Why ``score`` may not go live (empty when it may)."""
        reasons = []
        if self.min_score is not None and score < self.min_score:
            reasons.append(f"retrieval score {score:.3f} < --min-score {self.min_score}")
        floor = (
            self.live_score - self.max_drop
            if self.max_drop is not None and self.live_score is not None
            else None
        )
        if floor is not None and self.live_score is not None and score < floor:
            reasons.append(
                f"retrieval score {score:.3f} is {self.live_score - score:.3f} below the "
                f"live version's {self.live_score:.3f} (--max-drop {self.max_drop})"
            )
        return reasons

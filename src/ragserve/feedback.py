"""Readers' verdicts on answers, kept in a small SQLite file beside the index.

The web page posts a thumbs up or down (and optionally a comment and the
source that really answered) for each answer; ``ragserve feedback export``
turns them into the JSONL question file ``ragserve eval`` reads, so the
questions people actually ask become a regression set. SQLite, not Qdrant:
this is an append-mostly log that must survive re-ingests and ``--recreate``,
and one file under the data dir is easy to back up. Writes are synchronous
(``synchronous=FULL`` in WAL mode), so a stored verdict survives a crash.

Each record has a random id the client gets back; sending it again with a
comment or a marked source updates that record instead of adding a second
verdict. The id is unguessable, so one reader cannot rewrite another's.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragserve.errors import FeedbackError

Rating = Literal["up", "down"]

FEEDBACK_FILE = "feedback.sqlite3"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    comment TEXT,
    correct_source TEXT,
    sources TEXT NOT NULL,
    index_version TEXT,
    request_id TEXT,
    model TEXT,
    client TEXT
);
CREATE INDEX IF NOT EXISTS feedback_created ON feedback (created_at);
"""
_COLUMNS = (
    "id, created_at, updated_at, rating, question, answer, comment, correct_source, "
    "sources, index_version, request_id, model, client"
)


@dataclass(frozen=True, slots=True)
class FeedbackSource:
    """A citation as the reader saw it (no snippet: the URL identifies it)."""

    n: int
    url: str
    title: str = ""
    score: float | None = None


@dataclass(frozen=True, slots=True)
class Feedback:
    """One verdict on one answer."""

    rating: Rating
    question: str
    answer: str
    sources: tuple[FeedbackSource, ...] = ()
    comment: str | None = None
    #: The section URL the reader marked as the one that answers the question.
    correct_source: str | None = None
    index_version: str | None = None
    request_id: str | None = None
    model: str | None = None
    #: The caller's non-secret key id (or ``ip-…``), as the rate limiter knows it.
    client: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


def feedback_path(data_dir: Path) -> Path:
    """Where the feedback log of the index under ``data_dir`` lives."""
    return data_dir / FEEDBACK_FILE


class FeedbackStore:
    """The feedback log; one short-lived connection per call, so it is thread-safe.

    ``create=False`` refuses to make a new file: readers (export, stats) must
    not conjure an empty log out of a mistyped ``--data-dir``.
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self._create = create
        self._ready = False

    def record(self, feedback: Feedback) -> Feedback:
        """Store ``feedback``; an existing id is updated (its created_at is kept)."""
        row = _to_row(feedback)
        with self._connect() as db:
            db.execute(
                f"INSERT INTO feedback ({_COLUMNS}) VALUES ({', '.join('?' * len(row))}) "
                "ON CONFLICT(id) DO UPDATE SET updated_at=excluded.updated_at, "
                "rating=excluded.rating, question=excluded.question, answer=excluded.answer, "
                "comment=excluded.comment, correct_source=excluded.correct_source, "
                "sources=excluded.sources, index_version=excluded.index_version, "
                "request_id=excluded.request_id, model=excluded.model, client=excluded.client",
                row,
            )
        return feedback

    def get(self, feedback_id: str) -> Feedback | None:
        with self._connect() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM feedback WHERE id = ?", (feedback_id,)
            ).fetchone()
        return _from_row(row) if row else None

    def all(self) -> list[Feedback]:
        """Every record, oldest first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM feedback ORDER BY created_at, id").fetchall()
        return [_from_row(row) for row in rows]

    def count(self) -> int:
        with self._connect() as db:
            total: int = db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        return total

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._create and not self.path.is_file():
            raise FeedbackError(
                f"no feedback log at {self.path}; feedback is recorded by `ragserve serve` "
                "under its data dir (pass the same --data-dir)"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise FeedbackError(
                f"the feedback log {self.path} cannot be opened ({exc}); check that the data "
                "dir is writable"
            ) from exc
        try:
            if not self._ready:
                _prepare(db, self.path)
                self._ready = True
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise FeedbackError(
                f"the feedback log {self.path} failed ({exc}); check the disk and the file"
            ) from exc
        finally:
            db.close()


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > _SCHEMA_VERSION:
        raise FeedbackError(
            f"the feedback log {path} was written by a newer ragserve (schema {version}); "
            "upgrade ragserve to read it"
        )
    db.executescript(_SCHEMA)
    db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")


def _to_row(feedback: Feedback) -> tuple[Any, ...]:
    sources = json.dumps(
        [{"n": s.n, "url": s.url, "title": s.title, "score": s.score} for s in feedback.sources],
        ensure_ascii=False,
    )
    return (
        feedback.id,
        feedback.created_at,
        feedback.updated_at,
        feedback.rating,
        feedback.question,
        feedback.answer,
        feedback.comment,
        feedback.correct_source,
        sources,
        feedback.index_version,
        feedback.request_id,
        feedback.model,
        feedback.client,
    )


def _from_row(row: Sequence[Any]) -> Feedback:
    sources = tuple(
        FeedbackSource(
            n=int(item["n"]),
            url=str(item["url"]),
            title=str(item.get("title") or ""),
            score=item.get("score"),
        )
        for item in json.loads(row[8])
    )
    return Feedback(
        id=row[0],
        created_at=row[1],
        updated_at=row[2],
        rating=row[3],
        question=row[4],
        answer=row[5],
        comment=row[6],
        correct_source=row[7],
        sources=sources,
        index_version=row[9],
        request_id=row[10],
        model=row[11],
        client=row[12],
    )


# -- export and stats (pure) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Export:
    """Eval question lines, and how many verdicts gave nothing to check against."""

    lines: list[dict[str, Any]]
    without_reference: int
    duplicates: int


def eval_questions(records: Sequence[Feedback]) -> Export:
    """Verdicts → lines of the question file ``ragserve eval`` reads.

    ``source`` is the section the reader marked as right ("" when none was:
    eval then scores only the answer); ``answer`` is the answer they approved
    (thumbs up). A thumbs down with no marked source holds no reference at
    all and is left out. A question asked again keeps its latest verdict, so
    the set does not weigh popular questions twice.
    """
    latest: dict[str, Feedback] = {}
    without_reference = duplicates = 0
    for record in records:
        if record.correct_source is None and record.rating != "up":
            without_reference += 1
            continue
        key = " ".join(record.question.lower().split())
        if key in latest:
            duplicates += 1
            if latest[key].updated_at > record.updated_at:
                continue
        latest[key] = record
    lines = []
    for record in sorted(latest.values(), key=lambda item: item.created_at):
        line: dict[str, Any] = {
            "question": record.question,
            "source": record.correct_source or "",
        }
        if record.rating == "up":
            line["answer"] = record.answer
        line["feedback_id"] = record.id
        line["rating"] = record.rating
        lines.append(line)
    return Export(lines=lines, without_reference=without_reference, duplicates=duplicates)


def write_jsonl(lines: Sequence[dict[str, Any]], path: Path) -> None:
    """Write lines atomically (temp file + rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8"
    )
    partial.replace(path)


def feedback_stats(records: Sequence[Feedback], *, worst: int = 5) -> dict[str, Any]:
    """Counts a maintainer looks at first: share of thumbs up, per index version,
    and the questions most often marked down."""
    ratings = Counter(record.rating for record in records)
    by_version: dict[str, Counter[str]] = {}
    for record in records:
        by_version.setdefault(record.index_version or "unknown", Counter())[record.rating] += 1
    down = Counter(
        " ".join(record.question.split()) for record in records if record.rating == "down"
    )
    total = len(records)
    return {
        "total": total,
        "up": ratings["up"],
        "down": ratings["down"],
        "share_up": round(ratings["up"] / total, 3) if total else None,
        "with_comment": sum(1 for record in records if record.comment),
        "with_marked_source": sum(1 for record in records if record.correct_source),
        "first_at": min((record.created_at for record in records), default=None),
        "last_at": max((record.updated_at for record in records), default=None),
        "by_index_version": {
            version: {"up": counts["up"], "down": counts["down"]}
            for version, counts in sorted(by_version.items())
        },
        "most_down": [
            {"question": question, "down": count} for question, count in down.most_common(worst)
        ],
    }


__all__ = [
    "FEEDBACK_FILE",
    "Export",
    "Feedback",
    "FeedbackSource",
    "FeedbackStore",
    "Rating",
    "eval_questions",
    "feedback_path",
    "feedback_stats",
    "write_jsonl",
]

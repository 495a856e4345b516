"""Answers: the served study's SQLite store, and answers exported from any other survey tool as CSV.

``<study>/answers.sqlite``::

    meta(name TEXT PRIMARY KEY, value TEXT)             -- format, sheets_sha256 of the study it belongs to
    answers(participant TEXT, sheet INTEGER, question INTEGER,
            choice TEXT CHECK (choice IN ('left', 'right')),
            answered_at TEXT,                            -- UTC, ISO 8601, server clock
            elapsed_ms INTEGER,                          -- time the pair was on screen (page clock), may be NULL
            PRIMARY KEY (participant, question))         -- a question cannot be answered twice

Every answer is its own committed transaction with ``synchronous=FULL``, so an acknowledged answer survives a
crash or power cut.
"""

from __future__ import annotations

import csv
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from blindbench.errors import BlindbenchError
from blindbench.study.sheets import SIDES, Study

ANSWERS_NAME = "answers.sqlite"
STORE_FORMAT = "blindbench-study-answers/1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    participant TEXT NOT NULL,
    sheet INTEGER NOT NULL,
    question INTEGER NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right')),
    answered_at TEXT NOT NULL,
    elapsed_ms INTEGER,
    PRIMARY KEY (participant, question)
);
"""


class AnswerError(BlindbenchError):
    """An answer the store refuses; ``status`` is the HTTP status the page gets."""

    status = 400


class UnknownParticipant(AnswerError):
    status = 404


class UnknownQuestion(AnswerError):
    status = 404


class DuplicateAnswer(AnswerError):
    status = 409


@dataclass(frozen=True)
class Answer:
    """One answer: a participant (or "" for exported answers without one) picked a side of a question."""

    participant: str
    sheet: int
    question: int
    choice: str  # "left" or "right"


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)  # autocommit: one statement, one commit
    connection.execute("PRAGMA synchronous = FULL")
    return connection


class AnswerStore:
    """The answers of one served study; safe to use from many threads (one connection per call)."""

    def __init__(self, study: Study, path: str | os.PathLike[str] | None = None) -> None:
        self.study = study
        self.path = Path(path) if path else study.root / ANSWERS_NAME
        self._questions = {(q.sheet, q.question) for q in study.questions}
        try:
            with closing(_connect(self.path)) as db:
                db.executescript(_SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (STORE_FORMAT,))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('sheets_sha256', ?)", (study.sheets_sha256,))
                recorded = dict(db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise BlindbenchError(f"cannot open answer store {self.path}: {exc}") from None
        if recorded.get("sheets_sha256") != study.sheets_sha256:
            raise BlindbenchError(f"answer store {self.path} belongs to other sheets; move it away or use its study")

    def sheet_of(self, participant: str) -> int:
        if participant not in self.study.participants:
            raise UnknownParticipant(f"unknown participant id {participant!r}")
        return self.study.participants[participant]

    def answered(self, participant: str) -> set[int]:
        """Question numbers ``participant`` has answered."""
        self.sheet_of(participant)
        with closing(_connect(self.path)) as db:
            rows = db.execute("SELECT question FROM answers WHERE participant = ?", (participant,)).fetchall()
        return {int(q) for (q,) in rows}

    def record(self, participant: str, question: int, choice: str, elapsed_ms: int | None = None) -> Answer:
        """Store one answer durably.

        Raises:
            UnknownParticipant, UnknownQuestion, AnswerError (bad choice), DuplicateAnswer.
        """
        sheet = self.sheet_of(participant)
        if isinstance(question, bool) or not isinstance(question, int) or (sheet, question) not in self._questions:
            raise UnknownQuestion(f"sheet {sheet} has no question {question!r}")
        if choice not in SIDES:
            raise AnswerError(f"choice must be 'left' or 'right', got {choice!r}")
        if elapsed_ms is not None and (isinstance(elapsed_ms, bool) or not isinstance(elapsed_ms, int)):
            elapsed_ms = None
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        try:
            with closing(_connect(self.path)) as db:
                db.execute(
                    "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                    (participant, sheet, question, choice, stamp, elapsed_ms),
                )
        except sqlite3.IntegrityError:
            raise DuplicateAnswer(f"participant {participant} already answered question {question}") from None
        return Answer(participant, sheet, question, choice)

    def all(self) -> list[Answer]:
        return read_answer_store(self.path)


def read_answer_store(path: str | os.PathLike[str]) -> list[Answer]:
    """Every answer in a store, ordered by participant, sheet and question (opened read-only)."""
    path = Path(path)
    if not path.is_file():
        raise BlindbenchError(f"no answers: {path} not found (serve the study, or give an exported CSV)")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT participant, sheet, question, choice FROM answers ORDER BY participant, sheet, question"
            ).fetchall()
    except sqlite3.Error as exc:
        raise BlindbenchError(f"cannot read answer store {path}: {exc}") from None
    return [Answer(str(p), int(s), int(q), str(c)) for p, s, q, c in rows]


_CHOICES = {"left": "left", "l": "left", "right": "right", "r": "right"}


def read_answers_csv(path: str | os.PathLike[str]) -> list[Answer]:
    """Answers exported from another survey tool: CSV with columns sheet, question, choice (left/right, l/r).

    An optional ``participant`` column lets the same question appear once per participant; without it every
    row counts as one answer.

    Raises:
        BlindbenchError: naming the file and line of the first bad row.
    """
    path = Path(path)
    if not path.is_file():
        raise BlindbenchError(f"answers CSV not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = {name.strip().lower(): name for name in reader.fieldnames or []}
            missing = [c for c in ("sheet", "question", "choice") if c not in fields]
            if missing:
                raise BlindbenchError(f"answers CSV {path} lacks column(s) {', '.join(missing)}")
            answers, seen = [], set()
            for line, row in enumerate(reader, start=2):
                choice = _CHOICES.get(str(row[fields["choice"]]).strip().lower())
                try:
                    sheet, question = int(row[fields["sheet"]]), int(row[fields["question"]])
                except (TypeError, ValueError):
                    sheet = question = None
                if choice is None or sheet is None:
                    raise BlindbenchError(f"{path} line {line}: need integer sheet and question, choice left/right")
                participant = str(row[fields["participant"]]).strip() if "participant" in fields else ""
                if participant and (participant, sheet, question) in seen:
                    raise BlindbenchError(f"{path} line {line}: {participant} answered sheet {sheet} q{question} twice")
                seen.add((participant, sheet, question))
                answers.append(Answer(participant, sheet, question, choice))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BlindbenchError(f"cannot read answers CSV {path}: {exc}") from None
    return answers

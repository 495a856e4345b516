"""Answers: the served study's SQLite store, and answers exported from any other survey tool as CSV.

``<study>/answers.sqlite``::

    meta(name TEXT PRIMARY KEY, value TEXT)             -- format, study_id and sheets_sha256 of its study
    answers(participant TEXT, sheet INTEGER, question INTEGER,
            choice TEXT CHECK (choice IN ('left', 'right')),
            answered_at TEXT,                            -- UTC, ISO 8601, server clock
            elapsed_ms INTEGER,                          -- time the pair was on screen (page clock), may be NULL
            PRIMARY KEY (participant, question))         -- a question cannot be answered twice

Every answer is its own committed transaction with ``synchronous=FULL``, so an acknowledged answer survives a
crash or power cut.

Scoring trusts neither source: a store of another study is refused, the store is opened read-only (a crashed
server's hot journal is rolled back on a copy, never in the study folder), and every row is checked (a known
participant, on their own sheet, a question of that sheet, ``left`` or ``right``, once). Rows that fail are
left out and counted by reason (:class:`Checked`).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from blindbench.errors import BlindbenchError
from blindbench.study.sheets import SIDES, Study, load_study

ANSWERS_NAME = "answers.sqlite"
STORE_FORMAT = "blindbench-study-answers/2"  # /1 had no study id
ELAPSED_MS_MAX = 2**63 - 1  # SQLite INTEGER; a larger int raises OverflowError in sqlite3
# Why a row is left out of the score, in the order the checks run (a row gets the first that fails).
REJECT_REASONS = (
    "unknown participant",
    "bad sheet",
    "bad question",
    "wrong sheet",
    "unknown question",
    "bad choice",
    "duplicate",
)
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
_LEFTOVERS = ("-journal", "-wal", "-shm")  # what a killed SQLite writer can leave next to the database


class AnswerError(BlindbenchError):
    """An answer the store refuses; ``status`` is the HTTP status the page gets."""

    status = 400


class UnknownParticipant(AnswerError):
    status = 404


class UnknownQuestion(AnswerError):
    status = 404


class DuplicateAnswer(AnswerError):
    status = 409


class StoreFailure(AnswerError):
    """The store could not be written (disk full, read-only, locked)."""

    status = 503


@dataclass(frozen=True)
class Answer:
    """One answer: a participant (or "" for exported answers without one) picked a side of a question."""

    participant: str
    sheet: int
    question: int
    choice: str  # "left" or "right"


@dataclass(frozen=True)
class Checked:
    """Answers that passed every check, and how many rows were left out, by reason (:data:`REJECT_REASONS`)."""

    answers: list[Answer]
    where: Path
    total: int  # rows read
    rejected: Counter[str] = field(default_factory=Counter)

    def report(self) -> str:
        """One line saying what was left out ("" when nothing was)."""
        n = sum(self.rejected.values())
        if not n:
            return ""
        parts = ", ".join(f"{count} {reason}" for reason, count in sorted(self.rejected.items(), key=_by_count))
        return f"rejected {n} answer rows of {self.total} in {self.where}: {parts}; scored the other {self.total - n}"


def _by_count(item: tuple[str, int]) -> tuple[int, int]:
    return -item[1], REJECT_REASONS.index(item[0])


def _short(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error reply stays one short line."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # a deeply nested JSON value, an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)  # autocommit: one statement, one commit
    connection.execute("PRAGMA synchronous = FULL")
    return connection


def _other_study(path: Path, recorded: object, study: Study) -> BlindbenchError:
    return BlindbenchError(
        f"answer store {path} belongs to study {_short(recorded)}, not {study.study_id} (study.json): "
        "the answers of another study; move it away or use its study"
    )


class AnswerStore:
    """The answers of one served study; safe to use from many threads (one connection per call)."""

    def __init__(self, study: Study, path: str | os.PathLike[str] | None = None) -> None:
        self.study = study
        self.path = Path(path) if path else study.root / ANSWERS_NAME
        self._questions = {(q.sheet, q.question) for q in study.questions}
        own = {"format": STORE_FORMAT, "study_id": study.study_id, "sheets_sha256": study.sheets_sha256}
        try:
            with closing(_connect(self.path)) as db:
                db.executescript(_SCHEMA)
                recorded = dict(db.execute("SELECT name, value FROM meta").fetchall())
                # A store is stamped only while it is empty: stamping one with answers would adopt them.
                if not recorded and db.execute("SELECT 1 FROM answers LIMIT 1").fetchone() is None:
                    db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", own.items())
                    recorded = dict(db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise BlindbenchError(f"cannot open answer store {self.path}: {exc}") from None
        if recorded.get("study_id") != study.study_id:
            raise _other_study(self.path, recorded.get("study_id"), study)
        if recorded.get("sheets_sha256") != study.sheets_sha256:
            raise BlindbenchError(f"answer store {self.path} belongs to other sheets; move it away or use its study")

    def sheet_of(self, participant: str) -> int:
        if participant not in self.study.participants:
            raise UnknownParticipant(f"unknown participant id {_short(participant)}")
        return self.study.participants[participant]

    def answered(self, participant: str) -> set[int]:
        """Question numbers ``participant`` has answered."""
        self.sheet_of(participant)
        try:
            with closing(_connect(self.path)) as db:
                rows = db.execute("SELECT question FROM answers WHERE participant = ?", (participant,)).fetchall()
        except sqlite3.Error as exc:
            raise StoreFailure(f"cannot read answer store {self.path}: {exc}") from None
        return {int(q) for (q,) in rows}

    def record(self, participant: str, question: int, choice: str, elapsed_ms: int | None = None) -> Answer:
        """Store one answer durably.

        Raises:
            UnknownParticipant, UnknownQuestion, AnswerError (bad choice or elapsed_ms), DuplicateAnswer,
            StoreFailure.
        """
        sheet = self.sheet_of(participant)
        if isinstance(question, bool) or not isinstance(question, int) or (sheet, question) not in self._questions:
            raise UnknownQuestion(f"sheet {sheet} has no question {_short(question)}")
        if choice not in SIDES:
            raise AnswerError(f"choice must be 'left' or 'right', got {_short(choice)}")
        if elapsed_ms is not None and (type(elapsed_ms) is not int or not 0 <= elapsed_ms <= ELAPSED_MS_MAX):
            raise AnswerError(
                f"elapsed_ms must be whole milliseconds from 0 to {ELAPSED_MS_MAX}, got {_short(elapsed_ms)}"
            )
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        try:
            with closing(_connect(self.path)) as db:
                db.execute(
                    "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                    (participant, sheet, question, choice, stamp, elapsed_ms),
                )
        except sqlite3.IntegrityError:
            raise DuplicateAnswer(f"participant {participant} already answered question {question}") from None
        except sqlite3.Error as exc:
            raise StoreFailure(f"cannot store the answer in {self.path}: {exc}") from None
        return Answer(participant, sheet, question, choice)

    def all(self) -> list[Answer]:
        return read_answer_store(self.path, self.study)


# ------------------------------------------------------------------------------------------------------ checking


def check_answers(
    rows: Iterable[tuple[object, object, object, object]], study: Study, where: Path, anonymous: bool = False
) -> Checked:
    """Keep the rows (participant, sheet, question, choice) that are real answers to ``study``, first one wins.

    Values are taken as they are: a sheet or question must be an ``int``, a choice exactly ``left`` or
    ``right``. With ``anonymous``, participant "" is allowed (exported answers without a participant column);
    such rows cannot be told apart, so they are never duplicates.
    """
    questions = {(q.sheet, q.question) for q in study.questions}
    answers: list[Answer] = []
    rejected: Counter[str] = Counter()
    seen: set[tuple[str, int]] = set()
    total = 0
    for participant, sheet, question, choice in rows:
        total += 1
        known = isinstance(participant, str) and participant in study.participants
        if not known and not (anonymous and participant == ""):
            reason = "unknown participant"
        elif type(sheet) is not int:
            reason = "bad sheet"
        elif type(question) is not int:
            reason = "bad question"
        elif known and study.participants[participant] != sheet:
            reason = "wrong sheet"  # another sheet's answers under this participant
        elif (sheet, question) not in questions:
            reason = "unknown question"
        elif not isinstance(choice, str) or choice not in SIDES:
            reason = "bad choice"
        elif known and (participant, question) in seen:
            reason = "duplicate"
        else:
            if known:
                seen.add((participant, question))
            answers.append(Answer(participant, sheet, question, choice))
            continue
        rejected[reason] += 1
    answers.sort(key=lambda a: (a.participant, a.sheet, a.question))
    return Checked(answers, where, total, rejected)


def _query(target: str | Path, uri: bool) -> tuple[dict, list[tuple]]:
    with closing(sqlite3.connect(target, uri=uri, timeout=10, isolation_level=None)) as db:
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        select = "SELECT participant, sheet, question, choice FROM answers"
        try:
            rows = db.execute(select + " ORDER BY rowid").fetchall()  # the order they were stored: first one wins
        except sqlite3.OperationalError:
            rows = db.execute(select).fetchall()  # a WITHOUT ROWID table: not ours, but its rows are checked anyway
    return meta, rows


def _read_store(path: Path) -> tuple[dict, list[tuple]]:
    """(meta, raw answer rows) of a store, never writing to it or next to it."""
    try:
        return _query(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        leftovers = [suffix for suffix in _LEFTOVERS if Path(f"{path}{suffix}").exists()]
        if not leftovers:
            raise BlindbenchError(f"cannot read answer store {path}: {exc}") from None
    # A server killed mid-write leaves a hot journal that only a writer can roll back, so read-only fails:
    # roll it back on a copy (the study folder may be read-only, or still being served).
    with tempfile.TemporaryDirectory(prefix="blindbench-answers-") as tmp:
        copy = Path(tmp) / path.name
        try:
            shutil.copyfile(path, copy)
            for suffix in leftovers:
                shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
            return _query(copy, uri=False)
        except (OSError, sqlite3.Error) as exc:
            raise BlindbenchError(
                f"cannot read answer store {path} (nor a copy with its leftover {', '.join(leftovers)}): {exc}"
            ) from None


def check_answer_store(path: str | os.PathLike[str], study: Study) -> Checked:
    """The answers in a store that belong to ``study``, checked row by row (see :func:`check_answers`).

    Raises:
        BlindbenchError: the store is missing, unreadable, or belongs to another study.
    """
    path = Path(path)
    if not path.is_file():
        raise BlindbenchError(f"no answers: {path} not found (serve the study, or give an exported CSV)")
    meta, rows = _read_store(path)
    if meta.get("study_id") != study.study_id:
        raise _other_study(path, meta.get("study_id"), study)
    return check_answers(rows, study, path)


def read_answer_store(path: str | os.PathLike[str], study: Study | None = None) -> list[Answer]:
    """The valid answers in a store, ordered by participant, sheet and question (opened read-only).

    ``study`` defaults to the study folder holding the store.
    """
    path = Path(path)
    return check_answer_store(path, study or load_study(path.parent, check_images=False)).answers


_CHOICES = {"left": "left", "l": "left", "right": "right", "r": "right"}
_NUMBER = re.compile(r"\s*\+?[0-9]{1,18}\s*")


def _cell_int(text: str | None) -> int | str | None:
    """A CSV cell as an int when it is a plain whole number ("1.7", "1e3", "" stay as they are: rejected)."""
    return int(text) if text is not None and _NUMBER.fullmatch(text) else text


def check_answers_csv(path: str | os.PathLike[str], study: Study) -> Checked:
    """Answers exported from another survey tool: CSV with columns sheet, question, choice (left/right, l/r, any
    case), checked like the store's rows (see :func:`check_answers`).

    An optional ``participant`` column lets the same question appear once per participant (ids as in
    study.json); without it, or where it is empty, every row counts as one answer. An optional ``study``
    column must hold this study's id.

    Raises:
        BlindbenchError: the file is missing, unreadable, lacks a column, or holds another study's answers.
    """
    path = Path(path)
    if not path.is_file():
        raise BlindbenchError(f"answers CSV not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = {name.strip().lower(): name for name in reader.fieldnames or [] if name}
            missing = [c for c in ("sheet", "question", "choice") if c not in fields]
            if missing:
                raise BlindbenchError(f"answers CSV {path} lacks column(s) {', '.join(missing)}")
            rows = []
            for line, row in enumerate(reader, start=2):
                if "study" in fields and (row[fields["study"]] or "").strip() not in ("", study.study_id):
                    raise BlindbenchError(
                        f"{path} line {line}: answers of study {_short(row[fields['study']].strip())}, "
                        f"not {study.study_id} (study.json)"
                    )
                choice = row[fields["choice"]]
                participant = row[fields["participant"]] if "participant" in fields else ""
                rows.append(
                    (
                        (participant or "").strip(),
                        _cell_int(row[fields["sheet"]]),
                        _cell_int(row[fields["question"]]),
                        _CHOICES.get((choice or "").strip().lower(), choice),
                    )
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BlindbenchError(f"cannot read answers CSV {path}: {exc}") from None
    return check_answers(rows, study, path, anonymous=True)


def read_answers_csv(path: str | os.PathLike[str], study: Study) -> list[Answer]:
    """The valid answers of an exported CSV (see :func:`check_answers_csv`)."""
    return check_answers_csv(path, study).answers

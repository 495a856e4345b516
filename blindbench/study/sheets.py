"""Study sheets: draw balanced blind A/B questions from saved eval outputs, and read a study folder back.

A study folder holds::

    study.json    manifest: study id, resolved config, participants (id, sheet, secret token), sha256 of
                  sheets.csv and of every image
    sheets.csv    sheet,question,left,right,input,study (image paths relative to the folder; input may be
                  empty; study: the study id on every row)
    images/       s01q01-left.png, s01q01-right.png, s01q01-input.png, ... (re-encoded: no metadata to tell)
    key.json      the answer key: which method is on which side; the web page never serves it
    print/        sheet-01.html, ... printable sheets (only with --html)

Questions are dealt round-robin over the cells (set × opponent), so every sheet and the study as a whole hold
each cell equally often (within one). The method's side alternates along that deal, so it is balanced within
one per cell and within two per sheet, and it never depends on the sample; one seeded coin flips all sides.
Samples are drawn per cell from a seeded permutation of the keys both methods saved, reused only when a cell
needs more questions than it has samples.

Every study gets a random id (``study_id``) written into study.json, every row of sheets.csv, key.json and the
answer store, so two studies of the same shape never pass for each other: a key, sheet file or answer store
from another study is refused. Each participant gets a random token; the link ``/?t=TOKEN`` is what the
experimenter hands out, and the page accepts no answer without one.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import io
import json
import os
import re
import secrets
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blindbench.errors import BlindbenchError, did_you_mean
from blindbench.imageio import atomic_write_bytes, sha256_file
from blindbench.options import comma_list
from blindbench.study.config import StudyMakeConfig

STUDY_FORMAT = "blindbench-study/2"  # /1 had no study id nor participant tokens
KEY_FORMAT = "blindbench-study-key/2"
MANIFEST_NAME = "study.json"
SHEETS_NAME = "sheets.csv"
KEY_NAME = "key.json"
SHEET_COLUMNS = ("sheet", "question", "left", "right", "input", "study")
STUDY_ID_RE = re.compile(r"[0-9a-f]{32}")
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
SIDES = ("left", "right")


@dataclass(frozen=True)
class Question:
    """One blind pair as participants see it; image paths are relative to the study folder."""

    sheet: int
    question: int
    left: str
    right: str
    input: str  # "" when the eval saved no input picture


@dataclass(frozen=True)
class KeyEntry:
    """What a question really shows (from key.json)."""

    set: str
    key: str
    opponent: str
    left: str  # method label shown on the left
    right: str


@dataclass(frozen=True)
class Study:
    """A study folder read back and checked against its manifest."""

    root: Path
    manifest: dict
    questions: tuple[Question, ...]
    participants: dict[str, int]  # participant id -> sheet
    sheets_sha256: str
    study_id: str
    tokens: dict[str, str]  # secret token -> participant id

    def token_of(self, participant: str) -> str:
        """The secret token of ``participant`` (KeyError when unknown)."""
        for token, owner in self.tokens.items():
            if owner == participant:
                return token
        raise KeyError(participant)

    def sheet(self, number: int) -> list[Question]:
        """The questions of one sheet, in the order they are asked."""
        return [q for q in self.questions if q.sheet == number]

    @property
    def images(self) -> frozenset[str]:
        """Every image path (relative to the folder) that a sheet shows: the only files the page may serve."""
        return frozenset(p for q in self.questions for p in (q.left, q.right, q.input) if p)


@dataclass(frozen=True)
class _Sample:
    run: str
    image: Path


# ---------------------------------------------------------------------------------------------------- eval runs


def index_runs(runs: Path) -> tuple[dict[tuple[str, str, str], _Sample], dict[tuple[str, str], Path]]:
    """Saved outputs of every eval run below ``runs``, read by :func:`blindbench.results.load_runs` (each folder
    holding a ``samples.csv``, at any depth, ``runs`` itself included; the same checks as for ``tables`` and
    ``compare``, so one (method, set, key) is in one run only). A run is named by its path relative to ``runs``.

    Returns:
        ({(method, set, key): sample with a saved image}, {(set, key): input picture, when some run saved one}).
    """
    from blindbench.results import EvalFolder, load_runs, run_name

    frame = load_runs(runs)
    outputs: dict[tuple[str, str, str], _Sample] = {}
    inputs: dict[tuple[str, str], Path] = {}
    for method, set_name, key, source in zip(frame["method"], frame["set"], frame["key"], frame["source"],
                                             strict=True):  # fmt: skip
        run = EvalFolder(Path(source).parent)
        image = run.image("images", key)
        if image.is_file():
            outputs[(method, set_name, key)] = _Sample(run_name(runs, run.path), image)
        picture = run.image("inputs", key)
        if (set_name, key) not in inputs and picture.is_file():
            inputs[(set_name, key)] = picture
    return outputs, inputs


def _check_label(label: str, known: set[str], what: str, runs: Path) -> None:
    if label not in known:
        hint = did_you_mean(label, known, list_all=False) or f"; saved: {', '.join(sorted(known)) or 'none'}"
        raise BlindbenchError(f"no saved images for {what} {label!r} under {runs}{hint}")


# ----------------------------------------------------------------------------------------------------- drawing


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator per purpose, so one draw never shifts another."""
    return np.random.default_rng([seed, *stream])


def draw_questions(
    cells: list[tuple[str, str]], candidates: dict[tuple[str, str], list[str]], sheets: int, pairs: int, seed: int
) -> list[dict]:
    """Deal ``sheets × pairs`` questions over ``cells`` (set, opponent); pure given its arguments.

    Returns:
        One dict per question, sorted by (sheet, question): sheet, question, set, key, opponent,
        method_left (bool: the studied method is on the left).
    """
    n_cells = len(cells)
    total = sheets * pairs
    flip = int(_rng(seed, 0).integers(2))
    per_sheet = -(-pairs // n_cells)  # the most questions of one cell on one sheet
    order: dict[int, list[str]] = {}
    for c, cell in enumerate(cells):
        need = len(range(c, total, n_cells))
        keys = sorted(candidates[cell])
        rng = _rng(seed, 1, c)
        drawn: list[str] = []
        while len(drawn) < need:
            cycle = [keys[i] for i in rng.permutation(len(keys))]
            recent = set(drawn[-per_sheet:]) if drawn else set()
            # Keys just asked go to the end of the next cycle, so no sheet sees a pair twice when avoidable.
            drawn.extend([k for k in cycle if k not in recent] + [k for k in cycle if k in recent])
        order[c] = drawn[:need]
    questions = []
    for sheet in range(sheets):
        positions = _rng(seed, 2, sheet).permutation(pairs)
        for j in range(pairs):
            g = sheet * pairs + j  # global deal position
            c, k = g % n_cells, g // n_cells  # cell, and how many of that cell came before
            set_name, opponent = cells[c]
            questions.append(
                {
                    "sheet": sheet + 1,
                    "question": int(positions[j]) + 1,
                    "set": set_name,
                    "key": order[c][k],
                    "opponent": opponent,
                    "method_left": bool((k + c + flip) % 2 == 0),
                }
            )
    return sorted(questions, key=lambda q: (q["sheet"], q["question"]))


# ------------------------------------------------------------------------------------------------------- making


def default_study_dir(method: str) -> Path:
    from blindbench.paths import data_root

    return data_root() / "studies" / method


def make_study(cfg: StudyMakeConfig) -> Path:
    """Write a study folder as ``cfg`` says (see the module docstring); returns the folder.

    Everything is written to a temporary sibling first and renamed at the end, so a failed run leaves nothing
    under the final name. The images depend only on the runs and ``cfg``; so do sheets.csv and key.json, apart
    from the random study id they carry.
    """
    from tqdm.auto import tqdm

    from blindbench.imageio import encode_png, read_image

    if not cfg.runs:
        raise BlindbenchError("give --runs, the folder of eval runs to draw from")
    if cfg.sheets < 1 or cfg.pairs < 1 or cfg.participants < 0:
        raise BlindbenchError(
            f"need --sheets ≥ 1, --pairs ≥ 1, --participants ≥ 0; got {cfg.sheets}, {cfg.pairs}, {cfg.participants}"
        )
    runs = Path(cfg.runs)
    out = Path(cfg.out) if cfg.out else default_study_dir(cfg.method)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BlindbenchError(f"study folder already exists and is not empty: {out}; choose a new --out")
    opponents = comma_list(cfg.against)
    if not opponents:
        raise BlindbenchError("give at least one opponent with --against")
    if cfg.method in opponents or len(set(opponents)) != len(opponents):
        raise BlindbenchError(f"--against must list distinct methods other than {cfg.method!r}; got {cfg.against!r}")

    outputs, inputs = index_runs(runs)
    labels = {m for m, _, _ in outputs}
    for label, what in [(cfg.method, "method"), *((o, "opponent") for o in opponents)]:
        _check_label(label, labels, what, runs)
    by_cell: dict[tuple[str, str], list[str]] = {}
    for m, s, k in outputs:
        if m != cfg.method:
            continue
        for o in opponents:
            if (o, s, k) in outputs:
                by_cell.setdefault((s, o), []).append(k)
    own_sets = sorted({s for m, s, _ in outputs if m == cfg.method})
    if cfg.sets:
        sets = comma_list(cfg.sets)
        for s in sets:
            for o in opponents:
                if (s, o) not in by_cell:
                    raise BlindbenchError(f"no sample of set {s!r} has saved images from both {cfg.method} and {o}")
    else:
        sets = [s for s in own_sets if all((s, o) in by_cell for o in opponents)]
        if not sets:
            raise BlindbenchError(
                f"no set has saved images from {cfg.method} and every opponent ({', '.join(opponents)}) under {runs}"
            )
    cells = [(s, o) for s in sets for o in opponents]
    drawn = draw_questions(cells, by_cell, cfg.sheets, cfg.pairs, cfg.seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    study_id = secrets.token_hex(16)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        sheet_rows, key_rows, images = [], [], {}
        written: dict[Path, tuple[str, str, tuple[int, ...]]] = {}  # source -> (first copy, sha256, shape)

        def place(source: Path, name: str) -> tuple[int, ...]:
            """Write ``source`` re-encoded (no metadata, one encoder for all methods) as ``name``."""
            if source in written:
                shutil.copyfile(tmp / written[source][0], tmp / name)
            else:
                array = read_image(source)  # (H, W, 3) uint8
                data = encode_png(array, level=6)
                (tmp / name).write_bytes(data)  # the folder is renamed at the end: plain writes suffice
                written[source] = (name, hashlib.sha256(data).hexdigest(), array.shape)
            images[name] = written[source][1]
            return written[source][2]

        width = max(2, len(str(max(cfg.sheets, cfg.pairs))))
        for q in tqdm(drawn, desc=f"study make {out.name}", unit="pair", disable=not cfg.progress):
            ours = outputs[(cfg.method, q["set"], q["key"])]
            theirs = outputs[(q["opponent"], q["set"], q["key"])]
            left, right = (ours, theirs) if q["method_left"] else (theirs, ours)
            stem = f"s{q['sheet']:0{width}d}q{q['question']:0{width}d}"
            names = {"left": f"images/{stem}-left.png", "right": f"images/{stem}-right.png", "input": ""}
            left_shape, right_shape = place(left.image, names["left"]), place(right.image, names["right"])
            if left_shape != right_shape:
                raise BlindbenchError(
                    f"images differ in size for set {q['set']} key {q['key']}: {left.image} {left_shape[:2]} "
                    f"vs {right.image} {right_shape[:2]}"
                )
            picture = inputs.get((q["set"], q["key"])) if cfg.show_input else None
            if picture is not None:
                names["input"] = f"images/{stem}-input.png"
                place(picture, names["input"])
            sheet_rows.append({"sheet": q["sheet"], "question": q["question"], **names, "study": study_id})
            method_left = cfg.method if q["method_left"] else q["opponent"]
            method_right = q["opponent"] if q["method_left"] else cfg.method
            key_rows.append(
                {
                    "sheet": q["sheet"],
                    "question": q["question"],
                    "set": q["set"],
                    "key": q["key"],
                    "opponent": q["opponent"],
                    "left": method_left,
                    "right": method_right,
                    "left_run": left.run,
                    "right_run": right.run,
                }
            )
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=SHEET_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sheet_rows)
        atomic_write_bytes(tmp / SHEETS_NAME, buffer.getvalue().encode())
        sheets_sha = sha256_file(tmp / SHEETS_NAME)
        key = {"format": KEY_FORMAT, "study_id": study_id, "method": cfg.method, "sheets_sha256": sheets_sha,
               "questions": key_rows}  # fmt: skip
        atomic_write_bytes(tmp / KEY_NAME, (json.dumps(key, indent=1) + "\n").encode())
        n_participants = cfg.participants or cfg.sheets
        # The id is what the experimenter sees; the token (in the link) is what lets a participant answer.
        participants = [
            {"id": f"p{j + 1:0{width}d}", "sheet": j % cfg.sheets + 1, "token": secrets.token_urlsafe(18)}
            for j in range(n_participants)
        ]
        counts = Counter(f"{q['set']}/{q['opponent']}" for q in drawn)
        reused = {f"{s}/{o}": len(by_cell[(s, o)]) for s, o in cells if counts[f"{s}/{o}"] > len(by_cell[(s, o)])}
        resolved = dataclasses.replace(cfg, runs=str(runs.resolve()), out=str(out.resolve()))
        manifest = {
            "format": STUDY_FORMAT,
            "study_id": study_id,
            "config": dataclasses.asdict(resolved),
            "method": cfg.method,
            "opponents": opponents,
            "sets": sets,
            "sheets": cfg.sheets,
            "pairs": cfg.pairs,
            "questions_per_cell": dict(sorted(counts.items())),
            "cells_reusing_samples": reused,
            "participants": participants,
            "sheets_file": SHEETS_NAME,
            "sheets_sha256": sheets_sha,
            "images": dict(sorted(images.items())),
        }
        atomic_write_bytes(tmp / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())
        if cfg.html:
            questions = tuple(Question(**{k: v for k, v in r.items() if k != "study"}) for r in sheet_rows)
            for sheet in range(1, cfg.sheets + 1):
                page = printable_sheet([q for q in questions if q.sheet == sheet], sheet, cfg.sheets)
                atomic_write_bytes(tmp / "print" / f"sheet-{sheet:0{width}d}.html", page.encode())
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a study folder is an ordinary folder
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def printable_sheet(questions: list[Question], sheet: int, sheets: int) -> str:
    """A printable HTML questionnaire for one sheet (images linked relative to the print/ folder)."""
    blocks = []
    for q in questions:
        picture = (
            f'<figure><img src="../{html.escape(q.input)}" alt=""><figcaption>damaged input</figcaption></figure>'
            if q.input
            else ""
        )
        blocks.append(
            f'<section><h2>Question {q.question}</h2><div class="row">{picture}'
            f'<figure><img src="../{html.escape(q.left)}" alt=""><figcaption>☐ left</figcaption></figure>'
            f'<figure><img src="../{html.escape(q.right)}" alt=""><figcaption>☐ right</figcaption></figure>'
            "</div></section>"
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Sheet {sheet} of {sheets}</title><style>"
        "body{font-family:sans-serif;margin:1.5em}section{break-inside:avoid;margin-bottom:1.2em}"
        "h2{font-size:1em;margin:.2em 0}.row{display:flex;gap:1em}figure{margin:0;text-align:center}"
        "img{width:6.5cm;height:auto;border:1px solid #888}figcaption{font-size:1.1em;margin-top:.2em}"
        "</style></head><body>"
        f"<h1>Sheet {sheet}</h1><p>Participant: ____________ &nbsp; For each question, tick the restored image "
        "(left or right) that looks more realistic. Return the answers as sheet, question, choice.</p>"
        + "".join(blocks)
        + "</body></html>\n"
    )


# ------------------------------------------------------------------------------------------------------ reading


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise BlindbenchError(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BlindbenchError(f"bad {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise BlindbenchError(f"bad {what} {path}: not a JSON object")
    return data


def _check_format(data: dict, path: Path, expected: str, what: str) -> None:
    found = data.get("format")
    if found != expected:
        older = isinstance(found, str) and found.rsplit("/", 1)[0] == expected.rsplit("/", 1)[0]
        hint = "; it was made by an older blindbench (no study id): make the study again" if older else ""
        raise BlindbenchError(f"{path} is not a {expected} {what} (format {found!r}){hint}")


def _participants(manifest: dict, path: Path) -> tuple[dict[str, int], dict[str, str]]:
    """({participant id: sheet}, {token: participant id}) from the manifest, checked."""
    participants: dict[str, int] = {}
    tokens: dict[str, str] = {}
    entries = manifest.get("participants")
    if not isinstance(entries, list) or not entries:
        raise BlindbenchError(f"bad study manifest {path}: no participants")
    for entry in entries:
        try:
            pid, sheet, token = str(entry["id"]), int(entry["sheet"]), entry["token"]
        except (KeyError, TypeError, ValueError):
            raise BlindbenchError(f"bad study manifest {path}: participant entry {entry!r}") from None
        if not isinstance(token, str) or not TOKEN_RE.fullmatch(token) or token in tokens or pid in participants:
            raise BlindbenchError(f"bad study manifest {path}: participant {pid} lacks a unique token")
        participants[pid], tokens[token] = sheet, pid
    return participants, tokens


def load_study(root: str | os.PathLike[str], check_images: bool = True) -> Study:
    """Read a study folder and check sheets.csv (and, with ``check_images``, every image) against study.json.

    Raises:
        BlindbenchError: the folder, manifest or sheet file is missing, a file was changed after ``make``, or
            the sheet file belongs to another study.
    """
    root = Path(root)
    if not root.is_dir():
        raise BlindbenchError(f"study folder not found: {root}")
    manifest_path = root / MANIFEST_NAME
    manifest = _read_json(manifest_path, "study manifest")
    _check_format(manifest, manifest_path, STUDY_FORMAT, "manifest")
    study_id = manifest.get("study_id")
    if not isinstance(study_id, str) or not STUDY_ID_RE.fullmatch(study_id):
        raise BlindbenchError(f"bad study manifest {manifest_path}: study_id {study_id!r} is not 32 hex digits")
    sheets_path = root / manifest.get("sheets_file", SHEETS_NAME)
    if not sheets_path.is_file():
        raise BlindbenchError(f"sheet file not found: {sheets_path}")
    try:
        with open(sheets_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        questions = tuple(
            Question(int(r["sheet"]), int(r["question"]), r["left"], r["right"], r["input"] or "") for r in rows
        )
        others = [(line, r["study"]) for line, r in enumerate(rows, start=2) if r["study"] != study_id]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, ValueError, TypeError) as exc:
        raise BlindbenchError(f"bad sheet file {sheets_path}: {exc}") from None
    if others:  # checked before the hash: "another study" says more than "changed"
        line, other = others[0]
        raise BlindbenchError(
            f"{sheets_path} line {line} belongs to study {other!r}, not {study_id} (study.json): "
            "the sheets of another study"
        )
    actual = sha256_file(sheets_path)
    if actual != manifest.get("sheets_sha256"):
        raise BlindbenchError(
            f"{sheets_path} was changed after `study make` (sha256 {actual[:12]}…, study.json records "
            f"{str(manifest.get('sheets_sha256'))[:12]}…)"
        )
    if check_images:
        recorded = manifest.get("images", {})
        for name in sorted({p for q in questions for p in (q.left, q.right, q.input) if p}):
            path = root / name
            if not path.is_file():
                raise BlindbenchError(f"study image missing: {path}")
            if sha256_file(path) != recorded.get(name):
                raise BlindbenchError(f"study image {path} was changed after `study make` (sha256 differs)")
    participants, tokens = _participants(manifest, manifest_path)
    return Study(root, manifest, questions, participants, actual, study_id, tokens)


def load_key(study: Study) -> dict[tuple[int, int], KeyEntry]:
    """The answer key of ``study``, checked to belong to it (study id) and its sheet file: {(sheet, question): entry}.

    Raises:
        BlindbenchError: key.json is missing, malformed, or made for another study or other sheets.
    """
    path = study.root / KEY_NAME
    key = _read_json(path, "answer key")
    _check_format(key, path, KEY_FORMAT, "answer key")
    if key.get("study_id") != study.study_id:
        raise BlindbenchError(
            f"answer key {path} belongs to study {key.get('study_id')!r}, not {study.study_id} (study.json): "
            "the key of another study"
        )
    if key.get("sheets_sha256") != study.sheets_sha256:
        raise BlindbenchError(f"answer key {path} was made for other sheets (its sheets_sha256 does not match)")
    try:
        entries = {
            (int(r["sheet"]), int(r["question"])): KeyEntry(
                str(r["set"]), str(r["key"]), str(r["opponent"]), str(r["left"]), str(r["right"])
            )
            for r in key["questions"]
        }
    except (KeyError, ValueError, TypeError) as exc:
        raise BlindbenchError(f"bad answer key {path}: {exc}") from None
    missing = [(q.sheet, q.question) for q in study.questions if (q.sheet, q.question) not in entries]
    if missing:
        raise BlindbenchError(f"answer key {path} lacks sheet {missing[0][0]} question {missing[0][1]}")
    return entries


def run_study_make(cfg: StudyMakeConfig) -> Path:
    """``blindbench study make``: write the study and print where it is, how to serve it and each participant's
    token (the secret part of their link)."""
    out = make_study(cfg)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    participants = manifest["participants"]
    print(
        f"study {out} (id {manifest['study_id']}): {cfg.sheets} sheets × {cfg.pairs} pairs, {cfg.method} vs "
        f"{', '.join(manifest['opponents'])} on {', '.join(manifest['sets'])}; {len(participants)} participants"
    )
    for cell, n in manifest["cells_reusing_samples"].items():
        print(f"  note: {cell} has only {n} samples with both methods saved; some are asked more than once")
    print(f"  answer key: {out / KEY_NAME} (keep it, and study.json, from participants)")
    print(f"  serve: blindbench study serve {out}  (it prints each participant's link)")
    print("  participant links are <served URL>/?t=TOKEN:")
    for p in participants:
        print(f"    {p['id']} (sheet {p['sheet']}): ?t={p['token']}")
    return out

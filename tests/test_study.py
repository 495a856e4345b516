"""The user study (issue #6): sheets, the answer page (API and a real browser), Table 2 scoring, bad input."""

from __future__ import annotations

import csv
import importlib.util
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from blindbench.errors import BlindbenchError, ConfigError
from blindbench.imageio import read_image, write_image
from blindbench.results import REQUIRED_COLUMNS
from blindbench.study import (
    AnswerStore,
    StudyMakeConfig,
    StudyScoreConfig,
    StudyServeConfig,
    StudyServer,
    binomial_p_two_sided,
    load_key,
    load_study,
    make_study,
    read_answer_store,
    run_study_score,
    table2_rows,
    wilson_interval,
)
from blindbench.study.answers import DuplicateAnswer
from blindbench.study.sheets import draw_questions

SAMPLE_COLUMNS = REQUIRED_COLUMNS
METHODS = ("vcn", "ca", "gmc", "pc")
SETS = ("ffhq-mini", "places-mini")
KEYS = [f"{i:06d}" for i in range(5)]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _write_run(folder: Path, method: str, sets: tuple[str, ...], save_images: bool = True, inputs: bool = False,
               side: int = 8):
    rows = []
    for s, set_name in enumerate(sets):
        for k, key in enumerate(KEYS):
            rows.append(
                {c: 0 for c in SAMPLE_COLUMNS} | {"method": method, "model": method, "set": set_name, "key": key}
            )
            rng = np.random.default_rng([METHODS.index(method) if method in METHODS else 9, s, k])
            if save_images:
                write_image(folder / "images" / f"{key}.png", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
            if inputs:
                write_image(folder / "inputs" / f"{key}.png", np.full((side, side, 3), 40 * k, dtype=np.uint8))
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "samples.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SAMPLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eval runs as the eval step writes them: vcn (with inputs) on both sets plus an extra set, 3 opponents,
    and a run that saved no images."""
    root = tmp_path_factory.mktemp("runs")
    _write_run(root / "vcn-main", "vcn", SETS, inputs=True)
    _write_run(root / "vcn-extra", "vcn", ("extra-set",))  # no opponent ran on it: left out by default
    for method in METHODS[1:]:
        _write_run(root / f"{method}-main", method, SETS)
    _write_run(root / "oracle", "oracle-telea", SETS, save_images=False)
    return root


def _make(runs: Path, out: Path, **options) -> Path:
    defaults = {"against": "ca,gmc", "sheets": 4, "pairs": 6, "seed": 3, "progress": False}
    return make_study(StudyMakeConfig(runs=str(runs), out=str(out), **(defaults | options)))


def _sheet_rows(study: Path) -> list[dict]:
    with open(study / "sheets.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _key_rows(study: Path) -> list[dict]:
    return json.loads((study / "key.json").read_text())["questions"]


# ------------------------------------------------------------------------------------------------------- sheets


def _without_study_id(study: Path) -> tuple[list[dict], dict]:
    """sheets.csv rows and key.json without the random study id (and the sheet hash that covers it)."""
    key = json.loads((study / "key.json").read_text())
    assert len(key.pop("study_id")) == 32 and key.pop("sheets_sha256")
    return [{k: v for k, v in r.items() if k != "study"} for r in _sheet_rows(study)], key


def test_make_is_deterministic_per_seed(runs: Path, tmp_path: Path) -> None:
    a, b = _make(runs, tmp_path / "a"), _make(runs, tmp_path / "b")
    assert _without_study_id(a) == _without_study_id(b)
    assert load_study(a).study_id != load_study(b).study_id  # random: two studies never pass for each other
    images = sorted(p.relative_to(a) for p in (a / "images").iterdir())
    assert images == sorted(p.relative_to(b) for p in (b / "images").iterdir())
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in images)
    other = _make(runs, tmp_path / "c", seed=4)
    assert _without_study_id(other)[1] != _without_study_id(a)[1]
    assert not list(tmp_path.glob(".*tmp"))  # nothing left behind by the atomic rename


def test_make_finds_runs_at_any_depth(tmp_path: Path) -> None:
    evals = tmp_path / "evals"  # the demo's layout: data/evals/demo/<method>/samples.csv
    for method in ("vcn", "ca"):
        _write_run(evals / "demo" / method, method, SETS)
    study = _make(evals, tmp_path / "s", against="ca", sheets=1, pairs=2)
    runs = {(row["left"], row["left_run"]) for row in _key_rows(study)}
    runs |= {(row["right"], row["right_run"]) for row in _key_rows(study)}
    assert runs == {("vcn", "demo/vcn"), ("ca", "demo/ca")}


def test_sheets_are_balanced_and_the_key_is_right(runs: Path, tmp_path: Path) -> None:
    study = _make(runs, tmp_path / "s", sheets=4, pairs=6)
    manifest = json.loads((study / "study.json").read_text())
    assert manifest["sets"] == list(SETS) and manifest["opponents"] == ["ca", "gmc"]  # extra-set left out
    sheet_rows, key_rows = _sheet_rows(study), _key_rows(study)
    assert len(sheet_rows) == len(key_rows) == 24
    assert [(int(r["sheet"]), int(r["question"])) for r in sheet_rows] == [
        (s, q) for s in range(1, 5) for q in range(1, 7)
    ]
    cells = Counter((r["set"], r["opponent"]) for r in key_rows)
    assert set(cells.values()) == {6}  # 24 questions over 4 cells
    for sheet in range(1, 5):
        per_sheet = Counter((r["set"], r["opponent"]) for r in key_rows if r["sheet"] == sheet)
        assert len(per_sheet) == 4 and max(per_sheet.values()) - min(per_sheet.values()) <= 1
    for r in key_rows:  # the files the page shows carry no method name; the pixels are the key's methods'
        row = sheet_rows[key_rows.index(r)]
        assert "vcn" not in row["left"] + row["right"] and {r["left"], r["right"]} == {"vcn", r["opponent"]}
        for side in ("left", "right"):
            source = runs / r[f"{side}_run"] / "images" / f"{r['key']}.png"
            assert np.array_equal(read_image(study / row[side]), read_image(source))
        assert row["input"] and np.array_equal(
            read_image(study / row["input"]), read_image(runs / "vcn-main" / "inputs" / f"{r['key']}.png")
        )
    assert len(manifest["participants"]) == 4 and manifest["participants"][0] | {"token": ""} == {
        "id": "p01",
        "sheet": 1,
        "token": "",
    }
    tokens = [p["token"] for p in manifest["participants"]]
    assert len(set(tokens)) == 4 and all(len(t) >= 22 for t in tokens)  # random, unguessable, one each
    assert {r["study"] for r in sheet_rows} == {manifest["study_id"]}


@pytest.mark.parametrize("n_sets,n_opponents", [(3, 4), (1, 3), (2, 1)])
def test_sides_are_not_confounded_with_method(n_sets: int, n_opponents: int) -> None:
    cells = [(f"set{s}", f"opp{o}") for s in range(n_sets) for o in range(n_opponents)]
    candidates = {cell: [f"{i:03d}" for i in range(50)] for cell in cells}
    questions = draw_questions(cells, candidates, sheets=12, pairs=40, seed=7)
    assert len(questions) == 480
    left = Counter((q["set"], q["opponent"]) for q in questions if q["method_left"])
    every = Counter((q["set"], q["opponent"]) for q in questions)
    assert max(every.values()) - min(every.values()) <= 1
    for cell in cells:  # per cell (so per opponent and per set): the method is on the left half the time
        assert abs(2 * left[cell] - every[cell]) <= 1
    for sheet in range(1, 13):
        sides = [q["method_left"] for q in questions if q["sheet"] == sheet]
        assert abs(2 * sum(sides) - len(sides)) <= 2
        keys = Counter((q["set"], q["opponent"], q["key"]) for q in questions if q["sheet"] == sheet)
        assert max(keys.values()) == 1  # 50 samples per cell: no pair twice on a sheet
    assert draw_questions(cells, candidates, sheets=12, pairs=40, seed=7) == questions


def test_printable_sheets(runs: Path, tmp_path: Path) -> None:
    study = _make(runs, tmp_path / "s", html=True, show_input=False)
    pages = sorted((study / "print").glob("sheet-*.html"))
    assert [p.name for p in pages] == ["sheet-01.html", "sheet-02.html", "sheet-03.html", "sheet-04.html"]
    text = pages[0].read_text()
    assert text.count("<section>") == 6 and "../images/s01q01-left.png" in text and "http" not in text
    assert all(not r["input"] for r in _sheet_rows(study))


# -------------------------------------------------------------------------------------------------------- score


# Golden values from scipy 1.x: r = scipy.stats.binomtest(k, n); r.pvalue, r.proportion_ci(method="wilson")
GOLDEN = {
    (7, 10): (0.34375, 0.39677814746114526, 0.892208732593699),
    (5, 10): (1.0, 0.236593090512564, 0.7634069094874361),
    (10, 10): (0.001953125, 0.7224672001371109, 1.0),
    (0, 10): (0.001953125, 0.0, 0.27753279986288926),
    (17, 20): (0.0025768280029296875, 0.6395811352592431, 0.9476312541037835),
    (5, 20): (0.04138946533203125, 0.11186170140766571, 0.468700877618744),
}


def test_wilson_and_exact_binomial_golden() -> None:
    # By hand, 7/10: z² = 3.841459, centre (0.7 + z²/20) / (1 + z²/10) = 0.644493,
    # half-width z / (1 + z²/10) · sqrt(0.21/10 + z²/400) = 0.247716 → (0.3968, 0.8922); p = 2·176/1024.
    assert wilson_interval(7, 10) == pytest.approx((0.3968, 0.8922), abs=1e-4)
    assert binomial_p_two_sided(7, 10) == 2 * 176 / 1024
    for (k, n), (p, low, high) in GOLDEN.items():
        assert binomial_p_two_sided(k, n) == pytest.approx(p, rel=1e-12)
        assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-12)
    with pytest.raises(ValueError, match="0 ≤ k ≤ n"):
        wilson_interval(3, 2)


def _hand_written_wilson_and_p(k: int, n: int) -> tuple[float, float, float]:
    """The formulas blindbench used before scipy.stats.binomtest (kept here as the reference the tables keep)."""
    import math

    z = 1.959963984540054
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1))
    return max(0.0, centre - half), min(1.0, centre + half), min(1.0, 2 * tail / 2**n)


def test_scores_are_scipys_binomtest_and_keep_the_tables_numbers() -> None:
    from scipy.stats import binomtest

    grid = [(k, n) for n in range(1, 41) for k in range(n + 1)]
    grid += [(k, n) for n in (100, 480, 1200) for k in range(0, n + 1, n // 20)]  # Table 2's sizes, pooled too
    for k, n in grid:
        low, high = wilson_interval(k, n)
        p = binomial_p_two_sided(k, n)
        reference = binomtest(k, n, 0.5)
        ci = reference.proportion_ci(confidence_level=0.95, method="wilson")
        assert (low, high, p) == (ci.low, ci.high, reference.pvalue)  # exactly scipy's, not a copy of it
        old = _hand_written_wilson_and_p(k, n)
        # what table2.csv (6 decimals) and the markdown table (percent to 0.1, p to 3 places) print is unchanged
        assert [f"{v:.6f}" for v in (low, high, p)] == [f"{v:.6f}" for v in old]
        assert [f"{100 * v:.1f}" for v in (low, high)] == [f"{100 * v:.1f}" for v in old[:2]]
        assert f"{p:.3f}" == f"{old[2]:.3f}" and f"{p:.2g}" == f"{old[2]:.2g}"
        assert (low, high, p) == pytest.approx(old, rel=1e-12, abs=1e-15)
    assert wilson_interval(7, 10, confidence=0.99)[0] < wilson_interval(7, 10)[0]


def _answers_for(study: Path, shares: dict[tuple[str, str], int]) -> list[dict]:
    """Answers (sheet, question, choice) preferring vcn in exactly shares[cell] questions of each cell."""
    taken: Counter = Counter()
    answers = []
    for r in _key_rows(study):
        cell = (r["set"], r["opponent"])
        want_vcn = taken[cell] < shares[cell]
        taken[cell] += 1
        vcn_side = "left" if r["left"] == "vcn" else "right"
        other = "right" if vcn_side == "left" else "left"
        answers.append({"sheet": r["sheet"], "question": r["question"], "choice": vcn_side if want_vcn else other})
    return answers


def test_score_gives_the_known_shares(runs: Path, tmp_path: Path, capsys) -> None:
    study = _make(runs, tmp_path / "s", sheets=4, pairs=10)  # 40 questions, 10 per cell
    shares = {("ffhq-mini", "ca"): 7, ("ffhq-mini", "gmc"): 5, ("places-mini", "ca"): 10, ("places-mini", "gmc"): 0}
    answers = _answers_for(study, shares)
    exported = tmp_path / "form.csv"
    with open(exported, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["sheet", "question", "choice"])
        writer.writeheader()
        writer.writerows(answers)
    rows = table2_rows(study, exported)
    expected = [*((s, o, shares[(s, o)], 10) for s, o in shares), ("all", "ca", 17, 20), ("all", "gmc", 5, 20)]
    assert [(r["set"], r["opponent"], r["preferred"], r["n"]) for r in rows] == expected
    for r in rows:
        p, low, high = GOLDEN[(r["preferred"], r["n"])]
        assert r["share"] == r["preferred"] / r["n"] and r["method"] == "vcn"
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high), abs=1e-12)
        assert r["p_value"] == pytest.approx(p, rel=1e-12)

    # The same answers given through the page's store score the same; score writes table2.csv and markdown.
    store = AnswerStore(load_study(study))
    for a in answers:
        store.record(f"p{a['sheet']:02d}", a["question"], a["choice"])
    assert table2_rows(study) == rows
    capsys.readouterr()
    assert run_study_score(StudyScoreConfig(study=str(study))) == rows
    out = capsys.readouterr().out
    assert "| ffhq-mini | ca | 70.0% | 10 | 39.7–89.2% | 0.344 |" in out
    with open(study / "table2.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    first = {"set": "ffhq-mini", "method": "vcn", "opponent": "ca", "n": "10", "preferred": "7", "share": "0.700000",
             "ci_low": "0.396778", "ci_high": "0.892209", "p_value": "0.343750"}  # fmt: skip
    assert written[0] == first


# ------------------------------------------------------------------------------------------------------- server


def _request(
    url: str, body: dict | None = None, content_type: str = "application/json", headers: dict | None = None
) -> tuple[int, dict | bytes]:
    data = None if body is None else json.dumps(body).encode()
    sent = ({"Content-Type": content_type} if data else {}) | (headers or {})
    request = urllib.request.Request(url, data=data, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw, kind = response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get_content_type()
    return status, json.loads(raw) if kind == "application/json" else raw


def test_server_api(runs: Path, tmp_path: Path) -> None:
    study = _make(runs, tmp_path / "s", sheets=2, pairs=3, participants=3)
    assert StudyServeConfig().host == "127.0.0.1"
    with StudyServer(study, port=0).start() as server:
        assert server.host == "127.0.0.1"
        base = server.url
        status, page = _request(base)
        assert status == 200 and b"<script>" in page and b"http" not in page.replace(b"http-equiv", b"")
        with urllib.request.urlopen(base, timeout=10) as response:
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        token = server.study.token_of("p03")
        assert server.participant_url("p03") == f"{base}?t={token}"
        status, state = _request(base + f"api/state?token={token}")  # third participant: sheet 1 again
        assert status == 200 and state["sheet"] == 1 and state["answered"] == 0 and state["total"] == 3
        assert state["question"]["question"] == 1 and state["question"]["input"].startswith("/images/")
        status, image = _request(base + state["question"]["left"].lstrip("/"))
        assert status == 200 and image[:8] == b"\x89PNG\r\n\x1a\n"
        for private in ("key.json", "study.json", "sheets.csv", "answers.sqlite", "images/../key.json", "images/"):
            assert _request(base + private)[0] == 404, private

        answer = {"token": token, "question": 1, "choice": "right", "elapsed_ms": 900}
        status, reply = _request(base + "api/answer", answer)
        assert status == 200 and reply["state"]["answered"] == 1 and reply["state"]["question"]["question"] == 2
        status, reply = _request(base + "api/answer", answer)
        assert status == 409 and reply["error"] == "participant p03 already answered question 1"
        for bad, code, message in [
            ({**answer, "token": "p99"}, 404, "unknown participant link"),
            ({**answer, "question": 7}, 404, "sheet 1 has no question 7"),
            ({**answer, "question": "2"}, 404, "sheet 1 has no question '2'"),
            ({**answer, "question": 2, "choice": "middle"}, 400, "choice must be 'left' or 'right'"),
        ]:
            status, reply = _request(base + "api/answer", bad)
            assert status == code and reply["error"].startswith(message) and "\n" not in reply["error"]
        assert _request(base + "api/answer", answer, content_type="text/plain")[0] == 415
        assert _request(base + "api/state?token=nobody")[0] == 404
    stored = read_answer_store(study / "answers.sqlite")
    assert [(a.participant, a.sheet, a.question, a.choice) for a in stored] == [("p03", 1, 1, "right")]


def test_serve_command_prints_url_and_stops_on_ctrl_c(runs: Path, tmp_path: Path) -> None:
    study = _make(runs, tmp_path / "s", sheets=1, pairs=2)
    # a Ctrl-C in a terminal: a shell's background job (CI runners, nohup) starts its children with SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler, so give the child the terminal's default
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from blindbench.study import StudyServeConfig, run_study_serve\n"
        f"run_study_serve(StudyServeConfig(study={str(study)!r}, port=0))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert process.stdout.readline().startswith("  participant links (hand each person only their own")
        token = load_study(study).token_of("p01")
        assert process.stdout.readline() == f"    p01 (sheet 1): {url}?t={token}\n"
        assert _request(url + "api/answer", {"participant": "p01", "question": 2, "choice": "left"})[0] == 404
        assert _request(url + "api/answer", {"token": token, "question": 2, "choice": "left"})[0] == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0, process.stderr.read()
        out = process.stdout.read()
    finally:
        process.kill()
        process.stdout.close()
        process.stderr.close()
    assert out == f"p01 sheet 1 question 2: left\nstopped; 1 answers in {study / 'answers.sqlite'}\n"


# ---------------------------------------------------------------------------------------------------- bad input


def _one_line(excinfo: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(excinfo.value)


def test_bad_input_is_one_line_error(runs: Path, tmp_path: Path, capsys) -> None:
    study = _make(runs, tmp_path / "s", sheets=2, pairs=2)
    store = AnswerStore(load_study(study))
    store.record("p01", 1, "left")
    with pytest.raises(DuplicateAnswer, match="participant p01 already answered question 1") as e:
        store.record("p01", 1, "right")
    _one_line(e)

    # A port in use.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BlindbenchError, match=f"port {port} on 127.0.0.1 is in use; pick another") as e:
            StudyServer(study, port=port)
        _one_line(e)

    # A port out of range: the API, the config and the command line.
    for bad in (99999, -1, 65536):
        for make in (lambda p: StudyServer(study, port=p), lambda p: StudyServeConfig(study=str(study), port=p)):
            with pytest.raises(ConfigError, match=rf"--port must be an integer from 0 to 65535 .*got {bad}") as e:
                make(bad)
            _one_line(e)
    from blindbench.cli import main

    assert main(["study", "serve", str(study), "--port", "99999"]) == 2
    err = capsys.readouterr().err
    assert err == "blindbench: error: --port must be an integer from 0 to 65535 (0: any free port), got 99999\n"

    # A tampered sheet: swapping two sides changes sheets.csv's sha256 recorded in study.json and key.json.
    original = (study / "sheets.csv").read_text()
    (study / "sheets.csv").write_text(original.replace("-left.png", "-tmp.png").replace("-right.png", "-left.png"))
    for action in (lambda: StudyServer(study, port=0), lambda: table2_rows(study)):
        with pytest.raises(BlindbenchError, match=r"sheets\.csv was changed after `study make`") as e:
            action()
        _one_line(e)
    (study / "sheets.csv").write_text(original)

    # A changed image.
    image = study / _sheet_rows(study)[0]["left"]
    saved = image.read_bytes()
    image.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
    with pytest.raises(BlindbenchError, match="study image .*s01q01-left.png was changed") as e:
        StudyServer(study, port=0)
    _one_line(e)
    image.write_bytes(saved)

    # A key for other sheets, then a missing key.
    key = json.loads((study / "key.json").read_text())
    (study / "key.json").write_text(json.dumps(key | {"sheets_sha256": "0" * 64}))
    with pytest.raises(BlindbenchError, match="was made for other sheets") as e:
        load_key(load_study(study))
    (study / "key.json").unlink()
    with pytest.raises(BlindbenchError, match="answer key not found: .*key.json") as e:
        table2_rows(study)
    _one_line(e)

    # Answers that name no question, or a bad choice, in an exported CSV are left out and counted; a CSV
    # without the columns is an error; no answers at all.
    (study / "key.json").write_text(json.dumps(key))
    form = tmp_path / "form.csv"
    form.write_text("sheet,question,choice\n1,1,left\n2,9,right\n1,2,up\n")
    capsys.readouterr()
    assert sum(r["n"] for r in table2_rows(study, form) if r["set"] != "all") == 1
    assert capsys.readouterr().err == (
        f"rejected 2 answer rows of 3 in {form}: 1 unknown question, 1 bad choice; scored the other 1\n"
    )
    form.write_text("sheet,choice\n1,left\n")
    with pytest.raises(BlindbenchError, match="answers CSV .*form.csv lacks column.s. question$") as e:
        table2_rows(study, form)
    _one_line(e)
    (study / "answers.sqlite").unlink()
    with pytest.raises(BlindbenchError, match="no answers: .*answers.sqlite not found"):
        table2_rows(study)


def test_bad_make_options_are_one_line_errors(runs: Path, tmp_path: Path) -> None:
    cases = [
        ({"method": "vnc"}, "no saved images for method 'vnc' under .*; did you mean 'vcn'"),
        ({"against": "ca,gcm"}, "no saved images for opponent 'gcm' .*did you mean 'gmc'"),
        ({"against": "oracle-telea"}, "no saved images for opponent 'oracle-telea'"),
        ({"sets": "extra-set"}, "no sample of set 'extra-set' has saved images from both vcn and ca"),
        ({"against": "vcn,ca"}, "--against must list distinct methods other than 'vcn'"),
        ({"pairs": 0}, "need --sheets ≥ 1, --pairs ≥ 1"),
    ]
    for options, message in cases:
        with pytest.raises(BlindbenchError, match=message) as e:
            _make(runs, tmp_path / "s", **options)
        _one_line(e)
    assert not (tmp_path / "s").exists()
    with pytest.raises(BlindbenchError, match="no eval runs under"):
        _make(tmp_path, tmp_path / "s")
    _make(runs, tmp_path / "s")
    with pytest.raises(BlindbenchError, match="study folder already exists and is not empty"):
        _make(runs, tmp_path / "s")


def test_make_reads_runs_through_the_shared_reader(runs: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(runs, tmp_path / "runs"))
    shutil.copytree(copy / "ca-main", copy / "ca-again")  # the same samples in two runs: as tables, refused
    with pytest.raises(BlindbenchError, match=r"duplicate sample: method 'ca', set 'ffhq-mini', key '000000' in "
                       r".*ca-again/samples.csv line 2 and .*ca-main/samples.csv line 2") as e:  # fmt: skip
        _make(copy, tmp_path / "s")
    _one_line(e)
    (copy / "ca-again" / "samples.csv").write_text("method,set,key\nca,ffhq-mini,000000\n")
    with pytest.raises(BlindbenchError, match=r"ca-again/samples.csv: missing column\(s\) model, checkpoint"):
        _make(copy, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_make_shows_a_progress_bar_unless_turned_off(runs: Path, tmp_path: Path, capsys) -> None:
    from blindbench.cli import main

    args = ["study", "make", "--runs", str(runs), "--against", "ca,gmc", "--sheets", "2", "--pairs", "5"]
    assert main([*args, "--out", str(tmp_path / "shown")]) == 0
    err = capsys.readouterr().err
    assert "study make shown" in err and "10/10" in err and "pair" in err  # tqdm: one tick per question
    assert main([*args, "--out", str(tmp_path / "quiet"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert _without_study_id(tmp_path / "shown") == _without_study_id(tmp_path / "quiet")


# ------------------------------------------------------------------------------------------------------ browser


BROWSER = pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None or not CHROMIUM.exists(),
    reason="needs playwright (pip, dev extra) and /usr/bin/chromium (apt); `make test` installs both",
)


@BROWSER
def test_study_in_a_real_browser(runs: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    study = _make(runs, tmp_path / "s", sheets=2, pairs=4)
    with StudyServer(study, port=0).start() as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))

            def answered(n: int, state: str = "ready") -> None:
                page.wait_for_selector(f"body[data-answered='{n}'][data-state='{state}']", timeout=10_000)

            page.goto(server.participant_url("p01"))
            answered(0)
            assert page.text_content("#count") == "Question 1 of 4 (0 answered)"
            assert page.evaluate("document.getElementById('left-img').naturalWidth") == 8
            assert page.is_visible("#input-img")
            page.click("#left")  # by click
            answered(1)
            page.keyboard.press("ArrowRight")  # by key
            answered(2)
            page.reload()  # resume where the participant was
            answered(2)
            assert page.text_content("#count") == "Question 3 of 4 (2 answered)"
            assert page.get_attribute("body", "data-question") == "3"
            page.keyboard.press("1")
            answered(3)
            page.click("#right")
            answered(4, "done")
            assert page.is_visible("#done") and not page.is_visible("#study")
            page.reload()
            answered(4, "done")

            page.goto(server.url + "?p=p02")  # a bare participant id is no way in; the form asks for the code
            page.wait_for_selector("body[data-state='login']")
            page.goto(server.url + "?t=nobody")  # nor is a wrong token
            page.wait_for_selector("body[data-state='login']")
            assert "unknown participant link" in page.text_content("#error")
            token = server.study.token_of("p02")
            page.fill("#code", token)
            page.press("#code", "Enter")
            answered(0)
            page.keyboard.press("ArrowLeft")
            answered(1)
            assert page.url.endswith(f"?t={token}")
            assert all(url.startswith(server.url) for url in requested), requested  # nothing external
        finally:
            browser.close()

    stored = [(a.participant, a.question, a.choice) for a in read_answer_store(study / "answers.sqlite")]
    assert stored == [
        ("p01", 1, "left"),
        ("p01", 2, "right"),
        ("p01", 3, "left"),
        ("p01", 4, "right"),
        ("p02", 1, "left"),
    ]
    key = load_key(load_study(study))
    expected: Counter = Counter()
    for participant, question, choice in stored:
        entry = key[(int(participant[1:]), question)]
        expected[(entry.set, entry.opponent, "n")] += 1
        expected[(entry.set, entry.opponent, "k")] += (entry.left if choice == "left" else entry.right) == "vcn"
    rows = {(r["set"], r["opponent"]): r for r in table2_rows(study) if r["set"] != "all"}
    for (set_name, opponent), row in rows.items():
        assert (row["n"], row["preferred"]) == (
            expected[(set_name, opponent, "n")],
            expected[(set_name, opponent, "k")],
        )
    assert sum(r["n"] for r in rows.values()) == 5


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


LAPTOPS = ((1280, 900), (1280, 800), (1366, 768))  # common laptop viewports (headless: no browser chrome)
SHOWN = ("#input-img", "#left-img", "#right-img")


def _check_fits(page, viewport: tuple[int, int], natural: int) -> list[float]:
    """Everything the participant needs is inside the viewport with no scrolling; returns each image's scale."""
    width, height = viewport
    # a full-page screenshot is as large as the document: the viewport's size means nothing lies below the fold
    assert _png_size(page.screenshot(full_page=True)) == viewport
    assert page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]") == [
        width, height]  # fmt: skip
    for selector in (*SHOWN, "#left", "#right", "#input figcaption", "#left + figcaption", "#right + figcaption",
                     "#count", "#progress"):  # fmt: skip
        box = page.locator(selector).bounding_box()
        assert page.is_visible(selector), selector
        assert box["x"] >= 0 and box["y"] >= 0, (selector, box, viewport)
        assert box["x"] + box["width"] <= width and box["y"] + box["height"] <= height, (selector, box, viewport)
    scales = []
    for selector in SHOWN:
        box = page.locator(selector).bounding_box()
        assert page.evaluate(f"document.querySelector('{selector}').naturalWidth") == natural
        scales.append(box["width"] / natural)
    assert max(scales) <= 2.0 and max(scales) - min(scales) < 1 / natural, scales  # never over 2x; all alike
    # the damaged input is centred under its caption (it used to sit left-aligned under a centred caption)
    image, caption = page.locator("#input-img").bounding_box(), page.locator("#input figcaption").bounding_box()
    assert abs(image["x"] + image["width"] / 2 - (caption["x"] + caption["width"] / 2)) <= 1
    return scales


@BROWSER
def test_study_page_fits_a_laptop_screen_without_upscaling_past_2x(runs: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    photos = tmp_path / "runs"  # eval outputs at the benchmark's size: 256 px
    _write_run(photos / "vcn", "vcn", SETS[:1], inputs=True, side=256)
    _write_run(photos / "ca", "ca", SETS[:1], side=256)
    large = make_study(StudyMakeConfig(runs=str(photos), against="ca", sheets=1, pairs=3, participants=4,
                                       out=str(tmp_path / "large"), progress=False))  # fmt: skip
    small = _make(runs, tmp_path / "small", sheets=1, pairs=3)  # 8 px images: shown at 16 px, not stretched
    with StudyServer(large, port=0).start() as server, StudyServer(small, port=0).start() as tiny, \
            sync_playwright() as pw:  # fmt: skip
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for participant, viewport in enumerate(LAPTOPS, start=1):
                page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
                page.goto(server.participant_url(f"p{participant:02d}"))
                page.wait_for_selector("body[data-answered='0'][data-state='ready']", timeout=10_000)
                scales = _check_fits(page, viewport, 256)
                assert min(scales) >= 1.0, scales  # a laptop screen has room for the pictures at full size
                left = page.locator("#left").bounding_box()  # the choice is clickable where it is: no scrolling
                page.mouse.click(left["x"] + left["width"] / 2, left["y"] + left["height"] / 2)
                page.wait_for_selector("body[data-answered='1'][data-state='ready']", timeout=10_000)
                _check_fits(page, viewport, 256)
                page.close()
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(server.participant_url("p04"))
            page.wait_for_selector("body[data-answered='0'][data-state='ready']", timeout=10_000)
            assert _check_fits(page, (1920, 1080), 256) == [2.0, 2.0, 2.0]  # room for more, but 2x at most
            page.set_viewport_size({"width": 1280, "height": 800})  # a resized window fits again
            page.wait_for_function("document.documentElement.scrollHeight <= innerHeight", timeout=10_000)
            _check_fits(page, (1280, 800), 256)
            page.close()

            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(tiny.participant_url("p01"))
            page.wait_for_selector("body[data-answered='0'][data-state='ready']", timeout=10_000)
            assert _check_fits(page, (1280, 900), 8) == [2.0, 2.0, 2.0]
        finally:
            browser.close()


def test_cli_study_score_and_tables_study_agree(runs: Path, tmp_path: Path, capsys) -> None:
    """Through the real command line: make a study, score exported answers, and build table2.csv via tables."""
    from blindbench.cli import main

    study = tmp_path / "s"
    assert main(["study", "make", "--runs", str(runs), "--against", "ca,gmc", "--sheets", "4", "--pairs", "10",
                 "--seed", "3", "--out", str(study)]) == 0  # fmt: skip
    shares = {("ffhq-mini", "ca"): 7, ("ffhq-mini", "gmc"): 5, ("places-mini", "ca"): 10, ("places-mini", "gmc"): 0}
    exported = tmp_path / "form.csv"
    with open(exported, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["sheet", "question", "choice"])
        writer.writeheader()
        writer.writerows(_answers_for(study, shares))
    assert main(["study", "score", str(study), "--answers", str(exported)]) == 0
    assert "| ffhq-mini | ca | 70.0% | 10 | 39.7–89.2% | 0.344 |" in capsys.readouterr().out
    tables_out = tmp_path / "tables"
    assert main(["tables", "--runs", str(runs), "--study", str(study), "--answers", str(exported),
                 "--out", str(tables_out)]) == 0  # fmt: skip
    assert "70.0%" in capsys.readouterr().out
    assert (tables_out / "table2.csv").read_text() == (study / "table2.csv").read_text()
    assert main(["study", "score", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("blindbench: error:")


# ------------------------------------------------------------------------------------------ reported failures


def test_another_studys_key_sheets_or_answers_are_refused(runs: Path, tmp_path: Path) -> None:
    """#11: two studies of one shape had byte-identical sheets.csv, so another study's key passed the hash."""
    a = _make(runs, tmp_path / "a", sheets=2, pairs=4, seed=3)
    b = _make(runs, tmp_path / "b", sheets=2, pairs=4, seed=4)
    assert _without_study_id(a)[0] == _without_study_id(b)[0]  # the same shape: only the study id tells them apart
    assert (a / "sheets.csv").read_bytes() != (b / "sheets.csv").read_bytes()
    study_a, study_b = load_study(a), load_study(b)
    assert study_a.study_id != study_b.study_id
    assert json.loads((a / "key.json").read_text())["study_id"] == study_a.study_id
    store_b = AnswerStore(study_b)
    store_b.record("p01", 1, "left")
    own = {name: (a / name).read_bytes() for name in ("key.json", "sheets.csv", "study.json")}

    def refused(action, message: str) -> None:
        with pytest.raises(BlindbenchError, match=message) as e:
            action()
        _one_line(e)

    (a / "key.json").write_bytes((b / "key.json").read_bytes())  # the swap that moved Table 2 from 50% to 75%
    refused(lambda: table2_rows(a), rf"answer key .*key.json belongs to study '{study_b.study_id}', not "
            rf"{study_a.study_id} \(study.json\): the key of another study")  # fmt: skip
    (a / "key.json").write_bytes(own["key.json"])

    (a / "sheets.csv").write_bytes((b / "sheets.csv").read_bytes())
    refused(lambda: load_study(a), rf"sheets.csv line 2 belongs to study '{study_b.study_id}', not {study_a.study_id}")
    (a / "sheets.csv").write_bytes(own["sheets.csv"])

    (a / "study.json").write_bytes((b / "study.json").read_bytes())  # b's manifest over a's sheets
    refused(lambda: load_study(a), f"belongs to study '{study_a.study_id}', not {study_b.study_id}")
    (a / "study.json").write_bytes(own["study.json"])

    (a / "answers.sqlite").write_bytes((b / "answers.sqlite").read_bytes())
    message = f"answer store .*answers.sqlite belongs to study '{study_b.study_id}', not {study_a.study_id}"
    refused(lambda: table2_rows(a), message)  # scoring
    refused(lambda: AnswerStore(study_a), message)  # serving
    (a / "answers.sqlite").unlink()

    form = tmp_path / "form.csv"
    form.write_text(f"study,sheet,question,choice\n{study_a.study_id},1,1,left\n{study_b.study_id},1,2,left\n")
    refused(lambda: table2_rows(a, form), f"form.csv line 3: answers of study '{study_b.study_id}', not")

    manifest = json.loads(own["study.json"]) | {"format": "blindbench-study/1"}
    (a / "study.json").write_text(json.dumps(manifest))
    refused(lambda: load_study(a), "made by an older blindbench .no study id.: make the study again")
    (a / "study.json").write_bytes(own["study.json"])


def _rebuilt_store(study: Path) -> sqlite3.Connection:
    """The study's answers table rebuilt without its constraints, as someone altering the file would."""
    db = sqlite3.connect(study / "answers.sqlite", isolation_level=None)
    db.executescript(
        "ALTER TABLE answers RENAME TO old; CREATE TABLE answers (participant, sheet, question, choice, "
        "answered_at, elapsed_ms); INSERT INTO answers SELECT * FROM old; DROP TABLE old;"
    )
    return db


def _expected_cells(study: Path, answers: list[tuple[int, int, str]]) -> Counter:
    key = load_key(load_study(study))
    cells: Counter = Counter()
    for sheet, question, choice in answers:
        entry = key[(sheet, question)]
        cells[(entry.set, entry.opponent, "n")] += 1
        cells[(entry.set, entry.opponent, "k")] += (entry.left if choice == "left" else entry.right) == "vcn"
    return cells


def _cells(rows: list[dict]) -> Counter:
    cells: Counter = Counter()
    for r in rows:
        if r["set"] != "all" and r["n"]:
            cells[(r["set"], r["opponent"], "n")] += r["n"]
            cells[(r["set"], r["opponent"], "k")] += r["preferred"]
    return cells


def test_score_counts_only_valid_rows_of_an_altered_store(runs: Path, tmp_path: Path, capsys) -> None:
    """#12: LEFT/banana choices, a row four times, another sheet's answers, unknown participants, question 1.7."""
    from blindbench.cli import main

    study = _make(runs, tmp_path / "s", sheets=2, pairs=3)
    store = AnswerStore(load_study(study))
    valid = [("p01", 1, 1, "left"), ("p01", 1, 2, "right"), ("p01", 1, 3, "right"), ("p02", 2, 1, "left")]
    for participant, _, question, choice in valid:
        store.record(participant, question, choice)
    db = _rebuilt_store(study)
    bad = [
        *[("p01", 1, 1, "right")] * 3,  # the first answer, repeated (four rows in all): 3 duplicate
        ("p02", 2, 2, "LEFT"),  # bad choice
        ("p02", 2, 3, "banana"),  # bad choice
        ("p01", 2, 2, "left"),  # p01 answers sheet 2 (p02's): wrong sheet
        ("p99", 1, 2, "left"),  # unknown participant
        (None, 1, 2, "left"),  # unknown participant
        ("p02", "2", 2, "left"),  # bad sheet (text)
        ("p02", 2, 1.7, "left"),  # bad question
        ("p02", 2, 9, "left"),  # unknown question
    ]
    db.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, 'now', NULL)", bad)
    db.close()
    capsys.readouterr()
    rows = table2_rows(study)
    assert _cells(rows) == _expected_cells(study, [(s, q, c) for _, s, q, c in valid])
    assert capsys.readouterr().err == (
        f"rejected 11 answer rows of 15 in {study / 'answers.sqlite'}: 3 duplicate, 2 unknown participant, "
        "2 bad choice, 1 bad sheet, 1 bad question, 1 wrong sheet, 1 unknown question; scored the other 4\n"
    )
    stored = read_answer_store(study / "answers.sqlite")
    assert [(a.participant, a.sheet, a.question, a.choice) for a in stored] == valid
    assert main(["study", "score", str(study)]) == 0
    assert "rejected 11 answer rows of 15" in capsys.readouterr().err


def test_score_counts_only_valid_rows_of_an_answers_csv(runs: Path, tmp_path: Path, capsys) -> None:
    """#12, the --answers CSV import: the same checks, rows left out and counted instead of a first-row error."""
    study = _make(runs, tmp_path / "s", sheets=2, pairs=3)
    form = tmp_path / "form.csv"
    form.write_text(
        "participant,sheet,question,choice\n"
        "p01,1,1,left\n"  # ok
        "p01,1,1,left\n"  # duplicate
        "p01,1,1,right\n"  # duplicate (and a change of mind: the first answer stands)
        "p99,1,2,left\n"  # unknown participant
        "p01,2,1,left\n"  # wrong sheet
        "p01,1,1.7,left\n"  # bad question
        "p01,x,2,left\n"  # bad sheet
        "p01,1,9,left\n"  # unknown question
        "p01,1,2,banana\n"  # bad choice
        "p01,1,3, R \n"  # ok: r means right, as documented
        ",2,1,left\n"  # ok: no participant, every row one answer
        ",2,1,left\n"  # ok
    )
    capsys.readouterr()
    rows = table2_rows(study, form)
    assert _cells(rows) == _expected_cells(study, [(1, 1, "left"), (1, 3, "right"), (2, 1, "left"), (2, 1, "left")])
    assert capsys.readouterr().err == (
        f"rejected 8 answer rows of 12 in {form}: 2 duplicate, 1 unknown participant, 1 bad sheet, "
        "1 bad question, 1 wrong sheet, 1 unknown question, 1 bad choice; scored the other 4\n"
    )


def test_server_requires_the_token_a_local_host_and_same_origin(runs: Path, tmp_path: Path) -> None:
    """#13: sequential ids and no Host/Origin check let any local process or rebinding page answer for anyone."""
    study = _make(runs, tmp_path / "s", sheets=2, pairs=3)
    with StudyServer(study, port=0).start() as server:
        base, port = server.url, server.port
        token = server.study.token_of("p01")
        answer = {"token": token, "question": 1, "choice": "left"}
        # The id alone, or a wrong token, is no way in: neither to read the sheet nor to answer.
        assert _request(base + "api/state?participant=p01")[0] == 404
        assert _request(base + "api/state?token=" + token[:-1] + "x")[0] == 404
        assert _request(base + "api/answer", {"participant": "p01", "question": 1, "choice": "left"})[0] == 404
        # A Host that is not this server (a DNS-rebinding page sends its own domain), or another port.
        for host in (f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", f"localhost.evil:{port}"):
            for path, body in (("", None), (f"api/state?token={token}", None), ("api/answer", answer)):
                status, reply = _request(base + path, body, headers={"Host": host})
                assert status == 403 and reply["error"] == f"Host {host!r} is not this server", (host, path)
        # A POST from a page of another origin, or an opaque one.
        for origin in ("http://evil.example", f"http://localhost:{port + 1}", "null", f"https://127.0.0.1:{port}"):
            status, reply = _request(base + "api/answer", answer, headers={"Origin": origin})
            assert status == 403 and reply["error"].startswith("cross-origin request refused"), origin
        assert read_answer_store(study / "answers.sqlite") == []
        # Bodies over 64 KiB.
        status, reply = _request(base + "api/answer", {**answer, "pad": "x" * 70_000})
        assert status == 413 and reply["error"] == "body over 65536 bytes"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # a length it never sends
            raw.sendall(b"POST /api/answer HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 99999999999\r\n\r\n" % port)  # fmt: skip
            assert raw.makefile("rb").readline().startswith(b"HTTP/1.0 413")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # HTTP/1.0 without a Host
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert raw.makefile("rb").readline().startswith(b"HTTP/1.0 400")
        # The link as handed out, with localhost or the bound address, and a same-origin page, still work.
        assert _request(f"http://localhost:{port}/?t={token}")[0] == 200
        status, _ = _request(base + "api/answer", answer, headers={"Origin": f"http://127.0.0.1:{port}"})
        assert status == 200
        status, reply = _request(f"http://localhost:{port}/api/answer", {**answer, "question": 2},
                                 headers={"Origin": f"http://localhost:{port}"})  # fmt: skip
        assert status == 200 and reply["state"]["participant"] == "p01" and reply["state"]["answered"] == 2


def _crash_mid_write(db_path: Path) -> None:
    """A server killed -9 inside a write: a hot journal stays next to the database."""
    code = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA cache_size = 2')\n"  # spill to the file mid-transaction, as a big write would
        "db.execute('BEGIN')\n"
        "for i in range(1500):\n"
        "    db.execute(\"INSERT INTO answers VALUES (?, 1, 1, 'left', 'now', NULL)\", ('x' * 200 + str(i),))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(db_path)], check=False)


def test_score_reads_a_store_with_a_leftover_journal_read_only(runs: Path, tmp_path: Path, capsys) -> None:
    """#14: after kill -9 of the server, score and tables --study failed: attempt to write a readonly database."""
    from blindbench.cli import main

    study = _make(runs, tmp_path / "s", sheets=2, pairs=3)
    store = AnswerStore(load_study(study))
    store.record("p01", 1, "left")
    store.record("p02", 2, "right")
    expected = table2_rows(study)
    db_path = study / "answers.sqlite"
    _crash_mid_write(db_path)
    journal = Path(f"{db_path}-journal")
    assert journal.stat().st_size > 0
    ro = closing(sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True))
    with pytest.raises(sqlite3.OperationalError, match="readonly database"), ro as db:  # the reported failure
        db.execute("SELECT count(*) FROM answers").fetchall()
    before = {p.name: p.read_bytes() for p in study.iterdir() if p.is_file()}
    modes = {p: p.stat().st_mode for p in [study, *study.iterdir()]}
    try:
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)  # nothing may be written in the study folder
        assert table2_rows(study) == expected  # the crashed write is rolled back, on a copy
        assert main(["study", "score", str(study), "--out", str(tmp_path / "t2.csv")]) == 0
        assert main(["tables", "--runs", str(runs), "--study", str(study), "--out", str(tmp_path / "tables")]) == 0
        assert (tmp_path / "tables" / "table2.csv").read_text() == (tmp_path / "t2.csv").read_text()
        assert "readonly" not in capsys.readouterr().err
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert {p.name: p.read_bytes() for p in study.iterdir() if p.is_file()} == before  # journal and db untouched
    assert len(AnswerStore(load_study(study)).all()) == 2  # the server, a writer, rolls it back itself


def test_server_answers_400_to_huge_numbers_and_deep_json(runs: Path, tmp_path: Path) -> None:
    """#15: elapsed_ms 1e23 raised OverflowError and 2000-deep JSON RecursionError, with no reply at all."""
    study = _make(runs, tmp_path / "s", sheets=1, pairs=3)
    with StudyServer(study, port=0).start() as server:
        base = server.url
        answer = {"token": server.study.token_of("p01"), "question": 1, "choice": "left"}
        for elapsed in (10**23, 1e23, -1, 2**63, True, "900", 1.5):
            status, reply = _request(base + "api/answer", {**answer, "elapsed_ms": elapsed})
            assert status == 400 and reply["error"].startswith("elapsed_ms must be whole milliseconds from 0 to ")
            assert "\n" not in reply["error"], elapsed
        for deep in ("[" * 2000 + "]" * 2000, '{"token": ' * 2000 + "1" + "}" * 2000):
            request = urllib.request.Request(
                base + "api/answer", data=deep.encode(), headers={"Content-Type": "application/json"}
            )
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(request, timeout=10)
            assert e.value.code == 400 and json.loads(e.value.read()) == {"error": "bad JSON: nested too deeply"}
        deep_question = {**answer, "question": json.loads("[" * 900 + "]" * 900)}
        status, reply = _request(base + "api/answer", deep_question)
        assert status == 404 and reply["error"].startswith("sheet 1 has no question")
        assert _request(base + "api/answer", {**answer, "elapsed_ms": 2**63 - 1})[0] == 200  # still serving
    assert [(a.question, a.choice) for a in read_answer_store(study / "answers.sqlite")] == [(1, "left")]
    with pytest.raises(BlindbenchError, match="elapsed_ms must be whole milliseconds"):
        AnswerStore(load_study(study)).record("p01", 2, "left", elapsed_ms=10**23)


@pytest.mark.parametrize("words", [["study"], ["study", "make"], ["study", "serve"], ["study", "score"]])
def test_study_help_builds(words: list[str], capsys) -> None:
    """argparse %-formats help strings: "95%" in the score command's help crashed `blindbench study --help`."""
    from blindbench.cli import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*words, "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    assert "%%" not in out and ("Wilson 95 percent CI" in out) == (words in (["study"], ["study", "score"]))

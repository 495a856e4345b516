"""``blindbench study score``: answers + key → Table 2, the share of answers preferring the studied method.

Per (set, opponent), and pooled over sets (set ``all``) when the study has more than one: n answers, k of them
for the method, share k/n, the Wilson score 95% interval, and the two-sided exact binomial p-value against 0.5.
Only answer rows that pass every check count; the rest are reported as one line of counts by reason
(:class:`blindbench.study.answers.Checked`).
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

from blindbench.errors import BlindbenchError
from blindbench.imageio import atomic_write_bytes
from blindbench.study.answers import ANSWERS_NAME, Checked, check_answer_store, check_answers_csv
from blindbench.study.config import StudyScoreConfig
from blindbench.study.sheets import load_key, load_study

TABLE2_COLUMNS = ("set", "method", "opponent", "n", "preferred", "share", "ci_low", "ci_high", "p_value")


def _binomtest(k: int, n: int):
    """scipy's exact binomial test of k successes in n against p = 0.5 (n ≥ 1, 0 ≤ k ≤ n, else ValueError)."""
    from scipy.stats import binomtest

    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 ≤ k ≤ n and n ≥ 1, got k={k}, n={n}")
    return binomtest(k, n, 0.5)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial share k/n (n ≥ 1), from ``scipy.stats.binomtest``."""
    ci = _binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def binomial_p_two_sided(k: int, n: int) -> float:
    """Exact two-sided binomial test of k successes in n against p = 0.5 (``scipy.stats.binomtest``)."""
    return float(_binomtest(k, n).pvalue)


def _row(set_name: str, method: str, opponent: str, k: int, n: int) -> dict:
    if n == 0:
        return {"set": set_name, "method": method, "opponent": opponent, "n": 0, "preferred": 0,
                "share": None, "ci_low": None, "ci_high": None, "p_value": None}  # fmt: skip
    test = _binomtest(k, n)
    ci = test.proportion_ci(confidence_level=0.95, method="wilson")
    return {
        "set": set_name,
        "method": method,
        "opponent": opponent,
        "n": n,
        "preferred": k,
        "share": k / n,
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "p_value": float(test.pvalue),
    }


def score_study(
    study_dir: str | os.PathLike[str], answers_csv: str | os.PathLike[str] | None = None
) -> tuple[list[dict], Checked]:
    """Table 2 of a study (see :func:`table2_rows`) and the answer rows it was built from (with those left out)."""
    study = load_study(study_dir, check_images=False)
    key = load_key(study)
    checked = (
        check_answers_csv(answers_csv, study) if answers_csv else check_answer_store(study.root / ANSWERS_NAME, study)
    )
    method = study.manifest["method"]
    sets, opponents = list(study.manifest["sets"]), list(study.manifest["opponents"])
    counts: dict[tuple[str, str], list[int]] = {(s, o): [0, 0] for s in sets for o in opponents}
    for answer in checked.answers:  # each names a question of the sheets, and load_key checked the key has them all
        entry = key[(answer.sheet, answer.question)]
        chosen = entry.left if answer.choice == "left" else entry.right
        cell = counts.setdefault((entry.set, entry.opponent), [0, 0])
        cell[0] += chosen == method
        cell[1] += 1
    rows = [_row(s, method, o, *counts[(s, o)]) for s in sets for o in opponents]
    if len(sets) > 1:
        for o in opponents:
            k = sum(counts[(s, o)][0] for s in sets)
            n = sum(counts[(s, o)][1] for s in sets)
            rows.append(_row("all", method, o, k, n))
    return rows, checked


def table2_rows(study_dir: str | os.PathLike[str], answers_csv: str | os.PathLike[str] | None = None) -> list[dict]:
    """Table 2 of a study: one row per (set, opponent), then pooled ``all`` rows when there are several sets.

    Answer rows that fail a check (unknown participant, another sheet, no such question, a bad choice, a
    repeat) are left out, and one line on stderr says how many, by reason.

    Args:
        study_dir: the study folder (its key.json is required).
        answers_csv: answers exported from another survey tool (sheet, question, choice); default: the
            served answers in ``<study>/answers.sqlite``.

    Returns:
        Dicts with keys ``TABLE2_COLUMNS``: share, ci_low, ci_high, p_value are None where n is 0.

    Raises:
        BlindbenchError: missing key or answers, a sheet changed after ``make``, a key or answers of another
            study.
    """
    rows, checked = score_study(study_dir, answers_csv)
    if checked.rejected:
        print(checked.report(), file=sys.stderr)
    return rows


def write_table2_csv(rows: list[dict], path: str | os.PathLike[str]) -> None:
    """Write rows as CSV (floats with 6 decimals, empty where undefined), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE2_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_bytes(path, buffer.getvalue().encode())


def table2_markdown(rows: list[dict]) -> str:
    """Table 2 as a markdown table."""
    method = rows[0]["method"] if rows else "method"
    lines = [
        f"| set | opponent | prefer {method} | n | 95% CI (Wilson) | p (exact binomial vs 0.5) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["n"] == 0:
            lines.append(f"| {r['set']} | {r['opponent']} | – | 0 | – | – |")
            continue
        p = f"{r['p_value']:.2g}" if r["p_value"] < 0.001 else f"{r['p_value']:.3f}"
        lines.append(
            f"| {r['set']} | {r['opponent']} | {100 * r['share']:.1f}% | {r['n']} | "
            f"{100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f}% | {p} |"
        )
    return "\n".join(lines)


def run_study_score(cfg: StudyScoreConfig) -> list[dict]:
    """``blindbench study score``: write table2.csv, print it as markdown, return the rows."""
    if not cfg.study:
        raise BlindbenchError("give the study folder to score")
    rows = table2_rows(cfg.study, cfg.answers or None)
    out = Path(cfg.out) if cfg.out else Path(cfg.study) / "table2.csv"
    write_table2_csv(rows, out)
    print(table2_markdown(rows))
    print(f"\ntable: {out}")
    return rows

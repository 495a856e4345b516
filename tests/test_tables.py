"""``blindbench tables``: golden output on fixture CSVs, hand-computed cells, bad inputs as one-line errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import shutil
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import t

from blindbench.errors import BlindbenchError
from blindbench.results import REQUIRED_COLUMNS
from blindbench.tables import (
    TablesConfig,
    area_bins,
    coverage_notes,
    interval95,
    is_ablation,
    load_runs,
    robustness,
    run_tables,
    table1,
    table1_rows,
    table3,
    to_markdown,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tables"
RUNS = FIXTURES / "runs"
EXPECTED = FIXTURES / "expected"
HEADER = ",".join(REQUIRED_COLUMNS)


def _copy_runs(tmp_path: Path) -> Path:
    return Path(shutil.copytree(RUNS, tmp_path / "runs"))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _error(call, pattern: str) -> str:
    with pytest.raises(BlindbenchError, match=pattern) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_interval95_is_the_t_interval_by_hand() -> None:
    mean, half, n = interval95([20.0, 22.0, float("nan"), 21.0])
    # mean 21, sample sd 1, t(0.975, 2) = 4.302652729749462
    assert n == 3 and mean == 21.0
    assert half == pytest.approx(4.302652729749462 / math.sqrt(3), rel=1e-12)
    assert interval95([22.0, 21.0, 20.0]) == (mean, half, n)  # order does not matter
    one = interval95([0.5])
    assert one[0] == 0.5 and math.isnan(one[1]) and one[2] == 1
    none = interval95([float("nan")])
    assert math.isnan(none[0]) and math.isnan(none[1]) and none[2] == 0


def test_load_runs_reads_every_csv_and_keeps_keys_as_text() -> None:
    df = load_runs(RUNS)
    assert len(df) == 19
    assert sorted(set(df["method"])) == ["gc", "input", "mine", "oracle-telea", "vcn", "vcn-ed", "vcn-rm"]
    assert "000000" in set(df["key"])  # not parsed as the number 0
    assert df.loc[df["method"] == "input", "bce"].isna().all()
    assert df.loc[df["method"] == "mine", "iou"].isna().all()  # the text "nan" is a missing value
    assert set(df["line"]) >= {2, 3, 4}
    assert df["source"].str.endswith("samples.csv").all()


def test_table1_cells_match_a_hand_computation() -> None:
    table = table1(load_runs(RUNS))
    assert list(table.columns[:3]) == ["set", "method", "n"]
    # sets: the paper's first, then the others alphabetically; methods: references, baselines, vcn, others
    assert list(zip(table["set"], table["method"], strict=True)) == [
        ("ffhq-2k", "input"),
        ("ffhq-2k", "oracle-telea"),
        ("ffhq-2k", "gc"),
        ("ffhq-2k", "vcn"),
        ("places2-4k", "vcn"),
        ("places2-4k", "mine"),
        ("photos-demo", "vcn"),
    ]
    gc = table[(table["set"] == "ffhq-2k") & (table["method"] == "gc")].iloc[0]
    psnr = [17.0, 18.0, 19.5]
    mean = sum(psnr) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in psnr) / 2)
    assert gc["psnr"] == pytest.approx(mean, rel=1e-12)
    assert gc["psnr_ci95"] == pytest.approx(t.ppf(0.975, 2) * sd / math.sqrt(3), rel=1e-12)
    assert f"{gc['psnr']:.2f} ± {gc['psnr_ci95']:.2f}" == "18.17 ± 3.13"
    markdown = to_markdown(table)
    assert "| ffhq-2k | gc | 3 | 0.700 ± 0.248 | 18.17 ± 3.13 | 0.6100 ± 0.0248 |" in markdown
    # n = 1: no interval; reference rows have no mask, so no BCE; a metric missing in some rows says so
    assert "| places2-4k | vcn | 1 | 0.250 | 20.54 | 0.6988 |" in markdown
    assert "| ffhq-2k | input | 3 | – | 14.00 ± 2.48 | 0.5000 ± 0.1242 |" in markdown
    assert "| photos-demo | vcn | 2 | 0.350 (n=1) | 18.50 ± 6.35 | 0.6250 ± 0.3177 |" in markdown


def test_ablations_go_to_table3_only() -> None:
    df = load_runs(RUNS)
    assert not table1(df)["method"].isin(["vcn-ed", "vcn-rm"]).any()
    ablation = table3(df)
    # paper order, full VCN last; only sets that have an ablation
    assert list(ablation["method"]) == ["vcn-ed", "vcn-rm", "vcn"]
    assert set(ablation["set"]) == {"ffhq-2k"}
    assert table3(df[~df["model"].isin(["vcn-ed", "vcn-rm"])]).empty


def _rows(method: str, model: str, keys, checkpoint: str = "", set_name: str = "ffhq-2k", psnr=None) -> str:
    psnr = psnr or [20.0 + i for i in range(len(keys))]
    return "".join(
        f"{method},{model},{checkpoint},{set_name},{key},real,0.2,0.5,{p},0.7,,,,,\n"
        for key, p in zip(keys, psnr, strict=True)
    )


def test_ablation_membership_comes_from_the_model_not_the_label(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    keys = ["k0", "k1"]
    _write(runs / "a" / "samples.csv", HEADER + "\n" + _rows("vcn", "vcn", keys))
    # a full VCN under another label: Table 1, and beside the ablations in Table 3
    _write(runs / "b" / "samples.csv", HEADER + "\n" + _rows("vcn-ffhqtrained", "vcn", keys))
    # an ablation model under any label is an ablation
    _write(runs / "c" / "samples.csv", HEADER + "\n" + _rows("my-rm", "vcn-rm", keys))
    # w/o SC trains the full vcn model with lambda_s = 0: known by its label
    _write(runs / "d" / "samples.csv", HEADER + "\n" + _rows("vcn-no-sc", "vcn", keys))
    _write(runs / "e" / "samples.csv", HEADER + "\n" + _rows("gc", "gc", keys))
    df = load_runs(runs)
    assert list(table1(df)["method"]) == ["gc", "vcn", "vcn-ffhqtrained"]
    # known ablations in the paper's order, other ablations, then full VCN (vcn first)
    assert list(table3(df)["method"]) == ["vcn-no-sc", "my-rm", "vcn", "vcn-ffhqtrained"]
    assert not is_ablation("vcn-ffhqtrained", "vcn") and not is_ablation("gc", "gc")
    assert is_ablation("x", "vcn-ed") and is_ablation("vcn-no-sc", "vcn")


def test_methods_scored_on_different_samples_are_flagged(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    # input run with --limit 1 beside a full 3-sample vcn run; gc has 3 samples but not the same ones
    _write(runs / "in" / "samples.csv", HEADER + "\n" + _rows("input", "", ["k0"], psnr=[10.0]))
    _write(runs / "v" / "samples.csv", HEADER + "\n" + _rows("vcn", "vcn", ["k0", "k1", "k2"], "v.pt"))
    _write(runs / "g" / "samples.csv", HEADER + "\n" + _rows("gc", "gc", ["k0", "k1", "k3"], "g.pt"))
    _write(runs / "p" / "samples.csv", HEADER + "\n" + _rows("vcn", "vcn", ["p0"], "vp.pt", "places2-4k"))
    df = load_runs(runs)
    notes = coverage_notes(table1_rows(df))
    assert notes == [
        "warning: ffhq-2k: the methods were scored on different samples (input 1, gc 3, vcn 3 keys; 1 in common),"
        " so their means are not over the same images; --common-keys keeps only the common ones"
    ]
    run_tables(TablesConfig(runs=str(runs), out=str(tmp_path / "all")))
    printed = capsys.readouterr().out
    table, rest = printed.split("## Table 3")
    assert table.rstrip().endswith(notes[0])
    # --common-keys: every method of a set on the samples all of them have
    written = run_tables(TablesConfig(runs=str(runs), out=str(tmp_path / "common"), common_keys=True))
    printed = capsys.readouterr().out
    assert "warning" not in printed
    kept = "ffhq-2k 1 of 4 keys, places2-4k 1 of 1 keys"
    assert f"--common-keys: means over the samples every method of a set has: {kept}\n" in printed
    assert "| ffhq-2k | input | 1 | 0.500 | 10.00 | 0.7000 |" in printed
    assert "| ffhq-2k | vcn | 1 | 0.500 | 20.00 | 0.7000 |" in printed
    assert "| places2-4k | vcn | 1 | 0.500 | 20.00 | 0.7000 |" in printed
    assert '"common_keys": true' in written["config"].read_text()
    # no sample every method has: refused, not an empty table
    _write(runs / "m" / "samples.csv", HEADER + "\n" + _rows("mine", "mine", ["z9"]))
    _error(
        lambda: run_tables(TablesConfig(runs=str(runs), out=str(tmp_path / "none"), common_keys=True)),
        r"--common-keys: no sample of set ffhq-2k is scored by every method \(input 1, gc 3, vcn 3, mine 1 keys\)",
    )


def test_one_method_with_two_checkpoints_in_a_set_is_refused(tmp_path: Path) -> None:
    runs = _copy_runs(tmp_path)
    _write(runs / "vcn-more" / "samples.csv", HEADER + "\n" + _rows("vcn", "vcn", ["k7"], "ckpt/vcn-new.pt"))
    _error(
        lambda: load_runs(runs),
        r"method 'vcn', set 'ffhq-2k' mixes checkpoint 'ckpt/vcn-ffhq.pt' \(.*vcn-ffhq-2k/samples.csv line 2\) and "
        r"'ckpt/vcn-new.pt' \(.*vcn-more/samples.csv line 2\)",
    )
    _write(runs / "vcn-more" / "samples.csv", HEADER + "\n" + _rows("vcn", "vcn-rm", ["k7"], "ckpt/vcn-ffhq.pt"))
    _error(lambda: load_runs(runs), r"method 'vcn', set 'ffhq-2k' mixes model 'vcn' \(.*\) and 'vcn-rm' \(.*\)")
    # the same method with another checkpoint in another set is fine (one checkpoint per set)
    _write(runs / "vcn-more" / "samples.csv", HEADER + "\n" + _rows("vcn", "vcn", ["k7"], "x.pt", "imagenet-4k"))
    assert len(load_runs(runs)) == 20


def test_robustness_and_area_bins_group_by_pattern_and_area() -> None:
    df = load_runs(RUNS)
    rob = robustness(df)
    real = rob[(rob["set"] == "ffhq-2k") & (rob["pattern"] == "real") & (rob["method"] == "vcn")].iloc[0]
    assert real["n"] == 2 and real["psnr"] == pytest.approx(21.0)  # keys 000000 and 000002
    assert list(rob.loc[rob["set"] == "ffhq-2k", "pattern"].drop_duplicates()) == ["real", "colour"]
    bins = area_bins(df)
    vcn = bins[(bins["set"] == "ffhq-2k") & (bins["method"] == "vcn")]
    # 0.05 -> 0-10%; 0.1 and 0.15 -> 10-20% (a bin holds its lower edge)
    assert list(zip(vcn["area_bin"], vcn["n"], strict=True)) == [("0-10%", 1), ("10-20%", 2)]
    # 0.3 written as 0.3 and as 0.29999999999999999 both land in 30-40%; 1.0 lands in the last bin
    assert list(bins.loc[bins["set"] == "photos-demo", "area_bin"]) == ["30-40%"]
    assert set(bins.loc[bins["set"] == "places2-4k", "area_bin"]) == {"90-100%"}
    wide = area_bins(df, width=30)
    assert set(wide["area_bin"]) == {"0-30%", "30-60%", "90-100%"}


def test_run_tables_writes_exactly_the_expected_text(tmp_path: Path, capsys) -> None:
    written = run_tables(TablesConfig(runs=str(RUNS), out=str(tmp_path), paper=True))
    printed = capsys.readouterr().out
    assert printed == (EXPECTED / "tables.md").read_text()
    assert written["markdown"].read_text() == printed
    for name in ("table1", "table3", "robustness", "area_bins"):
        assert written[name] == tmp_path / f"{name}.csv"
        assert written[name].read_text() == (EXPECTED / f"{name}.csv").read_text(), name
    assert "table2" not in written
    assert '"paper": true' in written["config"].read_text()
    # the paper's numbers sit beside ours, with the paper's decimals
    assert "| ffhq-2k | vcn | 3 | 0.400 ± 0.248 | 21.00 ± 2.48 | 0.7200 ± 0.0497 | 0.400 / 20.94 / 0.6999 |" in printed
    assert "| ffhq-2k | vcn-ed | 1 | – | 19.43 | 0.6135 | – / 19.43 / 0.6135 |" in printed


def test_the_recorded_command_regenerates_the_golden_files(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("regenerate_tables", FIXTURES / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.regenerate(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in EXPECTED.iterdir())
    for path in written:
        assert path.read_bytes() == (EXPECTED / path.name).read_bytes(), path.name


def test_run_tables_defaults_to_the_runs_folder_and_honours_options(tmp_path: Path, capsys) -> None:
    runs = _copy_runs(tmp_path)
    written = run_tables(TablesConfig(runs=str(runs), metrics="psnr,iou", extra_decimals=1))
    printed = capsys.readouterr().out
    assert written["table1"] == runs / "table1.csv"
    header = (runs / "table1.csv").read_text().splitlines()[0]
    assert header == "set,method,n,psnr,psnr_ci95,psnr_n,iou,iou_ci95,iou_n"
    assert "| ffhq-2k | vcn | 3 | 21.000 ± 2.484 | 0.70000 ± 0.24841 |" in printed
    assert "paper" not in printed
    # a second run finds its own outputs harmless (they are not samples.csv) and rewrites the same bytes
    before = (runs / "table1.csv").read_bytes()
    run_tables(TablesConfig(runs=str(runs), metrics="psnr,iou", extra_decimals=1))
    assert (runs / "table1.csv").read_bytes() == before


def test_user_study_rows_become_table2(tmp_path: Path, monkeypatch, capsys) -> None:
    calls = []

    def table2_rows(study_dir, answers_csv=None):
        calls.append((study_dir, answers_csv))
        return [
            {"set": "ffhq-2k", "opponent": "ca", "n": 480, "share": 0.9964, "p_value": 1.5e-30},
            {"set": "ffhq-2k", "opponent": "gmc", "n": 0, "share": None, "p_value": None},
        ]

    fake = types.ModuleType("blindbench.study")
    fake.table2_rows = table2_rows
    monkeypatch.setitem(sys.modules, "blindbench.study", fake)
    monkeypatch.setattr("blindbench.study", fake, raising=False)
    written = run_tables(TablesConfig(runs=str(RUNS), out=str(tmp_path), study="/study", answers="/a.csv"))
    assert calls == [("/study", "/a.csv")]
    assert written["table2"].read_text() == (
        "set,opponent,n,share,p_value\nffhq-2k,ca,480,0.996400,0.000000\nffhq-2k,gmc,0,,\n"
    )
    printed = capsys.readouterr().out
    assert (
        "| set | opponent | n | share | p_value |\n|---|---|---:|---:|---:|\n"
        "| ffhq-2k | ca | 480 | 0.9964 | 1.5e-30 |\n| ffhq-2k | gmc | 0 | – | – |\n"
    ) in printed
    assert printed.index("Table 2") < printed.index("Table 3")
    # without --answers the study's own answers are used; its markdown layout is used when it has one
    fake.table2_markdown = lambda rows: f"study layout, {len(rows)} rows"
    run_tables(TablesConfig(runs=str(RUNS), out=str(tmp_path / "again"), study="/study"))
    assert calls[-1] == ("/study", None)
    assert "## Table 2: user study (table2.csv)\n\nstudy layout, 2 rows\n" in capsys.readouterr().out
    # a study without answers yet: no table2.csv, a note instead
    fake.table2_rows = lambda study_dir, answers_csv=None: []
    written = run_tables(TablesConfig(runs=str(RUNS), out=str(tmp_path / "empty"), study="/study"))
    assert "table2" not in written and "(no answers in /study)" in capsys.readouterr().out


def test_duplicate_samples_across_runs_are_one_line_errors(tmp_path: Path) -> None:
    runs = _copy_runs(tmp_path)
    shutil.copytree(runs / "vcn-ffhq-2k", runs / "vcn-rerun")
    message = _error(
        lambda: load_runs(runs),
        r"duplicate sample: method 'vcn', set 'ffhq-2k', key '000000' in .*vcn-ffhq-2k/samples.csv line 2 and "
        r".*vcn-rerun/samples.csv line 2 \(2 more duplicated samples\)",
    )
    assert message.startswith("duplicate sample")
    # the same key in another set or for another method is no duplicate
    assert len(load_runs(RUNS)) == 19


def test_missing_or_malformed_csvs_name_the_file(tmp_path: Path) -> None:
    _error(lambda: load_runs(tmp_path / "nope"), "runs folder not found: .*nope")
    _error(lambda: load_runs(tmp_path), f"no samples.csv below {tmp_path}")
    runs = _copy_runs(tmp_path)
    bad = runs / "broken" / "samples.csv"
    _write(bad, f"{HEADER}\nvcn,vcn,x,ffhq-2k,k9,real,0.1,0.3,20,0.7,,,,,,,,extra\n")
    _error(lambda: load_runs(runs), rf"{bad} line 2: 18 fields, the header has 15")
    _write(bad, f"{HEADER}\nvcn,vcn,x,ffhq-2k,k9,real,0.1,0.3,20,0.7,,,,,\n\nvcn,vcn,x,ffhq-2k,k8,real,0.1,0.3\n")
    _error(lambda: load_runs(runs), rf"{bad} line 4: 8 fields, the header has 15")
    _write(bad, "")
    _error(lambda: load_runs(runs), f"cannot read {bad}: empty file")
    _write(bad, "method,set,key,psnr\nvcn,ffhq-2k,k9,20\n")
    _error(lambda: load_runs(runs), rf"{bad}: missing column\(s\) model, checkpoint, pattern, mask_area, bce")
    _write(bad, f"{HEADER}\nvcn,vcn,x,ffhq-2k,k9,real,0.1,0.3,twenty,0.7,,,,,\n")
    _error(lambda: load_runs(runs), rf"{bad} line 2: psnr is not a number: 'twenty'")
    _write(bad, f"{HEADER}\nvcn,vcn,x,ffhq-2k,k9,real,0.1,0.3,20,0.7,,,,,\nvcn,vcn,x,,k8,real,0.1,0.3,20,0.7,,,,,\n")
    _error(lambda: load_runs(runs), rf"{bad} line 3: empty set")
    _write(bad, f"{HEADER}\nvcn,vcn,x,ffhq-2k,k9,real,1.5,0.3,20,0.7,,,,,\n")
    _error(lambda: load_runs(runs), rf"{bad} line 2: mask_area 1.5 is outside \[0, 1\]")
    _write(bad, f"{HEADER}\nvcn,vcn,x,ffhq-2k,k9,real,0.5,0.3,inf,0.7,,,,,\n")
    _error(lambda: load_runs(runs), rf"{bad} line 2: psnr is not finite")
    bad.write_bytes(b"method,\xff\xfe\x00garbage\n")
    _error(lambda: load_runs(runs), f"cannot read {bad}: 'utf-8' codec can't decode")


def test_empty_metrics_and_missing_areas_are_handled(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _write(
        runs / "a" / "samples.csv",
        f"{HEADER}\ninput,,,ffhq-2k,k1,real,,,15,0.5,,,,,\ninput,,,ffhq-2k,k2,real,0.2,,,0.6,,,,,\n",
    )
    df = load_runs(runs)
    table = table1(df)
    row = table.iloc[0]
    assert (row["n"], row["bce_n"], row["psnr_n"], row["ssim_n"]) == (2, 0, 1, 2)
    assert to_markdown(table).splitlines()[-1] == "| ffhq-2k | input | 2 | – | 15.00 (n=1) | 0.5500 ± 0.6353 |"
    assert list(area_bins(df)["n"]) == [1]  # the row without mask_area is left out of the area table
    run_tables(TablesConfig(runs=str(runs)))
    assert (runs / "table1.csv").read_text().splitlines()[1] == "ffhq-2k,input,2,,,0,15.00,,1,0.5500,0.6353,2"
    # no ablation: table3.csv holds just its header
    assert (
        runs / "table3.csv"
    ).read_text() == "set,method,n,bce,bce_ci95,bce_n,psnr,psnr_ci95,psnr_n,ssim,ssim_ci95,ssim_n\n"


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    _error(lambda: run_tables(TablesConfig()), "give --runs DIR")
    _error(lambda: run_tables(TablesConfig(runs=str(RUNS), metrics="psnr,ssmi")), "unknown metric 'ssmi'; did you mean")
    _error(lambda: run_tables(TablesConfig(runs=str(RUNS), out=str(tmp_path), area_bin=0)), "area bin width")
    _error(lambda: run_tables(TablesConfig(runs=str(RUNS), extra_decimals=-1)), "extra-decimals")


def test_config_is_frozen_and_documented() -> None:
    fields = dataclasses.fields(TablesConfig)
    assert [f.name for f in fields][:4] == ["runs", "out", "study", "answers"]
    assert all(f.metadata.get("help") for f in fields)
    with pytest.raises(dataclasses.FrozenInstanceError):
        TablesConfig().runs = "x"  # type: ignore[misc]


def test_a_bad_study_folder_writes_no_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "table1.csv").write_text("earlier\n")
    with pytest.raises(BlindbenchError):
        run_tables(TablesConfig(runs=str(RUNS), out=str(out), study=str(tmp_path / "no-such-study")))
    assert sorted(p.name for p in out.iterdir()) == ["table1.csv"]
    assert (out / "table1.csv").read_text() == "earlier\n"


def test_composite_columns_are_tabulated_when_runs_have_them(tmp_path: Path) -> None:
    header = HEADER + ",psnr_composite,ssim_composite"
    rows = [f"vcn,vcn,ck,s,k{i},real,0.3,0.5,{20 + i},0.7,,,,,,{24 + i},0.8" for i in range(3)]
    _write(tmp_path / "runs" / "new" / "samples.csv", "\n".join([header, *rows]) + "\n")
    written = run_tables(TablesConfig(runs=str(tmp_path / "runs")))
    table = pd.read_csv(written["table1"])
    assert table.loc[0, "psnr_composite"] == pytest.approx(25.0) and table.loc[0, "psnr"] == pytest.approx(21.0)
    assert "PSNR-C" in written["markdown"].read_text()
    old = run_tables(TablesConfig(runs=str(RUNS), out=str(tmp_path / "old")))  # older CSVs: no composite columns
    assert "psnr_composite" not in pd.read_csv(old["table1"]).columns


def test_table3_rows_come_from_the_registry_without_torch() -> None:
    import subprocess
    import sys

    from blindbench.models import model_names
    from blindbench.tables import ABLATION_LABELS, ABLATIONS

    assert [m for m in ABLATIONS if m not in ABLATION_LABELS] == model_names(table=3)
    code = "import sys, blindbench.tables; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"

"""``blindbench.results``: the metric table drives eval's columns and the tables; the one reader of run folders."""

from __future__ import annotations

import csv
import importlib.abc
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blindbench import evaluate, results
from blindbench.errors import BlindbenchError
from blindbench.evaluate import EvalConfig, run_eval, score_batch
from blindbench.results import REQUIRED_COLUMNS, EvalFolder, Metric, load_runs
from blindbench.tables import TablesConfig, run_tables


def _one_line(call, pattern: str) -> str:
    with pytest.raises(BlindbenchError, match=pattern) as info:
        call()
    assert "\n" not in str(info.value), str(info.value)
    return str(info.value)


def _header(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return next(csv.reader(handle))


def test_results_imports_no_torch_and_no_pandas() -> None:
    code = (
        "import sys\n"
        "import blindbench.results as r\n"
        "r.sample_columns(); r.required_columns(); r.get_metric('psnr'); r.EvalFolder(r.Path('.')).samples\n"
        "print(' '.join(m for m in ('torch', 'pandas', 'numpy', 'cv2', 'scipy') if m in sys.modules) or 'none')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "none"


def test_the_table_is_consistent_and_score_batch_computes_its_rows() -> None:
    names = results.metric_names()
    assert len(set(names)) == len(names)
    assert results.sample_columns() == results.COLUMNS
    assert set(REQUIRED_COLUMNS) <= set(results.COLUMNS)
    assert results.sample_columns(["lpips"]) == (*results.COLUMNS, "lpips")
    assert "fid" not in results.sample_columns(["lpips", "fid"])  # per set: set_metrics.toml, not a column
    assert results.get_metric("bce").heading == "BCE ↓" and results.get_metric("ssim").heading == "SSIM ↑"
    _one_line(lambda: results.get_metric("ssmi"), "unknown metric 'ssmi'; did you mean 'ssim'")
    no_match = _one_line(lambda: results.get_metric("zzz"), "unknown metric 'zzz'; known: ")
    assert no_match.endswith(", ".join(names))  # in the table's order
    _one_line(lambda: results.check_metrics(["psnr", "sim"]), "unknown metric 'sim'; did you mean 'ssim'")
    # every non-learned per-sample column is what score_batch computes, no more and no less
    torch.manual_seed(0)
    restored, target, image = (torch.rand(2, 3, 16, 16) * 2 - 1 for _ in range(3))
    hard = (torch.rand(2, 1, 16, 16) > 0.5).float()
    values = score_batch(restored, target, hard, torch.randn(2, 1, 16, 16), image)
    computed = [c for c in results.COLUMNS if c not in results.TEXT_COLUMNS]
    assert sorted(values) == sorted(computed)


def test_a_metric_row_flows_into_the_csv_header_and_the_tables(demo_dir: Path, tmp_path: Path, monkeypatch,
                                                               capsys) -> None:  # fmt: skip
    mae = Metric("mae", "image", True, 3, "MAE", default=True, required=False)
    monkeypatch.setattr(results, "METRICS", (*results.METRICS, mae))
    real = evaluate.score_batch

    def with_mae(restored, target, hard_mask, mask_logits, image=None):
        values = real(restored, target, hard_mask, mask_logits, image)
        return values | {"mae": ((restored - target).abs().mean(dim=(1, 2, 3)) / 2).double()}

    monkeypatch.setattr(evaluate, "score_batch", with_mae)
    out = tmp_path / "runs" / "input"
    report = run_eval(EvalConfig(model="input", out=str(out), limit=4, progress=False))
    assert _header(EvalFolder(out).samples) == [*results.COLUMNS, "mae"]
    with open(EvalFolder(out).samples, newline="") as handle:
        values = [float(row["mae"]) for row in csv.DictReader(handle)]
    assert len(values) == 4 and all(0 < v < 1 for v in values)
    assert report.means["mae"] == pytest.approx(sum(values) / 4)

    written = run_tables(TablesConfig(runs=str(tmp_path / "runs")))
    assert "mae,mae_ci95,mae_n" in written["table1"].read_text().splitlines()[0]
    printed = capsys.readouterr().out
    assert "MAE ↓" in printed
    cell = printed.split("| photos-demo | input | 4 |")[1].splitlines()[0].split("|")[-2].strip()
    assert cell.startswith(f"{sum(values) / 4:.3f} ± ")  # the row's 3 decimals
    # --metrics knows the new row too
    run_tables(TablesConfig(runs=str(tmp_path / "runs"), out=str(tmp_path / "only"), metrics="mae"))
    assert (tmp_path / "only" / "table1.csv").read_text().splitlines()[0] == "set,method,n,mae,mae_ci95,mae_n"


def _write_run(folder: Path, extra: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    header = [*REQUIRED_COLUMNS, *extra]
    rows = []
    for i in range(3):
        row = dict.fromkeys(REQUIRED_COLUMNS, "") | {"method": "gc", "model": "gc", "set": "ffhq-2k",
                                                       "key": f"k{i}", "pattern": "real", "mask_area": "0.2",
                                                       "psnr": str(20 + i), "ssim": "0.7"}  # fmt: skip
        rows.append([(row | {k: v.format(i=i) for k, v in extra.items()})[c] for c in header])
    with open(folder / "samples.csv", "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *rows])


def test_columns_eval_adds_are_tabulated_and_unknown_ones_are_named(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    _write_run(runs / "gc", {"lpips": "0.{i}5", "sharpness": "{i}"})
    df = load_runs(runs)
    assert list(df["lpips"]) == [0.05, 0.15, 0.25]
    assert df.attrs["ignored"] == {"sharpness": str(runs / "gc" / "samples.csv")}
    written = run_tables(TablesConfig(runs=str(runs)))
    assert written["table1"].read_text().splitlines()[0].endswith(",lpips,lpips_ci95,lpips_n")
    printed = capsys.readouterr().out
    assert "| LPIPS ↓ |" in printed
    assert "| ffhq-2k | gc | 3 | – | 21.00 ± 2.48 | 0.7000 ± 0.0000 | 0.1500 ± 0.2484 |" in printed
    assert "note: column(s) sharpness (e.g. in " in printed and "are not tabulated" in printed


def test_eval_folder_layout_and_set_metrics(tmp_path: Path) -> None:
    run = EvalFolder(tmp_path)
    assert (run.samples.name, run.config.name, run.set_metrics_file.name) == ("samples.csv", "eval.toml",
                                                                               "set_metrics.toml")  # fmt: skip
    assert run.image("masks", "000003") == tmp_path / "masks" / "000003.png"
    with pytest.raises(ValueError, match="image folder must be one of"):
        run.image("outputs", "000003")
    assert run.set_metrics() == {}
    run.set_metrics_file.write_text("fid = 12.5\n")
    assert run.set_metrics() == {"fid": 12.5}
    run.set_metrics_file.write_text("kid = 0.1\n")
    _one_line(run.set_metrics, "set_metrics.toml: kid is not a per-set metric")
    run.set_metrics_file.write_text("fid = \n")
    _one_line(run.set_metrics, "cannot read .*set_metrics.toml")


def test_find_runs_names_the_folder(tmp_path: Path) -> None:
    _one_line(lambda: results.find_runs(tmp_path / "nope"), "runs folder not found: .*nope")
    _one_line(lambda: results.find_runs(tmp_path), f"no eval runs under {tmp_path}: no samples.csv below")
    _write_run(tmp_path / "b" / "deep", {})
    _write_run(tmp_path / "a", {})
    runs = results.find_runs(tmp_path)
    assert [results.run_name(tmp_path, r.path) for r in runs] == ["a", "b/deep"]
    assert results.run_name(tmp_path, tmp_path) == tmp_path.name


# ------------------------------------------------------------------------------------------- --iqa import errors


class _FailingImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import pyiqa`` fail inside, as a torchvision built for another torch does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def find_spec(self, name, path, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "pyiqa" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise self.error


@pytest.fixture()
def broken_pyiqa(monkeypatch):
    def install(error: Exception) -> None:
        monkeypatch.delitem(sys.modules, "pyiqa", raising=False)
        monkeypatch.setattr(sys, "meta_path", [_FailingImport(error), *sys.meta_path])

    return install


def test_a_mismatched_torchvision_is_one_line(broken_pyiqa, tmp_path: Path) -> None:
    from blindbench.iqa import IqaMetrics

    broken_pyiqa(RuntimeError("operator torchvision::nms does not exist\n  long traceback text"))
    expected = r"importing pyiqa failed \(RuntimeError: operator torchvision::nms does not exist\)"
    message = _one_line(lambda: IqaMetrics("lpips", str(tmp_path), torch.device("cpu")), expected)
    assert f"torch {torch.__version__}" in message and "install the torchvision built for this torch" in message
    broken_pyiqa(OSError("libtorchvision.so: undefined symbol: _ZN3c10"))
    _one_line(lambda: IqaMetrics("lpips", str(tmp_path), torch.device("cpu")), r"\(OSError: .*undefined symbol")
    # pyiqa is there but torchvision is not: not the "install pyiqa" hint
    broken_pyiqa(ModuleNotFoundError("No module named 'torchvision'", name="torchvision"))
    message = _one_line(lambda: IqaMetrics("lpips", str(tmp_path), torch.device("cpu")), "No module named")
    assert "pip install 'blindbench[iqa]'" not in message


def test_eval_iqa_with_a_broken_pyiqa_exits_with_one_line(broken_pyiqa, demo_dir: Path, tmp_path: Path,
                                                          capsys) -> None:  # fmt: skip
    from blindbench.cli import main

    broken_pyiqa(RuntimeError("operator torchvision::nms does not exist"))
    out = tmp_path / "e"
    args = ["eval", "--model", "input", "--limit", "2", "--iqa", "lpips", "--iqa-weights", str(tmp_path),
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "torchvision::nms" in err and "Traceback" not in err
    assert not EvalFolder(out).config.exists()  # the failed setup claims no folder

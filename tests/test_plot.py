"""``blindbench plot RUN...``: several training runs' metrics.csv overlaid in one PNG."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from blindbench import figures
from blindbench.cli import main
from blindbench.errors import BlindbenchError
from blindbench.plot import PlotConfig, metrics_path, run_plot


def _write_run(folder: Path, scale: float, joint_at: int | None = 60, validate: bool = True) -> Path:
    """A metrics.csv as blindbench.train.Logger writes it: separate (then joint) stage, validation every 20."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "stage", "name", "value"])
        for step in range(5, 101, 5):
            stage = "joint" if joint_at is not None and step > joint_at else "separate"
            for name, value in (("bce", 0.3 * scale / step**0.2), ("loss", scale / step**0.5), ("bad_total", 0)):
                writer.writerow([step, stage, name, f"{value:.6g}"])
            if validate and step % 20 == 0:
                writer.writerow([step, stage, "val_psnr", f"{18 + step / 20 / scale:.6g}"])
    return folder


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> list:
    """The matplotlib figure each plot saves (its PNG is still written)."""
    figures_seen: list = []
    save = figures._save_figure

    def keep(fig, path, dpi):
        figures_seen.append([(ax.get_title(), ax.get_yscale(), [line.get_label() for line in ax.lines],
                              [line.get_linestyle() for line in ax.lines]) for ax in fig.axes if ax.get_visible()])
        return save(fig, path, dpi)

    monkeypatch.setattr(figures, "_save_figure", keep)
    return figures_seen


def test_plot_overlays_runs_in_one_png(tmp_path: Path, capture: list, capsys) -> None:
    a = _write_run(tmp_path / "vcn-a", 1.0)
    b = _write_run(tmp_path / "vcn-b", 2.0, joint_at=None, validate=False)
    out = tmp_path / "plots" / "curves.png"
    assert main(["plot", str(a), str(b / "metrics.csv"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"loss curves of 2 run(s): {out}"
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > png.height > 100
    (panels,) = capture
    assert [p[0] for p in panels] == ["loss", "val_psnr"]  # 20 logged steps: auto window 1, no averaging
    loss, val = panels
    assert loss[1] == "log" and val[1] == "linear"
    # run a: its joint-stage marker (dashed) then its curve; run b (separate only): its curve; val: only run a
    assert [label for label in loss[2] if not label.startswith("_")] == ["vcn-a", "vcn-b"]
    assert loss[3].count("--") == 1 and val[3].count("--") == 1
    assert [label for label in val[2] if not label.startswith("_")] == ["vcn-a"]


def test_plot_options_labels_panels_and_a_run_name(tmp_path: Path, capture: list, monkeypatch) -> None:
    monkeypatch.setenv("BLINDBENCH_DATA", str(tmp_path / "data"))
    _write_run(tmp_path / "data" / "runs" / "gmc-separate", 1.0)
    other = _write_run(tmp_path / "elsewhere" / "gmc-separate", 3.0)  # the same folder name: labelled by path
    png = run_plot(PlotConfig(runs=("gmc-separate", str(other)), out=str(tmp_path / "o.png"),
                              losses="loss,bce,nosuch", validation="val_psnr,val_bce", smooth=4))  # fmt: skip
    assert png.is_file()
    (panels,) = capture
    assert [p[0] for p in panels] == ["loss (moving average)", "bce (moving average)", "val_psnr"]
    assert [label for label in panels[0][2] if not label.startswith("_")] == ["gmc-separate", str(other)]
    run_plot(PlotConfig(runs=("gmc-separate", str(other)), out=str(tmp_path / "p.png"), labels="first, second"))
    assert [label for label in capture[1][0][2] if not label.startswith("_")] == ["first", "second"]


def test_plot_default_output_is_in_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    run = _write_run(tmp_path / "r", 1.0)
    monkeypatch.chdir(tmp_path)
    assert run_plot(PlotConfig(runs=(str(run),))) == Path("loss-curves.png")
    assert (tmp_path / "loss-curves.png").is_file()


def test_plot_errors_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BLINDBENCH_DATA", str(tmp_path / "data"))
    _write_run(tmp_path / "data" / "runs" / "vcn-joint", 1.0)
    (tmp_path / "empty-run").mkdir()
    (tmp_path / "header-only").mkdir()
    (tmp_path / "header-only" / "metrics.csv").write_text("step,stage,name,value\n")
    (tmp_path / "not-metrics.csv").write_text("a,b\n1,2\n")
    good = str(tmp_path / "data" / "runs" / "vcn-joint")
    out = str(tmp_path / "x.png")
    cases = [
        (["vcn-jiont"], r"training run not found: vcn-jiont .*; did you mean 'vcn-joint'\?"),
        ([str(tmp_path / "nowhere")], "training run not found: .*nowhere"),
        ([good, str(tmp_path / "empty-run")], "no metrics.csv in .*empty-run: not a training run"),
        ([str(tmp_path / "header-only")], "header-only/metrics.csv holds no logged steps yet"),
        ([str(tmp_path / "not-metrics.csv")], "not-metrics.csv is not a blindbench metrics.csv"),
        ([good, "--losses", "critic"], "no run logged critic; the runs logged: bad_total, bce, loss, val_psnr"),
        ([good, "--losses", ","], "give at least one training scalar with --losses"),
        ([good, good, "--labels", "one"], r"--labels gives 1 label\(s\) for 2 run\(s\)"),
        ([good, "--smooth", "-1"], "--smooth must be 0"),
    ]
    for argv, pattern in cases:
        assert main(["plot", *argv, "--out", out]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("blindbench: error: "), err
        assert pytest.importorskip("re").search(pattern, err), err
    assert not Path(out).exists()
    with pytest.raises(BlindbenchError, match="give at least one training run"):
        run_plot(PlotConfig())
    assert metrics_path("vcn-joint") == tmp_path / "data" / "runs" / "vcn-joint" / "metrics.csv"

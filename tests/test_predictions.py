"""Benchmark any method: export a set, let an outside script restore it, score its files with eval --predictions."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from blindbench.cli import main
from blindbench.imageio import decode_png, read_image
from blindbench.loader import shard_urls
from blindbench.sets import load_set
from blindbench.shards import iter_shard_samples

SCRIPT = Path(__file__).parent / "external" / "telea_predict.py"


@pytest.fixture(scope="module")
def exported(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("predictions")
    assert main(["export", "--set", "photos-demo", "-o", str(root / "in"), "--masks", "--no-progress"]) == 0
    subprocess.run([sys.executable, str(SCRIPT), str(root / "in"), str(root / "pred")], check=True,
                   env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    return root / "in", root / "pred"


def test_export_is_the_shards_inputs_and_masks(exported: tuple[Path, Path], demo_dir: Path) -> None:
    inputs, _ = exported
    samples = [s for url in shard_urls(load_set("photos-demo")) for s in iter_shard_samples(url)]
    assert len(list(inputs.glob("*_mask.png"))) == len(samples) == 48
    first = samples[0]
    assert (inputs / f"{first['__key__']}.png").read_bytes() == first["input.png"]
    assert np.array_equal(decode_png((inputs / f"{first['__key__']}_mask.png").read_bytes(), grey=True),
                          decode_png(first["mask.png"], grey=True))  # fmt: skip
    index = list(csv.DictReader((inputs / "index.csv").open()))
    assert [r["key"] for r in index] == [s["__key__"] for s in samples] and index[0]["pattern"] == "real"


def test_prediction_rows_equal_scikit_image(exported: tuple[Path, Path], demo_dir: Path, tmp_path: Path) -> None:
    _, predictions = exported
    out = tmp_path / "eval"
    assert main(["eval", "--predictions", str(predictions), "--label", "telea-ext", "--set", "photos-demo",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    rows = {r["key"]: r for r in csv.DictReader((out / "samples.csv").open())}
    assert len(rows) == 48 and {r["model"] for r in rows.values()} == {"predictions"}
    samples = [s for url in shard_urls(load_set("photos-demo")) for s in iter_shard_samples(url)]
    for sample in samples[::7]:
        key = sample["__key__"]
        restored, target = read_image(predictions / f"{key}.png"), decode_png(sample["target.png"])
        psnr = peak_signal_noise_ratio(target, restored, data_range=255)
        ssim = structural_similarity(target, restored, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255, channel_axis=-1)  # fmt: skip
        assert float(rows[key]["psnr"]) == pytest.approx(psnr, abs=1e-3)
        assert float(rows[key]["ssim"]) == pytest.approx(ssim, abs=1e-5)
        assert float(rows[key]["bce"]) < 1e-5 and float(rows[key]["iou"]) == 1.0  # the true mask as "prediction"
    # the same folder again: nothing new; changed files into the same eval folder: refused
    assert main(["eval", "--predictions", str(predictions), "--label", "telea-ext", "--set", "photos-demo",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    changed = tmp_path / "changed"
    shutil.copytree(predictions, changed)
    first = sorted(changed.glob("*.png"))[0]
    first.write_bytes((changed / sorted(p.name for p in changed.glob("*.png"))[2]).read_bytes())
    assert main(["eval", "--predictions", str(changed), "--label", "telea-ext", "--set", "photos-demo",
                 "--out", str(out), "--no-progress"]) == 2  # fmt: skip


def _error(args: list[str], capsys) -> str:
    assert main(["eval", "--set", "photos-demo", "--label", "x", "--no-progress", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_bad_prediction_folders_are_one_line_errors(exported: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    _, predictions = exported
    keys = sorted(p.name.removesuffix(".mask.png") for p in predictions.glob("*.mask.png"))
    missing = tmp_path / "missing"
    shutil.copytree(predictions, missing)
    (missing / f"{keys[3]}.png").unlink()
    (missing / f"{keys[3]}.mask.png").unlink()
    assert f"no prediction for {keys[3]}" in _error(["--predictions", str(missing), "--out", str(tmp_path / "a")],
                                                    capsys)  # fmt: skip
    assert main(["eval", "--set", "photos-demo", "--label", "x", "--no-progress", "--predictions", str(missing),
                 "--allow-missing", "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    assert len((tmp_path / "b" / "samples.csv").read_text().splitlines()) == 48  # header + 47
    extra = tmp_path / "extra"
    shutil.copytree(predictions, extra)
    (extra / "notes.txt").write_text("hi")
    assert "notes.txt names no sample" in _error(["--predictions", str(extra), "--out", str(tmp_path / "c")], capsys)
    small = tmp_path / "small"
    shutil.copytree(predictions, small)
    import cv2

    cv2.imwrite(str(small / f"{keys[0]}.png"), np.zeros((100, 90, 3), np.uint8))
    assert f"prediction of {keys[0]}:" in _error(["--predictions", str(small), "--out", str(tmp_path / "d")], capsys)
    broken = tmp_path / "broken"
    shutil.copytree(predictions, broken)
    (broken / f"{keys[1]}.png").write_bytes(b"not a png")
    assert f"prediction of {keys[1]}: cannot read" in _error(["--predictions", str(broken), "--out",
                                                               str(tmp_path / "e")], capsys)  # fmt: skip
    assert "needs --label" in _error(["--predictions", str(predictions), "--label", ""], capsys)

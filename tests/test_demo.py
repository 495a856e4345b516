"""The main job end to end at toy size, and the pieces it is built from (training crops, figures)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from blindbench.cli import main
from blindbench.errors import BlindbenchError, ConfigError
from blindbench.figures import before_after, loss_curve, moving_average, read_metrics_csv
from blindbench.imageio import read_image
from blindbench.train import TrainConfig, crop_batch


def _coordinate_batch(n: int = 3, size: int = 64) -> dict:
    rows = torch.arange(size, dtype=torch.float32).view(1, 1, size, 1).expand(n, 3, size, size)
    cols = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size).expand(n, 1, size, size)
    return {"input": rows.clone(), "target": rows.clone() + 1, "mask": cols.clone(), "soft_mask": cols.clone(),
            "key": [f"k{i}" for i in range(n)]}  # fmt: skip


def test_crop_batch_is_a_window_shared_by_all_tensors_and_replayable() -> None:
    batch = _coordinate_batch()
    a = crop_batch(batch, 32, seed=0, epoch_offset=0, position=5)
    assert a["input"].shape == (3, 3, 32, 32) and a["mask"].shape == (3, 1, 32, 32) and a["key"] == batch["key"]
    for i in range(3):  # one window per sample: rows from the input, columns from the mask, contiguous
        top, left = int(a["input"][i, 0, 0, 0]), int(a["mask"][i, 0, 0, 0])
        assert torch.equal(a["input"][i], batch["input"][i, :, top:top + 32, left:left + 32])
        assert torch.equal(a["target"][i], batch["target"][i, :, top:top + 32, left:left + 32])
        assert torch.equal(a["soft_mask"][i], batch["soft_mask"][i, :, top:top + 32, left:left + 32])
    again = crop_batch(batch, 32, seed=0, epoch_offset=0, position=5)
    assert all(torch.equal(a[k], again[k]) for k in ("input", "mask"))
    other = crop_batch(batch, 32, seed=0, epoch_offset=0, position=6)
    assert not torch.equal(a["input"], other["input"])
    assert crop_batch(batch, 0, 0, 0, 0) is batch and crop_batch(batch, 64, 0, 0, 0) is batch
    with pytest.raises(ConfigError, match="exceeds"):
        crop_batch(batch, 96, 0, 0, 0)


def test_flip_mirrors_about_half_the_samples_inside_the_same_windows() -> None:
    batch = _coordinate_batch(n=64)
    plain = crop_batch(batch, 32, seed=0, epoch_offset=0, position=5)
    flipped = crop_batch(batch, 32, seed=0, epoch_offset=0, position=5, flip=True)
    mirrored = []
    for i in range(64):  # every tensor of a sample flips together, inside the window the unflipped run draws
        same = all(torch.equal(flipped[k][i], plain[k][i]) for k in ("input", "target", "mask", "soft_mask"))
        mirror = all(torch.equal(flipped[k][i], plain[k][i].flip(-1)) for k in ("input", "target", "mask", "soft_mask"))
        assert same != mirror
        mirrored.append(mirror)
    assert 16 <= sum(mirrored) <= 48
    again = crop_batch(batch, 32, seed=0, epoch_offset=0, position=5, flip=True)
    assert torch.equal(again["mask"], flipped["mask"]) and flipped["key"] == batch["key"]
    whole = crop_batch(batch, 0, seed=0, epoch_offset=0, position=5, flip=True)  # no crop: whole images flip
    assert whole["mask"].shape == batch["mask"].shape
    assert {bool(torch.equal(whole["mask"][i], batch["mask"][i].flip(-1))) for i in range(64)} == {True, False}


def test_crop_size_must_suit_the_patch_critic() -> None:
    with pytest.raises(ConfigError, match="crop_size must be a multiple of 32"):
        TrainConfig(crop_size=48)


def test_loss_curve_and_metrics_reader(tiny_vcn_run: Path, tmp_path: Path) -> None:
    series, stages = read_metrics_csv(tiny_vcn_run / "metrics.csv")
    assert {"loss", "bce", "l1"} <= set(series) and set(stages) == {"separate", "joint"}
    assert stages["separate"] < stages["joint"]
    png = loss_curve(tiny_vcn_run / "metrics.csv", tmp_path / "curve.png", title="t")
    assert read_image(png).shape[0] > 100
    with pytest.raises(BlindbenchError, match="no training log"):
        read_metrics_csv(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("step,stage,name,value\nx,separate,loss,1\n")
    with pytest.raises(BlindbenchError, match="not a blindbench metrics.csv"):
        read_metrics_csv(tmp_path / "bad.csv")


def test_moving_average() -> None:
    assert np.allclose(moving_average([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    assert np.allclose(moving_average([1, 2, 3], 1), [1, 2, 3])


def test_before_after(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    png = before_after(image, image[..., 0], image, None, tmp_path / "ba.png")
    wide = read_image(png)
    assert wide.shape[1] > wide.shape[0]


def test_demo_end_to_end_at_toy_size(demo_dir: Path, data_root: Path, tmp_path: Path, capsys, monkeypatch,
                                     tiny_vcn_run: Path) -> None:
    from blindbench.zoo import publish

    monkeypatch.setenv("BLINDBENCH_ZOO", str(tmp_path / "zoo"))  # a zoo holding one published model: vcn
    publish(tiny_vcn_run, "photos")
    run = tmp_path / "run"
    argv = ["demo", "--workers", "1", "--train-steps", "4", "--train-batch", "2", "--train-crop", "64",
            "--run", str(run)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    for text in ("== 6/6", "## Table 1", "## Robustness", "| photos-demo | oracle-telea | 48 |", "before/after:",
                 "| photos-demo | vcn | 48 |", "zoo/photos/gc: no published weights yet"):
        assert text in out
    assert (run / "loss-curve.png").is_file() and (run / "inpaint-demo" / "before-after.png").is_file()
    runs = data_root / "evals" / "demo"
    with open(runs / "vcn" / "samples.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 48
    assert (runs / "table1.csv").is_file() and (runs / "compare-photos-demo.png").is_file()
    damaged = read_image(run / "inpaint-demo" / "damaged.png")
    assert read_image(run / "inpaint-demo" / "out" / "damaged.png").shape == damaged.shape
    # a second run keeps everything: nothing is retrained or rescored
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "already trained (4 steps)" in again and "nothing new to score" in again


def test_unfinished_zoo_entries_are_named_not_scored(monkeypatch, capsys) -> None:
    from blindbench import zoo
    from blindbench.demo import DemoConfig, zoo_jobs

    cards = {"vcn": {"finished": True}, "ca": {"finished": False, "steps_done": 2250,
                                              "steps_planned": {"separate": 6000, "joint": 1000}}}  # fmt: skip
    monkeypatch.setattr(zoo, "available", lambda name=None: [("photos", m) for m in cards])
    monkeypatch.setattr(zoo, "read_card", lambda name, model: cards[model])
    jobs = zoo_jobs(DemoConfig())
    assert jobs == [("vcn", "photos"), ("input", ""), ("oracle-telea", "")]
    out = capsys.readouterr().out
    assert "zoo/photos/ca: unfinished (2,250 of 7,000 steps), not in Table 1" in out
    assert "train --resume zoo/photos/ca/resume.pt --out data/runs/zoo-photos-ca" in out
    assert "zoo/photos/gmc: no published weights yet" in out

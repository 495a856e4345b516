"""The zoo: publishing a run, pretrained= loading, eval/inpaint --pretrained, and damaged entries."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from blindbench.errors import BlindbenchError
from blindbench.models import create_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch, tiny_vcn_run: Path) -> Path:
    """A temporary zoo holding the tiny test run as ``mini/vcn``."""
    from blindbench.zoo import publish

    root = tmp_path / "zoo"
    monkeypatch.setenv("BLINDBENCH_ZOO", str(root))
    (root / "mini" / "vcn").mkdir(parents=True)
    (root / "mini" / "vcn" / "train.toml").write_text('model = "vcn"\n')
    publish(tiny_vcn_run, "mini")
    return root


def test_publish_writes_weights_card_and_metrics(zoo: Path, tiny_vcn_run: Path) -> None:
    entry = zoo / "mini" / "vcn"
    card = json.loads((entry / "card.json").read_text())
    assert card["model"] == "vcn" and card["preset"] == "tiny" and card["finished"]
    assert card["steps_done"] == 2 and card["images_seen"] == 1 * 2 + 1 * 2 * 2  # joint: own + 1 critic batch
    assert card["train_seconds"] > 0 and card["sessions"][0]["threads"] >= 1
    assert (entry / "metrics.csv").read_bytes() == (tiny_vcn_run / "metrics.csv").read_bytes()
    blob = torch.load(entry / "weights.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in blob["model"].values() if v.is_floating_point())
    assert not (entry / "resume.pt").exists()
    assert "zoo/mini/vcn" in (entry / "card.md").read_text()


def test_pretrained_equals_the_trained_weights_in_fp16(zoo: Path, tiny_vcn_run: Path) -> None:
    from blindbench.checkpoint import load_model_from_checkpoint

    trained, _ = load_model_from_checkpoint(tiny_vcn_run)
    loaded = create_model("vcn", pretrained="mini")
    assert not loaded.training
    for name, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.half().float() if value.is_floating_point() else value)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded(x).image, trained(x).image, atol=2e-2)
    with pytest.raises(BlindbenchError, match="preset 'tiny', not 'paper'"):
        create_model("vcn", preset="paper", pretrained="mini")


def test_missing_or_damaged_entries_are_one_line_errors(zoo: Path) -> None:
    with pytest.raises(BlindbenchError, match=r"no pretrained 'gc' weights for 'mini'.*published: mini/vcn"):
        create_model("gc", pretrained="mini")
    weights = zoo / "mini" / "vcn" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BlindbenchError, match="do not match the sha256 on their card"):
        create_model("vcn", pretrained="mini")
    weights.unlink()
    with pytest.raises(BlindbenchError, match="zoo weights missing"):
        create_model("vcn", pretrained="mini")
    (zoo / "mini" / "vcn" / "card.json").write_text("{not json")
    with pytest.raises(BlindbenchError, match="corrupt zoo card"):
        create_model("vcn", pretrained="mini")


def test_eval_and_inpaint_take_pretrained(zoo: Path, tmp_path: Path, demo_dir: Path) -> None:
    from blindbench.evaluate import EvalConfig, run_eval
    from blindbench.inpainting import InpaintConfig, run_inpaint

    report = run_eval(EvalConfig(model="vcn", pretrained="mini", set="photos-demo", limit=4, out=str(tmp_path / "e"),
                                 progress=False))  # fmt: skip
    rows = (report.out_dir / "samples.csv").read_text().splitlines()
    assert len(rows) == 5 and ",zoo:mini," in rows[1]
    identity = tomllib.loads((report.out_dir / "eval.toml").read_text())["identity"]
    assert identity["checkpoint_sha256"] == json.loads((zoo / "mini" / "vcn" / "card.json").read_text())[
        "weights_sha256"]
    image = tmp_path / "photo.png"
    import cv2

    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    written = run_inpaint(InpaintConfig(inputs=(str(image),), pretrained="mini", out=str(tmp_path / "o"),
                                        progress=False))  # fmt: skip
    assert written[0].is_file()
    with pytest.raises(BlindbenchError, match="--checkpoint PATH or --pretrained NAME"):
        run_inpaint(InpaintConfig(inputs=(str(image),), out=str(tmp_path / "o2"), progress=False))


def test_committed_zoo_recipes_are_the_same_budget_for_every_model() -> None:
    from blindbench.models import preset_training
    from blindbench.train import load_config

    configs = {p.parent.name: load_config(p) for p in sorted((REPO / "zoo" / "photos").glob("*/train.toml"))}
    assert set(configs) == {"vcn", "ca", "gmc", "pc", "gc"}
    budget = {(c.preset, c.set, c.steps_separate, c.steps_joint, c.batch_separate, c.batch_joint, c.crop_size,
               c.critic_steps, c.lr_joint, c.seed) for c in configs.values()}  # fmt: skip
    assert len(budget) == 1
    assert all(name == c.model for name, c in configs.items())
    # the stage-1 rate is each model's preset default (GMC's own: its output layer dies at the others' 1e-3)
    assert all(c.lr_separate == preset_training(name, c.preset).lr_separate for name, c in configs.items())


def test_published_zoo_entries_load(tmp_path: Path) -> None:
    """Every committed card's weights load and restore an image (skipped entries: none published yet)."""
    from blindbench.zoo import available

    entries = available("photos")
    for corpus, model in entries:
        network = create_model(model, pretrained=corpus)
        with torch.no_grad():
            out = network(torch.zeros(1, 3, 64, 64))
        assert torch.isfinite(out.image).all()
    if not entries:
        pytest.skip("no zoo/photos entry has published weights yet")


def test_cli_eval_and_inpaint_parse_pretrained() -> None:
    from blindbench.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["eval", "--model", "gc", "--pretrained", "photos"]).pretrained == "photos"
    assert parser.parse_args(["inpaint", "x.png", "--pretrained", "photos", "-o", "out"]).pretrained == "photos"

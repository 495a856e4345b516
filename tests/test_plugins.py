"""Outside models in eval: a module:callable, a TorchScript file of a registered model; non-blind scoring."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

from blindbench.cli import main
from blindbench.errors import BlindbenchError

PLUGINS = Path(__file__).parent / "plugins"


def _rows(folder: Path) -> dict[str, dict]:
    return {r["key"]: r for r in csv.DictReader((folder / "samples.csv").open())}


@pytest.fixture(autouse=True)
def plugin_path(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(PLUGINS))
    sys.modules.pop("outside_model", None)


def test_callables_with_every_return_shape(demo_dir: Path, tmp_path: Path) -> None:
    common = ["--set", "photos-demo", "--limit", "6", "--no-progress"]
    assert main(["eval", "--model", "outside_model:build_image_only", "--out", str(tmp_path / "a"), *common]) == 0
    rows = _rows(tmp_path / "a")
    assert len(rows) == 6 and all(r["bce"] == "" for r in rows.values())  # an image alone: no mask columns
    assert {r["method"] for r in rows.values()} == {"outside_model.build_image_only"}
    assert main(["eval", "--model", "outside_model:build_tuple", "--out", str(tmp_path / "b"), *common]) == 0
    assert all(r["bce"] != "" for r in _rows(tmp_path / "b").values())
    assert main(["eval", "--model", "outside_model:build_tuple", "--mask-source", "true", "--out",
                 str(tmp_path / "c"), *common]) == 0  # fmt: skip
    true_rows = _rows(tmp_path / "c")
    assert {r["method"] for r in true_rows.values()} == {"outside_model.build_tuple-true-mask"}
    assert all(r["bce"] == "" for r in true_rows.values())  # non-blind rows get no BCE
    assert main(["eval", "--model", "outside_model:nothing", "--out", str(tmp_path / "d"), *common]) == 2
    with pytest.raises(BlindbenchError, match="takes no mask"):
        from blindbench.plugins import load_external

        load_external("outside_model:build_image_only")(torch.zeros(1, 3, 8, 8), mask=torch.zeros(1, 1, 8, 8))


def test_torchscript_of_a_registered_model_scores_like_it(tiny_vcn_run: Path, demo_dir: Path, tmp_path: Path) -> None:
    from blindbench.checkpoint import load_model_from_checkpoint

    model, _ = load_model_from_checkpoint(tiny_vcn_run)

    class Traceable(torch.nn.Module):  # tuple outputs trace; the NamedTuple is rebuilt by the wrapper
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image):
            out = self.model(image)
            return out.mask_logits, out.image

    scripted = torch.jit.trace(Traceable().eval(), torch.zeros(1, 3, 256, 256), check_trace=False)
    path = tmp_path / "vcn.ts"
    scripted.save(str(path))
    common = ["--set", "photos-demo", "--limit", "4", "--no-progress", "--batch", "1"]
    assert main(["eval", "--model", str(path), "--out", str(tmp_path / "ts"), *common]) == 0
    assert main(["eval", "--model", "vcn", "--checkpoint", str(tiny_vcn_run), "--out", str(tmp_path / "reg"),
                 *common]) == 0  # fmt: skip
    ts, reg = _rows(tmp_path / "ts"), _rows(tmp_path / "reg")
    for key in reg:
        for metric in ("psnr", "ssim", "bce"):
            assert float(ts[key][metric]) == pytest.approx(float(reg[key][metric]), abs=1e-3)


def test_registered_model_non_blind(tiny_vcn_run: Path, demo_dir: Path, tmp_path: Path) -> None:
    assert main(["eval", "--model", "vcn", "--checkpoint", str(tiny_vcn_run), "--mask-source", "true", "--set",
                 "photos-demo", "--limit", "4", "--out", str(tmp_path / "nb"), "--no-progress"]) == 0  # fmt: skip
    rows = _rows(tmp_path / "nb")
    assert {r["method"] for r in rows.values()} == {"vcn-true-mask"} and all(r["bce"] == "" for r in rows.values())

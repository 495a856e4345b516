"""Outside models in eval: a module:callable, a TorchScript file of a registered model; non-blind scoring."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from blindbench.cli import main
from blindbench.errors import BlindbenchError

PLUGINS = Path(__file__).parent / "plugins"


def _rows(folder: Path) -> dict[str, dict]:
    return {r["key"]: r for r in csv.DictReader((folder / "samples.csv").open())}


class _Tuples(torch.nn.Module):
    """``model``'s ``InpaintOutput`` as a ``(mask_logits, image)`` tuple: tuple outputs trace, and the loader's
    wrapper rebuilds the ``InpaintOutput``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image):
        out = self.model(image)
        return out.mask_logits, out.image


def _trace(model: torch.nn.Module, size: int) -> torch.jit.ScriptModule:
    """``model`` put in eval mode and traced on a zero (1, 3, size, size) batch."""
    return torch.jit.trace(_Tuples(model).eval(), torch.zeros(1, 3, size, size), check_trace=False)


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

    path = tmp_path / "vcn.ts"
    _trace(model, 256).save(str(path))
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


# ------------------------------------------------------------------------------------------------- inpaint


def _photos(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    from PIL import Image

    folder.mkdir()
    for i, (h, w) in enumerate(sizes):
        pixels = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    return folder


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


def test_inpaint_with_a_callable_and_its_weights(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "in", [(32, 40), (48, 32)])
    weights = tmp_path / "scale1.pt"
    torch.save({"model": {"scale": torch.tensor(1.0)}}, weights)
    common = [str(photos), "--model", "outside_model:build_image_only", "--no-progress"]
    assert main(["inpaint", *common, "--checkpoint", str(weights), "-o", str(tmp_path / "one")]) == 0
    for name in ("p0", "p1"):  # scale 1 returns the input: the weights were loaded, the levels survive exactly
        assert np.array_equal(_read(tmp_path / "one" / f"{name}.png"), _read(photos / f"{name}.png"))
        assert not (tmp_path / "one" / f"{name}.mask.png").exists()  # an image alone: no mask to write
    assert main(["inpaint", *common, "-o", str(tmp_path / "half")]) == 0  # its own scale 0.5: x / 2 in [-1, 1]
    half = (_read(photos / "p0.png").astype(np.float64) + 127.5) / 2
    assert np.abs(_read(tmp_path / "half" / "p0.png") - half).max() <= 1
    assert "outside model outside_model:build_image_only" in (tmp_path / "half" / "inpaint.toml").read_text()

    known = np.zeros((32, 40), np.uint8)
    known[8:20, 10:30] = 255
    from PIL import Image

    Image.fromarray(known).save(tmp_path / "known.png")
    assert main(["inpaint", str(photos / "p0.png"), "--model", "outside_model:build_tuple", "--mask",
                 str(tmp_path / "known.png"), "-o", str(tmp_path / "nb"), "--no-progress"]) == 0  # fmt: skip
    assert np.array_equal(_read(tmp_path / "nb" / "p0.mask.png"), known)  # non-blind: the user's mask guided it


def test_inpaint_torchscript_and_exported_files_equal_their_models(tmp_path: Path) -> None:
    from blindbench.checkpoint import save_checkpoint
    from blindbench.inpainting import InpaintConfig, run_inpaint
    from blindbench.models import create_model

    torch.manual_seed(0)
    model = create_model("vcn", "tiny").eval()
    checkpoint = save_checkpoint({"model_name": "vcn", "preset": "tiny", "step": 0, "stage": "joint", "config": {},
                                  "model": model.state_dict()}, tmp_path / "vcn.pt")  # fmt: skip

    script = tmp_path / "vcn.ts"
    _trace(model, 64).save(str(script))
    photos = _photos(tmp_path / "in", [(64, 64), (64, 96)])  # multiples of 32, the pad of an unprobed module

    def run(out: str, **model) -> None:
        run_inpaint(InpaintConfig(inputs=(str(photos),), out=str(tmp_path / out), progress=False, **model))

    run("reg", model="vcn", checkpoint=str(checkpoint))
    run("ts", model=str(script))
    for name in ("p0", "p1"):
        for suffix in (".png", ".mask.png"):
            ts, reg = _read(tmp_path / "ts" / f"{name}{suffix}"), _read(tmp_path / "reg" / f"{name}{suffix}")
            assert np.array_equal(ts, reg)

    import outside_model

    sides = {2: torch.export.Dim("h", min=8, max=1024), 3: torch.export.Dim("w", min=8, max=1024)}
    program = torch.export.export(outside_model.build_image_only().eval(), (torch.zeros(1, 3, 32, 32),),
                                  dynamic_shapes=(sides,))  # fmt: skip
    torch.export.save(program, str(tmp_path / "half.pt2"))
    run("pt2", model=str(tmp_path / "half.pt2"))  # an exported program refuses .eval(): it keeps its own mode
    run("py", model="outside_model:build_image_only")
    for name in ("p0", "p1"):
        assert np.array_equal(_read(tmp_path / "pt2" / f"{name}.png"), _read(tmp_path / "py" / f"{name}.png"))

    static = torch.export.export(outside_model.build_image_only().eval(), (torch.zeros(1, 3, 32, 32),))
    torch.export.save(static, str(tmp_path / "static.pt2"))  # exported for 32x32 only: a guard refuses 64x96
    with pytest.raises(BlindbenchError, match=r"the model refused a 64x64 input: Guard failed") as info:
        run("static", model=str(tmp_path / "static.pt2"))
    assert "\n" not in str(info.value)


def test_inpaint_plugin_option_errors(tmp_path: Path) -> None:
    from blindbench.inpainting import InpaintConfig, run_inpaint

    photos = _photos(tmp_path / "in", [(32, 32)])
    (tmp_path / "mask.png").write_bytes((photos / "p0.png").read_bytes())
    cases = [
        ({"model": str(tmp_path / "missing.ts")}, r"model file not found: .*missing\.ts"),
        ({"model": str(tmp_path / "x.ts"), "checkpoint": "w.pt"}, r"--checkpoint loads weights into a pkg\.module"),
        ({"model": "outside_model:build_image_only", "pretrained": "photos"}, r"--pretrained names zoo weights"),
        ({"model": "outside_model:nothing"}, r"cannot import model 'outside_model:nothing'"),
        ({"model": "outside_model:build_image_only", "mask": str(tmp_path / "mask.png")}, r"takes no mask"),
    ]
    for options, pattern in cases:
        with pytest.raises(BlindbenchError, match=pattern) as info:
            run_inpaint(InpaintConfig(inputs=(str(photos),), out=str(tmp_path / "out"), progress=False, **options))
        assert "\n" not in str(info.value)

"""blindbench inpaint: any size (padding, tiles), file formats, non-blind mode, β override, one-line errors."""

from __future__ import annotations

import argparse
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from blindbench import inpainting as inpaint_module
from blindbench.checkpoint import save_checkpoint
from blindbench.errors import BlindbenchError, ConfigError
from blindbench.imageio import read_image
from blindbench.inpainting import (
    InpaintConfig,
    _pad_to_multiple,
    _spans,
    _window,
    inpaint,
    run_inpaint,
    size_multiple,
)
from blindbench.models import create_model, model_names
from vcn.pcn import PCN
from vcn.types import InpaintOutput


class Echo(nn.Module):
    """Returns its input and zero logits (M̂ = 0.5); records the shapes it was called with."""

    size_multiple = 8

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []
        self.betas: list[float | None] = []

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, beta: float | None = None):
        self.calls.append(tuple(image.shape))
        self.betas.append(beta)
        return InpaintOutput(mask_logits=image.new_zeros(image.shape[0], 1, *image.shape[-2:]), image=image)


def _random_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, channels), dtype=np.uint8)


def _one_line(exc: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(exc.value), str(exc.value)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are latency-bound: on a shared 2-core machine a second intra-op thread waiting on a busy core
    made a 424x376 tile 60x slower (4.7 s against 0.07 s). One thread keeps this module fast anywhere."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_vcn() -> nn.Module:
    torch.manual_seed(0)
    return create_model("vcn", "tiny").eval()


@pytest.fixture(scope="module")
def vcn_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny VCN saved in the layout load_checkpoint expects (weights do not matter here)."""
    torch.manual_seed(0)
    model = create_model("vcn", "tiny")
    path = tmp_path_factory.mktemp("ckpt") / "vcn-tiny.pt"
    state = {"model_name": "vcn", "preset": "tiny", "step": 0, "stage": "joint", "config": {},
             "model": model.state_dict()}
    return save_checkpoint(state, path)


@pytest.fixture
def echo_loader(monkeypatch) -> Echo:
    """run_inpaint gets the Echo model instead of a checkpoint's: outputs then equal the decoded inputs."""
    echo = Echo()
    monkeypatch.setattr(inpaint_module, "load_model_from_checkpoint", lambda *a, **k: (echo, {"step": 0}))
    return echo


# ------------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("size", [(257, 301), (32, 32)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_sizes_come_back(size: tuple[int, int], tiny_vcn: nn.Module) -> None:
    image = _random_image(*size)
    restored, mask = inpaint(image, tiny_vcn)
    assert restored.shape == image.shape and restored.dtype == np.uint8
    assert mask.shape == size and mask.dtype == np.float32 and 0.0 <= mask.min() <= mask.max() <= 1.0


def test_large_image_in_tiles() -> None:
    torch.manual_seed(0)
    model = create_model("vcn", "tiny").eval()
    shapes: list[tuple[int, ...]] = []
    model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    image = _random_image(1500, 1000)
    restored, mask = inpaint(image, model, tile=512, overlap=64)
    assert restored.shape == (1500, 1000, 3) and mask.shape == (1500, 1000)
    assert len(shapes) == 12 and all(h <= 512 and w <= 512 and h % 4 == 0 and w % 4 == 0 for *_, h, w in shapes)
    assert np.isfinite(mask).all() and 0.0 <= mask.min() <= mask.max() <= 1.0


@pytest.mark.parametrize("name", model_names())
def test_every_model_any_size_with_tiles(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, "tiny").eval()
    image = _random_image(37, 53)  # odd sides, cut into 2 x 2 padded tiles
    restored, mask = inpaint(image, model, tile=32, overlap=8)
    assert restored.shape == image.shape
    if getattr(model, "mpn", None) is None:  # vcn-ed, vcn-no-mpn: nothing predicts a mask
        assert mask is None
    else:
        assert mask.shape == (37, 53) and np.isfinite(mask).all()


@pytest.mark.parametrize(
    ("name", "preset", "expected"),
    [("vcn", "tiny", 4), ("vcn-ed", "tiny", 4), ("gmc", "tiny", 4), ("ca", "tiny", 8), ("gc", "tiny", 8),
     ("pc", "tiny", 16), ("pc", "paper", 128), ("vcn", "paper", 4)],
)
def test_every_model_declares_its_size_multiple(name: str, preset: str, expected: int) -> None:
    with torch.device("meta"):  # only the attribute is read: no weights are allocated
        model = create_model(name, preset)
    assert size_multiple(model) == expected
    assert size_multiple(Echo()) == 8  # a module's own attribute


class Undeclared(Echo):
    """An Echo that declares no size multiple, as an outside model may not."""

    size_multiple = None


def test_size_multiple_falls_back_for_a_module_that_declares_none() -> None:
    model = Undeclared()
    assert size_multiple(model) == inpaint_module.FALLBACK_MULTIPLE == 32
    image = _random_image(20, 30)
    assert np.array_equal(inpaint(image, model)[0], image) and model.calls == [(1, 3, 32, 32)]


def test_windows_sum_to_one_and_tiles_overlap() -> None:
    for length in (513, 1000, 1500, 4099):
        spans = _spans(length, 512, 64, 4)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(e - s <= 512 and (e - s) % 4 == 0 for s, e in spans)
        assert all(prev[1] - nxt[0] >= 64 for prev, nxt in zip(spans, spans[1:], strict=False))
        total = torch.zeros(length)
        for i, (s, e) in enumerate(spans):
            total[s:e] += _window(spans, i)
        assert torch.allclose(total, torch.ones(length), atol=1e-6)
    assert _spans(300, 512, 64, 4) == [(0, 300)] and _spans(900, 0, 64, 4) == [(0, 900)]


def test_reflect_padding_any_amount() -> None:
    x = torch.arange(15.0).reshape(1, 1, 3, 5)
    padded, (top, left) = _pad_to_multiple(x, 16)  # pads larger than the sides: the reflection repeats
    expected = np.pad(x[0, 0].numpy(), ((6, 7), (5, 6)), mode="reflect")
    assert (top, left) == (6, 5) and np.array_equal(padded[0, 0].numpy(), expected)


def test_tiles_blend_back_to_the_input_exactly() -> None:
    echo = Echo()
    image = _random_image(100, 150, seed=1)
    restored, mask = inpaint(image, echo, tile=40, overlap=12)
    assert np.array_equal(restored, image)  # crops, padding and blending put every pixel back in place
    assert np.allclose(mask, 0.5)
    assert len(echo.calls) > 4 and all(h % 8 == 0 and w % 8 == 0 and h <= 40 and w <= 40 for *_, h, w in echo.calls)
    echo.calls.clear()
    assert np.array_equal(inpaint(image, echo, tile=0)[0], image) and echo.calls == [(1, 3, 104, 152)]


# ------------------------------------------------------------------------------------------------- arrays


def test_array_kinds_round_trip() -> None:
    echo = Echo()
    grey = _random_image(33, 20)[..., 0]
    out, _ = inpaint(grey, echo)
    assert out.shape == grey.shape and out.dtype == np.uint8 and np.array_equal(out, grey)
    rgba = _random_image(33, 20, channels=4)
    out, _ = inpaint(rgba, echo)
    assert np.array_equal(out, rgba)  # alpha copied, colour echoed
    deep = np.random.default_rng(0).integers(0, 65536, (21, 19, 3), dtype=np.uint16)
    out, _ = inpaint(deep, echo)
    assert out.dtype == np.uint16 and np.abs(out.astype(np.int64) - deep).max() <= 1
    unit = np.random.default_rng(0).random((21, 19, 3), dtype=np.float32)
    out, _ = inpaint(unit, echo)
    assert out.dtype == np.float32 and np.allclose(out, unit, atol=1e-6)


def test_tensor_api_matches_array_api(tiny_vcn: nn.Module) -> None:
    image = _random_image(36, 44, seed=2)
    expected, expected_mask = inpaint(image, tiny_vcn)
    x = torch.from_numpy(image).permute(2, 0, 1).double() / 255.0  # (3, H, W) float64 in [0, 1]
    restored, mask = inpaint(x, tiny_vcn)
    assert restored.shape == x.shape and restored.dtype == torch.float64 and mask.shape == (1, 36, 44)
    assert float(restored.min()) >= 0.0 and float(restored.max()) <= 1.0
    as_uint8 = (restored * 255.0).round().permute(1, 2, 0).numpy().astype(np.uint8)
    assert np.abs(as_uint8.astype(int) - expected).max() <= 1
    assert np.allclose(mask[0].numpy(), expected_mask, atol=1e-5)
    batch, batch_mask = inpaint(torch.stack([x, x]).float(), tiny_vcn)
    assert batch.shape == (2, 3, 36, 44) and batch_mask.shape == (2, 1, 36, 44)
    assert torch.allclose(batch[0], batch[1])


# -------------------------------------------------------------------------------------- non-blind and beta


def _scramble(module: nn.Module, keep=lambda name: False) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not keep(name):
                p.add_(torch.randn_like(p))


@pytest.mark.parametrize("name", ["vcn", "vcn-no-fusion", "pc"])
def test_non_blind_ignores_the_mpn(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, "tiny").eval()
    image = _random_image(48, 64, seed=3)
    known = np.zeros((48, 64), dtype=np.uint8)
    known[10:30, 20:40] = 255
    guided, mask = inpaint(image, model, known)
    blind, _ = inpaint(image, model)
    assert np.array_equal(mask, known / 255.0)  # the mask returned is the one that guided the inpainting
    # VCN fuses MPN encoder features into the RIN: only the MPN's mask head must be irrelevant there. The other
    # models use the MPN for M̂ alone, so all of it is scrambled.
    fused = getattr(model.mpn, "enc4", None) is not None
    _scramble(model.mpn, keep=(lambda n: n.startswith("enc")) if fused else (lambda n: False))
    assert np.array_equal(inpaint(image, model, known)[0], guided)
    assert not np.array_equal(inpaint(image, model)[0], blind)  # the scramble does reach the blind path


def _pcn_records(model: nn.Module) -> tuple[list[dict], list]:
    records: list[dict] = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        x, mask, beta = args
        h = torch.nn.functional.interpolate(mask, size=x.shape[-2:], mode="nearest").expand_as(x)
        region = h > 0.5  # the predicted (damaged) region at this layer's resolution
        records.append({"beta": beta, "region": int(region.sum()),
                        "change": float((output - x).abs()[region].max()),
                        "scale": float(x.abs()[region].max())})

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, PCN)]
    return records, handles


def test_beta_zero_leaves_the_predicted_region_unnormalised(tiny_vcn: nn.Module) -> None:
    image = _random_image(64, 64, seed=4)
    known = np.zeros((64, 64), dtype=np.uint8)
    known[16:48, 8:40] = 255  # a known region, so the "predicted region" is large and unambiguous
    records, handles = _pcn_records(tiny_vcn)
    try:
        inpaint(image, tiny_vcn, known, beta=0.0)
        zero = list(records)
        records.clear()
        inpaint(image, tiny_vcn, known)  # the SE's own β: the region is normalised
        own = list(records)
    finally:
        for handle in handles:
            handle.remove()
    assert len(zero) == len(own) == sum(isinstance(m, PCN) for m in tiny_vcn.modules())
    assert all(r["beta"] == 0.0 and r["region"] > 0 for r in zero)
    assert all(r["change"] <= 1e-5 * max(r["scale"], 1.0) for r in zero)
    assert all(r["beta"] is None for r in own) and max(r["change"] for r in own) > 1e-3


def test_cli_beta_reaches_every_pcn(vcn_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    from blindbench.checkpoint import load_model_from_checkpoint

    model, meta = load_model_from_checkpoint(vcn_checkpoint, "vcn")
    monkeypatch.setattr(inpaint_module, "load_model_from_checkpoint", lambda *a, **k: (model, meta))
    Image.fromarray(_random_image(40, 40)).save(tmp_path / "a.png")
    records, handles = _pcn_records(model)
    try:
        run_inpaint(InpaintConfig(inputs=(str(tmp_path / "a.png"),), checkpoint="x", out=str(tmp_path / "o0"),
                                  beta=0.0, progress=False))
        assert records and {r["beta"] for r in records} == {0.0}
        records.clear()
        run_inpaint(InpaintConfig(inputs=(str(tmp_path / "a.png"),), checkpoint="x", out=str(tmp_path / "o1"),
                                  progress=False))
        assert records and {r["beta"] for r in records} == {None}  # beta < 0 (default): the model's own
    finally:
        for handle in handles:
            handle.remove()


# -------------------------------------------------------------------------------------------------- files


def _write_format_zoo(folder: Path) -> dict[str, np.ndarray]:
    """grey, RGBA, 16-bit and EXIF-rotated inputs; returns what each should decode to (upright, 8-bit)."""
    folder.mkdir(parents=True, exist_ok=True)
    grey = _random_image(30, 41, seed=5)[..., 0]
    Image.fromarray(grey).save(folder / "grey.png")
    rgba = _random_image(30, 41, seed=6, channels=4)
    Image.fromarray(rgba).save(folder / "rgba.png")
    deep = np.random.default_rng(7).integers(0, 65536, (29, 42, 3), dtype=np.uint16)
    cv2.imwrite(str(folder / "deep.png"), deep[..., ::-1])  # OpenCV writes BGR
    stored = _random_image(24, 40, seed=8)  # stored landscape, orientation 6: displayed rotated 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    (folder / "sub").mkdir()
    Image.fromarray(stored).save(folder / "sub" / "rotated.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(folder / "sub" / "rotated.jpg") as raw:
        decoded = np.asarray(raw.convert("RGB"))
    return {
        "grey": grey,
        "rgba": rgba,
        "deep": np.rint(deep / 257.0).astype(np.uint8),
        "sub/rotated": np.rot90(decoded, k=-1),
    }


def test_formats_round_trip_exactly_through_files(echo_loader: Echo, tmp_path: Path) -> None:
    expected = _write_format_zoo(tmp_path / "in")
    out = tmp_path / "out"
    written = run_inpaint(InpaintConfig(inputs=(str(tmp_path / "in"),), checkpoint="x", out=str(out), progress=True))
    assert [p.relative_to(out).as_posix() for p in written] == ["deep.png", "grey.png", "rgba.png", "sub/rotated.png"]
    with Image.open(out / "grey.png") as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), expected["grey"])
    with Image.open(out / "rgba.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im), expected["rgba"])  # alpha kept
    with Image.open(out / "deep.png") as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), expected["deep"])  # 16-bit read, 8-bit written
    rotated = read_image(out / "sub" / "rotated.png")
    assert rotated.shape == (40, 24, 3) and np.array_equal(rotated, expected["sub/rotated"])  # EXIF applied
    with Image.open(out / "sub" / "rotated.mask.png") as im:
        assert im.mode == "L" and im.size == (24, 40) and set(np.unique(np.asarray(im))) == {128}  # M̂ = 0.5
    overlay = read_image(out / "sub" / "rotated.overlay.png")
    red = np.rint(expected["sub/rotated"] * 0.75 + np.array([255, 0, 0]) * 0.25).astype(np.uint8)
    assert np.array_equal(overlay, red)
    assert 'beta = -1.0' in (out / "inpaint.toml").read_text()
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind


def test_formats_with_a_trained_checkpoint(vcn_checkpoint: Path, tmp_path: Path) -> None:
    expected = _write_format_zoo(tmp_path / "in")
    out = tmp_path / "out"
    cfg = InpaintConfig(inputs=(str(tmp_path / "in"),), model="vcn", checkpoint=str(vcn_checkpoint), out=str(out),
                        progress=False)
    assert len(run_inpaint(cfg)) == 4
    modes = {"grey": "L", "rgba": "RGBA", "deep": "RGB", "sub/rotated": "RGB"}
    for name, array in expected.items():
        with Image.open(out / f"{name}.png") as im:
            assert im.mode == modes[name] and im.size == (array.shape[1], array.shape[0])
            if name == "rgba":
                assert np.array_equal(np.asarray(im)[..., 3], array[..., 3])
        with Image.open(out / f"{name}.mask.png") as im:
            assert im.mode == "L" and im.size == (array.shape[1], array.shape[0])
        assert (out / f"{name}.overlay.png").is_file()


def test_non_blind_files(echo_loader: Echo, tmp_path: Path) -> None:
    Image.fromarray(_random_image(30, 20)).save(tmp_path / "a.png")
    Image.fromarray(_random_image(30, 20, seed=1)).save(tmp_path / "b.jpg")
    known = np.zeros((30, 20), dtype=np.uint8)
    known[5:15, 3:9] = 255
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(known).save(masks / "a.png")
    Image.fromarray(255 - known).save(masks / "b.mask.png")
    out = tmp_path / "out"
    cfg = InpaintConfig(inputs=(str(tmp_path / "a.png"), str(tmp_path / "b.jpg")), checkpoint="x", out=str(out),
                        mask=str(masks), progress=False)
    run_inpaint(cfg)
    assert np.array_equal(np.asarray(Image.open(out / "a.mask.png")), known)
    assert np.array_equal(np.asarray(Image.open(out / "b.mask.png")), 255 - known)
    run_inpaint(InpaintConfig(inputs=(str(tmp_path / "b.jpg"),), checkpoint="x", out=str(out),
                              mask=str(masks / "a.png"), progress=False))  # one mask file for every input
    assert np.array_equal(np.asarray(Image.open(out / "b.mask.png")), known)


def _huge_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (PIL: DecompressionBombError; OpenCV: cv2.error)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b"")


def test_unreadable_file_in_a_folder_is_skipped(echo_loader: Echo, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_random_image(20, 20)).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "bomb.png").write_bytes(_huge_png(40000, 40000))
    written = run_inpaint(InpaintConfig(inputs=(str(folder),), checkpoint="x", out=str(tmp_path / "out")))
    assert [p.name for p in written] == ["good.png"]
    err = capsys.readouterr().err
    assert "skipped cannot read image" in err and "broken.png" in err and "bomb.png" in err
    record = (tmp_path / "out" / "inpaint.toml").read_text()
    assert "# inputs: 3, restored 1, skipped 2" in record and "bomb.png" in record


def _photos_a_b_with_masks(folder: Path, shape: tuple[int, int], hole: tuple[slice, slice], a_mask: str,
                           b_mask: str) -> np.ndarray:
    """Make ``folder`` with photos a.png and b.png of ``shape`` (H, W), a's mask (255 on ``hole``) saved as
    ``a_mask`` and its inverse as ``b_mask``; returns a's mask."""
    folder.mkdir()
    known = np.zeros(shape, dtype=np.uint8)
    known[hole] = 255
    for name in ("a", "b"):
        Image.fromarray(_random_image(*shape, seed=ord(name))).save(folder / f"{name}.png")
    Image.fromarray(known).save(folder / a_mask)
    Image.fromarray(255 - known).save(folder / b_mask)
    return known


def test_mask_folder_may_be_the_input_folder(echo_loader: Echo, tmp_path: Path) -> None:
    folder = tmp_path / "photos"  # masks kept beside their photos, plus a previous run's outputs
    known = _photos_a_b_with_masks(folder, (30, 20), np.s_[5:15, 3:9], "a.mask.png", "b.mask.bmp")
    Image.fromarray(_random_image(30, 20, seed=9)).save(folder / "a.overlay.png")
    out = tmp_path / "out"
    written = run_inpaint(InpaintConfig(inputs=(str(folder),), checkpoint="x", out=str(out), mask=str(folder),
                                        progress=False))
    assert [p.name for p in written] == ["a.png", "b.png"]  # a.mask.png, b.mask.bmp, a.overlay.png: not inputs
    assert np.array_equal(np.asarray(Image.open(out / "a.mask.png")), known)
    assert np.array_equal(np.asarray(Image.open(out / "b.mask.png")), 255 - known)
    record = (out / "inpaint.toml").read_text()
    assert f'restored "{folder / "a.png"}" (mask "{folder / "a.mask.png"}") -> "a.png"' in record

    alone = tmp_path / "alone"  # no <name>.mask.*, and <name>.png is the input itself: no mask, not itself
    alone.mkdir()
    Image.fromarray(_random_image(8, 8)).save(alone / "c.png")
    with pytest.raises(BlindbenchError, match=r"no mask for .*c\.png in .*alone \(looked for c\.mask\.png, c_mask\*"):
        run_inpaint(InpaintConfig(inputs=(str(alone),), checkpoint="x", out=str(out), mask=str(alone)))

    masks = tmp_path / "masks"  # both names present: <name>.mask.* wins over <name>.*
    masks.mkdir()
    Image.fromarray(np.zeros_like(known)).save(masks / "a.bmp")
    Image.fromarray(known).save(masks / "a.mask.png")
    run_inpaint(InpaintConfig(inputs=(str(folder / "a.png"),), checkpoint="x", out=str(out), mask=str(masks)))
    assert np.array_equal(np.asarray(Image.open(out / "a.mask.png")), known)


def test_record_is_written_after_the_run(echo_loader: Echo, tmp_path: Path) -> None:
    Image.fromarray(_random_image(30, 20)).save(tmp_path / "good.png")
    out = tmp_path / "out"
    run_inpaint(InpaintConfig(inputs=(str(tmp_path / "good.png"),), checkpoint="x", out=str(out), progress=False))
    record = (out / "inpaint.toml").read_text()
    assert "# inputs: 1, restored 1, skipped 0" in record and "good.png" in record

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"not a png")
    with pytest.raises(BlindbenchError, match="none of the 1 images could be read"):
        run_inpaint(InpaintConfig(inputs=(str(broken),), checkpoint="x", out=str(out), progress=False))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(BlindbenchError, match="is 4x4 \\(HxW\\) but image"):
        run_inpaint(InpaintConfig(inputs=(str(tmp_path / "good.png"),), checkpoint="x", out=str(out),
                                  mask=str(tmp_path / "small.png"), progress=False))
    assert (out / "inpaint.toml").read_text() == record  # failed runs that wrote nothing keep the earlier record
    assert not [p for p in out.rglob(".*")]


def test_config_fields_make_cli_flags() -> None:
    from blindbench.cli import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, InpaintConfig)
    args = parser.parse_args(["a.png", "dir", "--checkpoint", "c.pt", "-o", "o", "--beta", "0.3", "--tile", "256",
                              "--device", "cpu", "--no-progress"])
    cfg = config_from_args(InpaintConfig, args)
    assert (cfg.checkpoint, cfg.beta, cfg.beta_override, cfg.tile, cfg.progress) == ("c.pt", 0.3, 0.3, 256, False)
    assert cfg.inputs == ("a.png", "dir") and cfg.out == "o"
    assert InpaintConfig().beta_override is None and InpaintConfig(inputs="a.png").inputs == ("a.png",)


# ------------------------------------------------------------------------------------------------- errors


def _cfg(tmp_path: Path, **overrides) -> InpaintConfig:
    values = {"inputs": (str(tmp_path / "img.png"),), "checkpoint": str(tmp_path / "ckpt.pt"),
              "out": str(tmp_path / "out"), "progress": False}
    return InpaintConfig(**{**values, **overrides})


@pytest.fixture
def error_dir(tmp_path: Path, vcn_checkpoint: Path) -> Path:
    Image.fromarray(_random_image(40, 56)).save(tmp_path / "img.png")
    (tmp_path / "ckpt.pt").write_bytes(vcn_checkpoint.read_bytes())
    (tmp_path / "notes.png").write_text("these are notes, not pixels\n")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "small-mask.png")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(_random_image(8, 8)).save(tmp_path / "a" / "x.png")
    Image.fromarray(_random_image(8, 8)).save(tmp_path / "b" / "x.jpg")
    return tmp_path


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"inputs": ("{d}/notes.png",)}, r"cannot read image .*notes\.png"),
        ({"inputs": ("{d}/nope.png",)}, r"input not found: .*nope\.png"),
        ({"checkpoint": "{d}/missing.pt"}, r"checkpoint not found: .*missing\.pt"),
        ({"model": "gc"}, r"holds model 'vcn', not 'gc'"),
        ({"model": "vcm"}, r"unknown model 'vcm'; did you mean"),
        ({"mask": "{d}/small-mask.png"}, r"mask .*small-mask\.png is 10x12 \(HxW\) but image .*img\.png is 40x56"),
        ({"mask": "{d}/a"}, r"no mask for .*img\.png in .*a"),
        ({"mask": "{d}/notes.png"}, r"mask: cannot read image .*notes\.png"),
        ({"mask": "{d}/img.png"}, r"mask .*img\.png is the input image itself"),
        ({"checkpoint": ""}, r"--checkpoint"),
        ({"out": ""}, r"--out"),
        ({"out": "{d}"}, r"output .*img\.png would overwrite an input image"),
        ({"inputs": ("{d}/a",), "out": "{d}/a/results"}, r"output folder .* is inside the input folder"),
        ({"inputs": ("{d}/a/x.png", "{d}/b/x.jpg")}, r"x\.png and .*x\.jpg would both be written as x\.png"),
        ({"inputs": ()}, r"no input images"),
    ],
)
def test_bad_inputs_are_one_line_errors(error_dir: Path, overrides: dict, pattern: str) -> None:
    def fill(value):
        return tuple(v.format(d=error_dir) for v in value) if isinstance(value, tuple) else value.format(d=error_dir)

    cfg = _cfg(error_dir, **{k: fill(v) for k, v in overrides.items()})
    with pytest.raises(BlindbenchError, match=pattern) as info:
        run_inpaint(cfg)
    _one_line(info)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"tile": -1}, r"tile and overlap must be >= 0"),
        ({"tile": 64, "overlap": 64}, r"overlap \(64\) must be smaller than tile \(64\)"),
        ({"beta": 1.5}, r"beta must be in \[0, 1\]"),
        ({"device": "tpu"}, r"device: 'tpu' is not one of auto, cpu, cuda"),
        ({"tile": "big"}, r"tile: expected int, got 'big'"),
        ({"progress": 1}, r"progress: expected bool"),
    ],
)
def test_bad_config_values(overrides: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        InpaintConfig(**overrides)
    _one_line(info)


def test_bad_api_inputs(tiny_vcn: nn.Module) -> None:
    image = _random_image(32, 32)
    cases = [
        (lambda: inpaint(image, tiny_vcn, np.zeros((10, 10), bool)), r"mask is 10x10 \(HxW\) but the image is 32x32"),
        (lambda: inpaint(image, tiny_vcn, beta=1.5), r"beta must be a number in \[0, 1\]"),
        (lambda: inpaint(_random_image(8, 8, channels=5), tiny_vcn), r"image array must be \(H, W\)"),
        (lambda: inpaint(image > 0, tiny_vcn), r"dtype bool is not supported"),
        (lambda: inpaint(image.astype(np.float32), tiny_vcn), r"float image must lie in \[0, 1\]"),
        (lambda: inpaint(image.tolist(), tiny_vcn), r"must be a NumPy array or a torch tensor"),
        (lambda: inpaint(torch.zeros(3, 8, 8, dtype=torch.uint8), tiny_vcn), r"image tensor must be float"),
        (lambda: inpaint(image, tiny_vcn, tile=-5), r"tile and overlap must be integers >= 0"),
        (lambda: inpaint(image, tiny_vcn, tile=32, overlap=40), r"overlap \(40\) must be smaller than the tile side"),
        (lambda: inpaint(torch.zeros(3, 8, 8), tiny_vcn, torch.full((8, 8), 2.0)), r"mask tensor values must lie"),
        (lambda: inpaint(torch.rand(3, 8, 8) * 2 - 1, tiny_vcn),
         r"image tensor values must lie in \[0, 1\], got values in \[-.*\(for x in the models' \[-1, 1\] pass"),
        (lambda: inpaint(torch.full((1, 3, 8, 8), float("nan")), tiny_vcn),
         r"image tensor values must lie in \[0, 1\]"),
        (lambda: inpaint(np.full((8, 8, 3), 1.5, np.float32), tiny_vcn), r"float image must lie in \[0, 1\], got "
         r"values in \[1\.5, 1\.5\]"),
    ]
    for call, pattern in cases:
        with pytest.raises(BlindbenchError, match=pattern) as info:
            call()
        _one_line(info)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_one_line(error_dir: Path) -> None:
    with pytest.raises(BlindbenchError, match=re.escape("--device cuda: no CUDA device is available")):
        run_inpaint(_cfg(error_dir, device="cuda"))


def test_composite_keeps_clean_pixels_and_raw_is_the_network_output(tiny_vcn: nn.Module) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    known = np.zeros((48, 64), np.float32)
    known[10:30, 20:40] = 1.0
    kept, _ = inpaint(image, tiny_vcn, known)  # composite by default
    assert np.array_equal(kept[known == 0], image[known == 0])  # clean pixels untouched
    raw, _ = inpaint(image, tiny_vcn, known, composite=False)
    assert not np.array_equal(raw[known == 0], image[known == 0])
    assert np.array_equal(raw[known == 1], kept[known == 1])  # inside the hole both are the network's output
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    tensor_kept, _ = inpaint(x, tiny_vcn, torch.from_numpy(known))
    assert torch.equal(tensor_kept[:, torch.from_numpy(known) == 0], x[:, torch.from_numpy(known) == 0])


def test_outputs_never_replace_a_mask_file(echo_loader: Echo, tmp_path: Path) -> None:
    """`inpaint photo.jpg --mask DIR -o DIR` with DIR/photo.png as the mask: refused, the mask untouched."""
    Image.fromarray(_random_image(24, 24)).save(tmp_path / "photo.jpg")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((24, 24), 255, np.uint8)).save(masks / "photo.png")
    before = (masks / "photo.png").read_bytes()
    with pytest.raises(BlindbenchError, match=r"output .*photo\.png would overwrite a mask file"):
        run_inpaint(InpaintConfig(inputs=(str(tmp_path / "photo.jpg"),), checkpoint="x", out=str(masks),
                                  mask=str(masks), progress=False))  # fmt: skip
    assert (masks / "photo.png").read_bytes() == before


# ------------------------------------------------------------------------------- one value convention


def test_tensors_and_arrays_share_the_unit_range(tiny_vcn: nn.Module) -> None:
    """A [0, 1] tensor is the documented input (it used to be read as [-1, 1] and come back in about [-0.2, 0.08])."""
    echo = Echo()
    unit = torch.rand(2, 3, 24, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    restored, _ = inpaint(unit, echo, composite=False)
    assert restored.dtype == torch.float64 and torch.allclose(restored, unit, atol=1e-6)  # Echo: output = input
    array = unit[0].permute(1, 2, 0).numpy().astype(np.float32)
    from_array, _ = inpaint(array, tiny_vcn)
    from_tensor, _ = inpaint(unit[0].float(), tiny_vcn)
    assert np.allclose(from_tensor.permute(1, 2, 0).numpy(), from_array, atol=1e-5)  # the same numbers either way


# ------------------------------------------------------------------------------------ LaMa-style masks


def test_lama_style_masks_are_masks_not_inputs(echo_loader: Echo, tmp_path: Path) -> None:
    folder = tmp_path / "lama"  # LaMa's layout (and blindbench export --masks): photo.png beside photo_mask*.png
    known = _photos_a_b_with_masks(folder, (32, 40), np.s_[4:20, 8:30], "a_mask.png", "b_mask000.png")
    Image.fromarray(_random_image(32, 40, seed=5)).save(folder / "face_masked.png")  # no face.*: a photo
    Image.fromarray(known).save(folder / "face_masked_mask.png")  # ... whose own mask is this one
    out = tmp_path / "out"
    written = run_inpaint(InpaintConfig(inputs=(str(folder),), checkpoint="x", out=str(out), mask=str(folder),
                                        progress=False))  # fmt: skip
    assert [p.name for p in written] == ["a.png", "b.png", "face_masked.png"]
    assert np.array_equal(np.asarray(Image.open(out / "a.mask.png")), known)
    assert np.array_equal(np.asarray(Image.open(out / "b.mask.png")), 255 - known)
    assert np.array_equal(np.asarray(Image.open(out / "face_masked.mask.png")), known)

    Image.fromarray(known).save(folder / "b_mask001.png")  # two masks for one image: which one is meant?
    several = r"several masks for .*b\.png in .*: b_mask000\.png, b_mask001\.png"
    with pytest.raises(BlindbenchError, match=several) as info:
        run_inpaint(InpaintConfig(inputs=(str(folder / "b.png"),), checkpoint="x", out=str(tmp_path / "o2"),
                                  mask=str(folder), progress=False))  # fmt: skip
    _one_line(info)
    blind = run_inpaint(InpaintConfig(inputs=(str(folder),), checkpoint="x", out=str(tmp_path / "o3"), progress=False))
    assert [p.name for p in blind] == ["a.png", "b.png", "face_masked.png"]  # blind too: masks are not inputs


def test_cpu_inpaint_compiles_only_for_many_images(monkeypatch) -> None:
    from blindbench import fastpath
    from blindbench.commands.inpaint import InpaintConfig
    from blindbench.errors import BlindbenchError

    monkeypatch.setattr(fastpath, "prepare_for_inference", lambda model, **kwargs: ("compiled", model))
    monkeypatch.setattr(fastpath, "compiler_available", lambda: True)
    model, cpu = Echo(), torch.device("cpu")
    assert inpaint_module._maybe_compiled(InpaintConfig(), model, cpu, 10) is model  # default: 500 images
    assert inpaint_module._maybe_compiled(InpaintConfig(compile_min=10), model, cpu, 10) == ("compiled", model)
    assert inpaint_module._maybe_compiled(InpaintConfig(compile_min=10, eager=True), model, cpu, 10) is model
    assert inpaint_module._maybe_compiled(InpaintConfig(compile_min=0), model, torch.device("meta"), 10) is model
    with pytest.raises(BlindbenchError, match="--compile-min must be >= 0"):
        inpaint_module._maybe_compiled(InpaintConfig(compile_min=-1), model, cpu, 10)

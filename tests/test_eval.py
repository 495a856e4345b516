"""``blindbench eval``: rows per sample, reference methods, images, resume, refusals, one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from blindbench.cli import main
from blindbench.errors import BlindbenchError, ConfigError
from blindbench.evaluate import COLUMNS, EvalConfig, format_value, run_eval, score_batch, telea_inpaint
from blindbench.imageio import read_image


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def vcn_eval(tiny_vcn_run: Path, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "vcn"
    cfg = EvalConfig(model="vcn", checkpoint=str(tiny_vcn_run), out=str(out), batch=5, limit=12, save_images=True,
                     progress=False)  # fmt: skip
    report = run_eval(cfg)
    assert report.scored == 12 and report.skipped == 0
    return out


def test_rows_schema_and_values(vcn_eval: Path, demo_spec) -> None:
    rows = _rows(vcn_eval / "samples.csv")
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == 12 and len({r["key"] for r in rows}) == 12
    patterns = {r.name for r in demo_spec.recipes}
    for row in rows:
        assert row["method"] == row["model"] == "vcn" and row["set"] == "photos-demo"
        assert row["pattern"] in patterns
        assert 0 < float(row["mask_area"]) < 1
        assert 0 < float(row["psnr"]) < 100 and -1 <= float(row["ssim"]) <= 1
        assert float(row["bce"]) > 0 and 0 <= float(row["iou"]) <= 1 and 0 <= float(row["ap"]) <= 1
    assert (vcn_eval / "eval.toml").is_file()


def test_saved_images_are_what_was_scored(vcn_eval: Path) -> None:
    from blindbench.metrics import psnr, ssim

    row = _rows(vcn_eval / "samples.csv")[3]
    key = row["key"]
    restored = read_image(vcn_eval / "images" / f"{key}.png")
    target = read_image(vcn_eval / "targets" / f"{key}.png")
    mask = read_image(vcn_eval / "masks" / f"{key}.png")
    assert restored.shape == target.shape == (256, 256, 3) and mask.shape[:2] == (256, 256)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].double() / 255.0

    assert float(psnr(t(restored), t(target))[0]) == pytest.approx(float(row["psnr"]), rel=1e-5)
    assert float(ssim(t(restored), t(target))[0]) == pytest.approx(float(row["ssim"]), rel=1e-5)


def test_resume_scores_only_the_rest_and_repairs_a_torn_line(vcn_eval: Path, tiny_vcn_run: Path, tmp_path) -> None:
    out = tmp_path / "resume"
    first = run_eval(EvalConfig(model="vcn", checkpoint=str(tiny_vcn_run), out=str(out), batch=4, limit=8,
                                progress=False))  # fmt: skip
    assert first.scored == 8
    csv_path = out / "samples.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text("".join(lines[:-2]) + lines[-2][:10])  # killed mid-row: 6 complete rows and a torn one
    second = run_eval(EvalConfig(model="vcn", checkpoint=str(tiny_vcn_run), out=str(out), batch=4, limit=12,
                                 progress=False))  # fmt: skip
    assert (second.skipped, second.scored) == (6, 6)
    rows = _rows(csv_path)
    assert len(rows) == 12 and len({r["key"] for r in rows}) == 12
    reference = {r["key"]: r for r in _rows(vcn_eval / "samples.csv")}
    for row in rows:  # same checkpoint, same samples: the same numbers, whichever run scored them
        assert row == reference[row["key"]]


def test_other_config_in_the_same_folder_is_refused(vcn_eval: Path) -> None:
    with pytest.raises(BlindbenchError, match="holds an eval with other .*method"):
        run_eval(EvalConfig(model="input", out=str(vcn_eval), limit=12, progress=False))


def test_reference_rows(demo_dir: Path, tmp_path: Path) -> None:
    inp = run_eval(EvalConfig(model="input", out=str(tmp_path / "input"), limit=6, progress=False))
    telea = run_eval(EvalConfig(model="oracle-telea", out=str(tmp_path / "telea"), limit=6, progress=False))
    rows_in, rows_te = _rows(inp.out_dir / "samples.csv"), _rows(telea.out_dir / "samples.csv")
    assert [r["key"] for r in rows_in] == [r["key"] for r in rows_te]
    for a, b in zip(rows_in, rows_te, strict=True):
        assert a["bce"] == a["iou"] == a["ap"] == "" and b["bce"] == ""
        assert a["checkpoint"] == "" and a["method"] == "input" and b["method"] == "oracle-telea"
    # the non-blind oracle must beat leaving the damage in place, on average
    assert telea.means["psnr"] > inp.means["psnr"] + 3.0


def test_telea_leaves_the_outside_untouched() -> None:
    image = torch.randint(0, 256, (1, 3, 32, 32)).float() / 127.5 - 1.0  # uint8 levels: only the region may change
    region = torch.zeros(1, 1, 32, 32)
    region[..., 10:20, 12:22] = 1.0
    filled = telea_inpaint(image, region)
    outside = region.expand_as(image) == 0
    assert torch.allclose(filled[outside], image[outside], atol=1e-6)
    assert not torch.allclose(filled[~outside], image[~outside], atol=1e-3)


def test_score_batch_identical_images() -> None:
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, :8] = 1
    logits = (mask * 2 - 1) * 30.0  # confident and right
    values = score_batch(image, image, mask, logits)
    assert torch.equal(values["psnr"], torch.full((2,), 100.0, dtype=torch.float64))
    assert torch.allclose(values["ssim"], torch.ones(2, dtype=torch.float64))
    assert torch.allclose(values["mask_area"], torch.tensor([0.25, 0.0], dtype=torch.float64))
    assert float(values["bce"].max()) < 1e-10 and float(values["iou"][0]) == 1.0
    assert set(score_batch(image, image, mask, None)) == {"mask_area", "psnr", "ssim", "psnr_y", "ssim_y"}


def test_composite_keeps_the_input_where_the_mpn_sees_no_damage() -> None:
    """Raw output wrong outside the hole, right inside; the composite takes the (clean) input outside: exact."""
    clean = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:20, 4:28] = 1
    corrupted = clean * (1 - mask) + mask * 0.3
    restored = clean * mask - (1 - mask) * 0.5  # the hole restored, the rest destroyed
    logits = (mask * 2 - 1) * 40.0
    values = score_batch(restored, clean, mask, logits, corrupted)
    assert float(values["psnr"].max()) < 20 and torch.equal(values["psnr_composite"], torch.full((2,), 100.0,
                                                                                                   dtype=torch.float64))
    no_mpn = score_batch(restored, clean, mask, None, corrupted)  # no mask prediction: composite = raw
    assert torch.equal(no_mpn["psnr_composite"], no_mpn["psnr"]) and torch.equal(no_mpn["ssim_composite"],
                                                                                  no_mpn["ssim"])


def test_format_value() -> None:
    assert format_value(None) == "" and format_value(float("nan")) == ""
    assert format_value(20.123456789) == "20.1235" and format_value("ab") == "ab"


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (dict(model="vcn"), "needs --checkpoint"),
        (dict(model="input", checkpoint="x.pt"), "takes no --checkpoint"),
        (dict(model="vcm", checkpoint="x.pt"), "vcn"),
        (dict(model="input", batch=0), "--batch"),
        (dict(model="input", label="a b"), "--label"),
        (dict(model="input", iqa="nique"), "unknown --iqa"),
        (dict(model="input", iqa="fid"), "--save-images"),
    ],
)
def test_bad_config_is_one_line(cfg: dict, match: str, demo_dir: Path) -> None:
    with pytest.raises((ConfigError, BlindbenchError), match=match):
        run_eval(EvalConfig(progress=False, **cfg))


def test_cli_errors(demo_dir: Path, tiny_vcn_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["eval", "--model", "vcn", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["eval", "--model", "vcn", "--checkpoint", str(bad), "--out", str(tmp_path / "o1")]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert main(["eval", "--model", "ca", "--checkpoint", str(tiny_vcn_run), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "holds model 'vcn', not 'ca'" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", "--model", "input", "--set", "nosuchset"]) == 2
    assert capsys.readouterr().err.startswith("blindbench: error:")


def test_cli_prints_summary(demo_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["eval", "--model", "input", "--limit", "4", "--out", str(tmp_path / "e"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "eval input: 4 samples scored" in out and "psnr" in out


def test_iqa_needs_pyiqa_or_weights(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    from blindbench.iqa import IqaMetrics

    with pytest.raises(BlindbenchError, match="--iqa-weights"):
        IqaMetrics("lpips", str(tmp_path / "missing"), torch.device("cpu"))
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # import fails
    with pytest.raises(BlindbenchError, match="pip install 'blindbench\\[iqa\\]'"):
        IqaMetrics("lpips", str(tmp_path), torch.device("cpu"))

    class FakeLpips(torch.nn.Module):  # stands in for pyiqa's metric: mean absolute difference
        def forward(self, a, b):
            return (a - b).abs().mean(dim=(1, 2, 3))

    fake = types.SimpleNamespace(create_metric=lambda name, device: FakeLpips())
    monkeypatch.setitem(sys.modules, "pyiqa", fake)
    monkeypatch.setitem(sys.modules, "pyiqa.utils", None)
    from blindbench.iqa import offline

    hub, download = torch.hub.get_dir(), torch.hub.download_url_to_file
    metrics = IqaMetrics("lpips", str(tmp_path), torch.device("cpu"))
    a, b = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
    assert torch.allclose(metrics.per_sample(a, b)["lpips"], torch.full((2,), 0.5, dtype=torch.float64))
    assert torch.hub.get_dir() == hub and torch.hub.download_url_to_file is download  # nothing leaks
    with offline(tmp_path), pytest.raises(BlindbenchError, match="wants to download"):
        assert torch.hub.get_dir() == str(tmp_path)
        torch.hub.download_url_to_file("https://example.invalid/w.pth", "w.pth")
    assert torch.hub.get_dir() == hub and torch.hub.download_url_to_file is download


def test_eval_checks_shards_against_the_lock(demo_dir: Path, tmp_path: Path) -> None:
    import shutil

    fake = tmp_path / "shards"
    shutil.copytree(demo_dir, fake)
    shutil.copy(fake / "photos-demo-000001.tar", fake / "photos-demo-000000.tar")  # duplicated content
    with pytest.raises(BlindbenchError, match="do not match .*--no-verify"):
        run_eval(EvalConfig(model="input", shards=str(fake), out=str(tmp_path / "e"), progress=False))
    assert not (tmp_path / "e").exists()  # nothing claimed
    with pytest.raises(BlindbenchError, match="occurs twice"):
        run_eval(EvalConfig(model="input", shards=str(fake), out=str(tmp_path / "e"), verify=False, progress=False))


def test_failed_setup_does_not_claim_the_folder(demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    with pytest.raises(BlindbenchError, match="--iqa-weights"):
        run_eval(EvalConfig(model="input", out=str(out), limit=2, iqa="lpips", iqa_weights=str(tmp_path / "no"),
                            progress=False))  # fmt: skip
    assert run_eval(EvalConfig(model="input", out=str(out), limit=2, progress=False)).scored == 2
    with pytest.raises(BlindbenchError, match="other save_images"):  # images for only some rows: refused
        run_eval(EvalConfig(model="input", out=str(out), limit=4, save_images=True, progress=False))


def test_checkpoint_counts_by_content_not_path(tiny_vcn_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    run_eval(EvalConfig(model="vcn", checkpoint=str(tiny_vcn_run), out=str(out), limit=2, progress=False))
    again = run_eval(EvalConfig(model="vcn", checkpoint=str(tiny_vcn_run / "checkpoints" / "last.pt"), out=str(out),
                                limit=4, progress=False))  # fmt: skip
    assert (again.skipped, again.scored) == (2, 2)


def test_out_is_a_file_and_bad_csv_are_one_line(demo_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["eval", "--model", "input", "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "samples.csv").write_bytes(b"\xff\xfe\x00garbage")
    assert main(["eval", "--model", "input", "--out", str(tmp_path / "bin")]) == 2
    assert "is not a blindbench eval CSV" in capsys.readouterr().err
    assert (tmp_path / "bin" / "samples.csv").read_bytes() == b"\xff\xfe\x00garbage"  # left untouched


def test_a_header_only_csv_is_rewritten_with_this_runs_columns(demo_dir: Path, tmp_path: Path) -> None:
    """A killed run that wrote only its header (here with an --iqa column) leaves no mixed-width file."""
    out = tmp_path / "e"
    out.mkdir()
    (out / "samples.csv").write_text(",".join((*COLUMNS, "lpips")) + "\n")
    assert run_eval(EvalConfig(model="input", out=str(out), limit=2, progress=False)).scored == 2
    lines = (out / "samples.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 3


def test_rows_without_eval_toml_and_a_busy_folder_are_refused(demo_dir: Path, tmp_path: Path) -> None:
    from blindbench.errors import BlindbenchError
    from blindbench.locking import exclusive_folder

    out = tmp_path / "ref"
    run_eval(EvalConfig(model="input", set="photos-demo", limit=2, out=str(out), progress=False))
    (out / "eval.toml").unlink()  # another checkpoint's rows may be in there: never append to them
    before = (out / "samples.csv").read_text()
    with pytest.raises(BlindbenchError, match="holds scored rows but no eval.toml"):
        run_eval(EvalConfig(model="input", set="photos-demo", limit=4, out=str(out), progress=False))
    assert (out / "samples.csv").read_text() == before
    busy = tmp_path / "busy"
    with exclusive_folder(busy, "eval"), pytest.raises(BlindbenchError, match="in use by another blindbench eval"):
        run_eval(EvalConfig(model="input", set="photos-demo", limit=2, out=str(busy), progress=False))
    assert not (busy / "samples.csv").exists()


@pytest.mark.parametrize(("options", "compiled"), [({}, False), ({"compile_min": 0}, True),
                                                    ({"compile_min": 4}, True), ({"compile_min": 5}, False),
                                                    ({"compile_min": 0, "eager": True}, False)])
def test_cpu_eval_compiles_only_when_the_set_is_large_enough(options: dict, compiled: bool, demo_dir: Path,
                                                            tiny_vcn_run: Path, tmp_path: Path, monkeypatch) -> None:
    """4 samples to score: below --compile-min (default 500) eval stays eager; --eager always does."""
    from blindbench import fastpath

    wrapped = []

    def record(model, **kwargs):  # the real compile is tested in test_fastpath.py; here only the decision
        wrapped.append(model)
        return model

    monkeypatch.setattr(fastpath, "prepare_for_inference", record)
    monkeypatch.setattr(fastpath, "compiler_available", lambda: True)
    cfg = EvalConfig(model="vcn", checkpoint=str(tiny_vcn_run), set="photos-demo", out=str(tmp_path / "e"),
                     device="cpu", progress=False, limit=4, **options)  # fmt: skip
    run_eval(cfg)
    assert bool(wrapped) == compiled
    with pytest.raises(ConfigError, match="--compile-min must be >= 0"):
        run_eval(EvalConfig(model="vcn", checkpoint=str(tiny_vcn_run), compile_min=-1, device="cpu"))


def test_a_scripted_model_with_a_checkpoint_is_refused(tmp_path: Path) -> None:
    """A TorchScript or exported file holds its own weights: a --checkpoint beside it would be ignored silently."""
    from blindbench.evaluate import validate_config

    for model in ("net.ts", "net.pt", "net.pt2"):
        with pytest.raises(ConfigError, match="holds its own"):
            validate_config(EvalConfig(model=model, checkpoint="w.pt"))
    validate_config(EvalConfig(model="net.ts"))  # alone it is fine

"""``blindbench export-weights`` (weights only, safetensors or .pt) and ``blindbench.list_models``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blindbench import create_model, list_models
from blindbench.checkpoint import read_weights, save_checkpoint, weights_digest
from blindbench.cli import main


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A training run folder whose checkpoint carries what a real one does beside the model: critics, optimiser
    states (Adam's two moments per parameter) and RNG state."""
    torch.manual_seed(0)
    model = create_model("vcn", "tiny")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(1, 3, 64, 64)).image.mean().backward()
    optimizer.step()
    weights = model.state_dict()
    critic = torch.nn.Conv2d(3, 64, 3)
    state = {"model_name": "vcn", "preset": "tiny", "step": 7, "stage": "separate", "stage_step": 7,
             "config": {"model": "vcn"}, "model": weights, "model_sha256": weights_digest(weights),
             "critics": {"global": critic.state_dict()}, "optimizers": {"separate": optimizer.state_dict()},
             "rng": {"torch": torch.get_rng_state()}}  # fmt: skip
    save_checkpoint(state, tmp_path / "run" / "checkpoints" / "last.pt")
    return tmp_path / "run"


def _restored(path: Path) -> torch.nn.Module:
    blob = read_weights(path, "exported weights")
    model = create_model(blob["model_name"], blob["preset"])
    model.load_state_dict(blob["model"])  # strict: every weight there, nothing else
    return model.eval()


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_exported_weights_round_trip_into_create_model(fmt: str, run_dir: Path, capsys) -> None:
    assert main(["export-weights", str(run_dir), "--format", fmt]) == 0
    out = run_dir / f"weights.{fmt}"
    assert f"weights of vcn (tiny, step 7): {out}" in capsys.readouterr().out
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert out.stat().st_size < 0.6 * (run_dir / "checkpoints" / "last.pt").stat().st_size  # no optimisers, critics
    if fmt == "safetensors":
        from safetensors import safe_open

        with safe_open(str(out), framework="pt") as handle:  # a plain safetensors file: any reader takes it
            assert set(handle.keys()) == set(checkpoint["model"])
            assert handle.metadata()["model_sha256"] == checkpoint["model_sha256"]
    else:
        blob = torch.load(out, weights_only=True)
        assert set(blob) == {"format", "model_name", "preset", "step", "model", "model_sha256"}
    model = _restored(out)
    reference = create_model("vcn", "tiny")
    reference.load_state_dict(checkpoint["model"])
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        got, want = model(x), reference.eval()(x)
    assert torch.equal(got.image, want.image) and torch.equal(got.mask_logits, want.mask_logits)


def test_half_weights_are_fp16_on_disk_and_float32_when_read(run_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "w.safetensors"
    assert main(["export-weights", str(run_dir / "checkpoints" / "last.pt"), "--half", "--out", str(out)]) == 0
    assert {t.dtype for t in load_file(out).values() if t.is_floating_point()} == {torch.float16}
    assert {t.dtype for t in read_weights(out, "w")["model"].values() if t.is_floating_point()} == {torch.float32}
    default = run_dir / "checkpoints" / "last.weights.pt"  # beside a checkpoint file, by default
    assert main(["export-weights", str(run_dir / "checkpoints" / "last.pt"), "--format", "pt"]) == 0
    assert default.is_file()


def test_damaged_safetensors_file_is_one_line(run_dir: Path, capsys) -> None:
    assert main(["export-weights", str(run_dir)]) == 0
    out = run_dir / "weights.safetensors"
    data = bytearray(out.read_bytes())
    data[-5] ^= 0xFF  # a flipped byte inside the last tensor: only the digest notices
    out.write_bytes(bytes(data))
    with pytest.raises(Exception, match="do not match their recorded sha256"):
        read_weights(out, "weights")
    out.write_bytes(b"not a safetensors file")
    with pytest.raises(Exception, match=r"cannot read weights \S+weights.safetensors \("):
        read_weights(out, "weights")


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ([], r"give the training run folder or checkpoint file"),
        (["{run}", "--out", "{run}/w.pt"], r"--out \S+w.pt does not end in .safetensors \(--format safetensors\)"),
        (["{run}", "--format", "pt", "--out", "{run}/checkpoints/last.pt"], r"is the checkpoint itself"),
        (["/nonexistent/run"], r"checkpoint not found: /nonexistent/run"),
    ],
)
def test_export_weights_errors_are_one_line(args: list[str], pattern: str, run_dir: Path, capsys) -> None:
    import re

    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    assert main(["export-weights", *(a.format(run=run_dir) for a in args)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("blindbench: error: ") and re.search(pattern, err), err
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before


def test_export_weights_config_file(run_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "export.toml"
    config.write_text(f'run = "{run_dir}"\nformat = "pt"\nout = "{tmp_path / "from-file.pt"}"\n')
    assert main(["export-weights", "--config", str(config)]) == 0
    assert read_weights(tmp_path / "from-file.pt", "w")["step"] == 7


def test_list_models_is_lazy_and_filters() -> None:
    probe = "import sys, blindbench; assert 'torch' not in sys.modules, 'import blindbench loaded torch'"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).returncode == 0
    from blindbench.models import model_names

    names = list_models()
    assert names == sorted(model_names()) and {"vcn", "ca", "gmc", "pc", "gc"} <= set(names)
    assert list_models("vcn*") == [n for n in names if n.startswith("vcn")] and "vcn" in list_models("vcn*")
    assert list_models("no-such-*") == []

"""Training code paths that are meant for a GPU, exercised on CPU: autocast in bf16, channels-last, compile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from blindbench import train
from blindbench.train import Runtime, TrainConfig, Trainer


def _cfg(out: Path, **overrides) -> TrainConfig:
    values = dict(
        model="vcn", preset="tiny", set="photos-demo", source="shards", stage="joint", steps_joint=2, batch_joint=2,
        perceptual=False, critic_steps=1, image_size=32, device="cpu", workers=0, shuffle_buffer=8, val_set="",
        sample_every=0, checkpoint_every=0, tensorboard=False, progress=False, out=str(out),
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.parametrize("stage", ["separate", "joint"])
def test_bf16_autocast_step_is_finite_and_updates(stage: str, demo_dir: Path, tmp_path: Path) -> None:
    """The autocast branch of the loop (bf16, as on a GPU with bf16) runs end to end on CPU."""
    # channels-last too where the CPU allows it (train.check_cpu_layout: oneDNN 6035 on CPUs without AVX-512)
    channels_last = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    cfg = _cfg(tmp_path / "run", stage=stage, steps_separate=2, batch_separate=2, channels_last=channels_last)
    trainer = Trainer(cfg, Runtime(torch.device("cpu"), amp_dtype=torch.bfloat16), tmp_path / "run")
    trainer._make_optimizers(stage)
    before = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    batch = next(train.BatchSource(cfg, 2, trainer.runtime).batches())
    logs, out = trainer.train_step(stage, batch)
    assert out.image.dtype == torch.bfloat16  # the forward really ran under autocast
    assert logs and all(torch.isfinite(torch.tensor(v)) for v in train.scalars(logs).values())
    after = trainer.raw_model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    assert all(p.dtype == torch.float32 for p in trainer.raw_model.parameters())  # master weights stay fp32


@pytest.mark.slow
def test_compiled_model_trains(demo_dir: Path, tmp_path: Path) -> None:
    """torch.compile (inductor on CPU; needs a C compiler): two finite joint steps change the weights, and the
    checkpoint holds plain names that load into an eager model giving the compiled model's output."""
    from blindbench.checkpoint import load_checkpoint, load_model_from_checkpoint
    from blindbench.models import create_model

    run_dir = tmp_path / "run"
    run_dir.mkdir()  # as run_train makes it
    trainer = Trainer(_cfg(run_dir, compile=True), Runtime(torch.device("cpu")), run_dir)
    assert trainer.model is not trainer.raw_model and hasattr(trainer.model, "_orig_mod")  # the compiled wrapper
    before = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    trainer.run()
    assert trainer.step == 2 and trainer.finite_steps == 2  # no step skipped for a non-finite loss

    weights = load_checkpoint(run_dir)["model"]
    assert list(weights) == list(create_model("vcn", "tiny").state_dict())  # no "_orig_mod." prefix
    assert any(not torch.equal(before[k], weights[k]) for k in before if before[k].is_floating_point())
    eager, meta = load_model_from_checkpoint(run_dir, "vcn")
    assert meta["step"] == 2 and not hasattr(eager, "_orig_mod")
    batch = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (B, C, H, W)
    with torch.no_grad():
        compiled_out, eager_out = trainer.model.eval()(batch), eager(batch)
    torch.testing.assert_close(compiled_out.mask_logits, eager_out.mask_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(compiled_out.image, eager_out.image, atol=1e-4, rtol=1e-4)

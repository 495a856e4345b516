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
    cfg = _cfg(tmp_path / "run", stage=stage, steps_separate=2, batch_separate=2, channels_last=True)
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
    """torch.compile (inductor on CPU; needs a C compiler): two joint steps, finite losses."""
    from blindbench.train import run_train

    run_dir = run_train(_cfg(tmp_path / "run", compile=True))
    assert (run_dir / "checkpoints" / "last.pt").is_file()

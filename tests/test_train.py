"""Training loop: every model trains, joint gradients reach the MPN, exact resume, NaN guard, atomic checkpoints."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from blindbench import checkpoint as ckpt_module
from blindbench import train
from blindbench.checkpoint import load_checkpoint, load_model_from_checkpoint, save_checkpoint
from blindbench.errors import BlindbenchError, ConfigError
from blindbench.models import model_names
from blindbench.train import TrainConfig, Trainer, load_config, run_train, save_config, setup_runtime


def tiny_config(out: Path, **overrides) -> TrainConfig:
    values = dict(
        model="vcn", preset="tiny", set="photos-demo", source="shards", stage="all", steps_separate=1, steps_joint=2,
        batch_separate=2, batch_joint=2, perceptual=False, critic_steps=1, image_size=32, device="cpu", workers=0,
        shuffle_buffer=8, val_set="", sample_every=0, checkpoint_every=0, tensorboard=False, progress=False,
        log_every=1, out=str(out),
    )
    values.update(overrides)
    return TrainConfig(**values)


def _params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("name", model_names())
def test_three_steps_every_model(name: str, demo_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(tmp_path / "run", model=name)
    from blindbench.models import create_model

    torch.manual_seed(cfg.seed)
    initial = create_model(name, "tiny").state_dict()
    run_dir = run_train(cfg)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 3 and state["stage"] == "joint"
    changed = [k for k, v in state["model"].items() if v.is_floating_point() and not torch.equal(v, initial[k])]
    assert changed, "no parameter changed"
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    losses = [float(r.split(",")[3]) for r in rows[1:] if r.split(",")[2] in ("loss", "l1", "bce", "critic")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert any(",joint,critic," in r for r in rows) and any(",separate,l1," in r for r in rows)
    assert (run_dir / "config.toml").is_file()


def test_joint_image_losses_reach_the_mpn(demo_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", stage="joint", lambda_mask=0.0, lambda_adv=0.0, critic_steps=1)
    trainer = Trainer(cfg, setup_runtime(cfg), tmp_path / "run")
    trainer._make_optimizers("joint")
    batch = next(train.BatchSource(cfg, 2, trainer.runtime).batches())
    out = trainer.model(batch["input"])
    terms = train.reconstruction_losses(cfg, None, out, batch, joint=True)
    train.weighted_sum(cfg, terms).backward()  # bce weighted by λ_m = 0: only the image losses
    grads = [p.grad for p in trainer.raw_model.mpn.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_composite_l1_is_the_l1_of_the_blend_and_trains_the_mask_in_the_joint_stage_only(demo_dir: Path,
                                                                                        tmp_path: Path) -> None:
    from vcn.types import composite

    cfg = tiny_config(tmp_path / "run", stage="joint", lambda_mask=0.0, lambda_l1=0.0, lambda_composite=1.0)
    trainer = Trainer(cfg, setup_runtime(cfg), tmp_path / "run")
    batch = next(train.BatchSource(cfg, 2, trainer.runtime).batches())
    out = trainer.model(batch["input"])
    terms = train.reconstruction_losses(cfg, None, out, batch, joint=True)
    expected = (composite(batch["input"], out) - batch["target"]).abs().mean()
    assert torch.allclose(terms["l1_composite"], expected)
    train.weighted_sum(cfg, {"l1_composite": terms["l1_composite"]}).backward()
    head = trainer.raw_model.mpn.parameters()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head)  # it reaches M̂
    assert "l1_composite" not in train.reconstruction_losses(cfg, None, out, batch, joint=False)
    off = dataclasses.replace(cfg, lambda_composite=0.0)
    assert "l1_composite" not in train.reconstruction_losses(off, None, out, batch, joint=True)
    run = run_train(tiny_config(tmp_path / "logged", lambda_composite=1.4))
    rows = csv.DictReader((run / "metrics.csv").read_text().splitlines())
    assert {int(r["step"]) for r in rows if r["name"] == "l1_composite"} == {2, 3}  # the two joint steps


def test_composite_ssim_term_is_one_minus_the_blend_ssim_and_trains_the_mask_in_the_joint_stage_only(
        demo_dir: Path, tmp_path: Path) -> None:
    from vcn.losses import ssim_loss
    from vcn.types import composite

    cfg = tiny_config(tmp_path / "run", stage="joint", lambda_composite_ssim=1.0)
    trainer = Trainer(cfg, setup_runtime(cfg), tmp_path / "run")
    batch = next(train.BatchSource(cfg, 2, trainer.runtime).batches())
    out = trainer.model(batch["input"])
    terms = train.reconstruction_losses(cfg, None, out, batch, joint=True)
    assert "l1_composite" not in terms  # each composite term has its own weight
    expected = ssim_loss(composite(batch["input"], out), batch["target"])
    assert torch.allclose(terms["ssim_composite"], expected) and 0 < float(expected.detach()) < 1
    train.weighted_sum(cfg, {"ssim_composite": terms["ssim_composite"]}).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.raw_model.mpn.parameters())
    assert "ssim_composite" not in train.reconstruction_losses(cfg, None, out, batch, joint=False)


def test_ssim_loss_equals_one_minus_the_eval_ssim_on_uint8_levels() -> None:
    from blindbench.metrics import ssim
    from vcn.losses import ssim_loss

    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 256, (3, 3, 24, 40), generator=gen, dtype=torch.float64) / 255
    noisy = target + 0.1 * torch.randn(target.shape, generator=gen, dtype=torch.float64)
    pred = noisy.clamp(0, 1).mul(255).round() / 255
    loss = ssim_loss(pred * 2 - 1, target * 2 - 1)
    assert abs(float(loss) - (1 - float(ssim(pred, target).mean()))) < 1e-9
    assert float(ssim_loss(target * 2 - 1, target * 2 - 1)) == pytest.approx(0.0, abs=1e-12)


def test_separate_stage_feeds_the_true_mask(demo_dir: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = tiny_config(tmp_path / "run", stage="separate", steps_separate=1)
    trainer = Trainer(cfg, setup_runtime(cfg), tmp_path / "run")
    trainer._make_optimizers("separate")
    seen = {}
    forward = trainer.model.forward

    def spy(image, mask=None, **kwargs):
        seen["mask"] = mask
        return forward(image, mask=mask, **kwargs)

    monkeypatch.setattr(trainer, "model", spy)
    batch = next(train.BatchSource(cfg, 2, trainer.runtime).batches())
    logs, _ = trainer.train_step("separate", batch)
    assert torch.equal(seen["mask"], batch["mask"]) and "adv" not in logs and "critic" not in logs


@pytest.mark.parametrize("mpn_separate", ["bce", "all"])
def test_separate_stage_trains_the_mpn_on_bce_only_unless_asked(mpn_separate: str, demo_dir: Path,
                                                                 tmp_path: Path) -> None:
    """λ_m = 0 leaves only image losses: with "bce" they must not move the MPN (VCN fuses its features)."""
    cfg = tiny_config(tmp_path / "run", stage="separate", steps_separate=1, lambda_mask=0.0,
                      mpn_separate=mpn_separate)
    trainer = Trainer(cfg, setup_runtime(cfg), tmp_path / "run")
    trainer._make_optimizers("separate")
    before = {k: v.clone() for k, v in trainer.raw_model.mpn.state_dict().items()}
    rin_before = {k: v.clone() for k, v in trainer.raw_model.rin.state_dict().items()}
    batch = next(train.BatchSource(cfg, 2, trainer.runtime).batches())
    logs, _ = trainer.train_step("separate", batch)
    assert "skipped" not in logs
    moved = [k for k, v in trainer.raw_model.mpn.state_dict().items() if not torch.equal(v, before[k])]
    assert bool(moved) == (mpn_separate == "all"), moved
    assert any(not torch.equal(v, rin_before[k]) for k, v in trainer.raw_model.rin.state_dict().items())


def test_runs_saved_before_mpn_separate_resume_with_the_old_behaviour(demo_dir: Path, tmp_path: Path) -> None:
    run = run_train(tiny_config(tmp_path / "old", stage="separate", steps_separate=1))
    path = run / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    del state["config"]["mpn_separate"]
    save_checkpoint(state, path)
    assert load_config(None, {"resume": str(run), "steps_separate": 2}).mpn_separate == "all"
    assert tiny_config(tmp_path / "new").mpn_separate == "bce"
    with pytest.raises(ConfigError, match="cannot change mpn_separate"):  # the API path knows it too
        run_train(tiny_config(run, stage="separate", steps_separate=2, resume=str(run)))


def test_resume_is_bit_exact(demo_dir: Path, tmp_path: Path) -> None:
    full = run_train(tiny_config(tmp_path / "full", stage="all", steps_separate=2, steps_joint=4))
    half = run_train(tiny_config(tmp_path / "half", stage="all", steps_separate=2, steps_joint=1))
    assert load_checkpoint(half)["step"] == 3
    resumed = run_train(tiny_config(tmp_path / "half", stage="all", steps_separate=2, steps_joint=4,
                                    resume=str(half)))
    a, b = load_checkpoint(full), load_checkpoint(resumed)
    assert a["step"] == b["step"] == 6
    for key in ("model",):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), name
    for critic in a["critics"]:
        for name, value in a["critics"][critic].items():
            assert torch.equal(value, b["critics"][critic][name]), name


def test_nan_step_is_skipped(demo_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", stage="joint")
    trainer = Trainer(cfg, setup_runtime(cfg), tmp_path / "run")
    trainer._make_optimizers("joint")
    batch = next(train.BatchSource(cfg, 2, trainer.runtime).batches())
    batch = {**batch, "input": batch["input"].clone()}
    batch["input"][0, 0, 0, 0] = float("nan")
    before = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    critics = {k: v.clone() for k, v in trainer.critics.global_critic.state_dict().items()}
    logs, _ = trainer.train_step("joint", batch)
    assert logs == {"skipped": 1.0} and trainer.bad_in_row == 1
    assert all(torch.equal(v, trainer.raw_model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, trainer.critics.global_critic.state_dict()[k]) for k, v in critics.items())


def test_too_many_bad_steps_stop_with_checkpoint_intact(demo_dir: Path, tmp_path: Path, monkeypatch) -> None:
    run_dir = run_train(tiny_config(tmp_path / "run", stage="separate", steps_separate=2))
    last = run_dir / "checkpoints" / "last.pt"
    before = last.read_bytes()

    def nan_losses(*args, **kwargs):
        return {"l1": torch.tensor(float("nan"), requires_grad=True)}

    monkeypatch.setattr(train, "reconstruction_losses", nan_losses)
    cfg = tiny_config(tmp_path / "run", stage="separate", steps_separate=10, max_bad_steps=2, checkpoint_every=1,
                      resume=str(run_dir))
    with pytest.raises(BlindbenchError, match=r"3 non-finite losses in a row .*last\.pt"):
        run_train(cfg)
    assert last.read_bytes() == before


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'lambda_mask'"):
        load_config(None, {"lambda_msk": 1.0})
    bad = tmp_path / "bad.toml"
    bad.write_text('stage = "both"\n')
    with pytest.raises(ConfigError, match="stage: 'both' is not one of separate, joint, all"):
        load_config(bad)
    with pytest.raises(ConfigError, match="steps_joint: expected int"):
        load_config(None, {"steps_joint": "many"})
    with pytest.raises(ConfigError, match="unknown model 'vcm'"):
        TrainConfig(model="vcm")
    cfg = load_config(None, {"lambda_adv": 0, "stage": "joint"})
    assert cfg.lambda_adv == 0.0 and cfg.lr_separate == 1e-4 and (cfg.beta1, cfg.beta2) == (0.5, 0.9)


def test_config_round_trip(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", vgg19='we"ird\\path')
    train.save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg


def test_missing_vgg_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BLINDBENCH_VGG19", raising=False)
    with pytest.raises(BlindbenchError, match="no VGG19 weights.*perceptual = false") as info:
        train.load_perceptual(TrainConfig(perceptual=True))
    assert "\n" not in str(info.value)


def test_atomic_save_keeps_previous(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}, "step": 1}, path)
    before = path.read_bytes()
    real_save = torch.save

    def failing_save(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "step": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # the temp file is gone
    assert load_checkpoint(path)["step"] == 1


def test_load_model_from_checkpoint(demo_dir: Path, tmp_path: Path) -> None:
    run_dir = run_train(tiny_config(tmp_path / "run", stage="separate", steps_separate=1, sample_every=1,
                                    val_set="photos-demo", val_every=1, val_batches=1))
    model, meta = load_model_from_checkpoint(run_dir, "vcn")
    assert meta["step"] == 1 and meta["config"]["model"] == "vcn" and not model.training
    assert list((run_dir / "samples").glob("*.png"))
    assert "val_psnr" in (run_dir / "metrics.csv").read_text()
    with pytest.raises(BlindbenchError, match="holds model 'vcn', not 'gc'"):
        load_model_from_checkpoint(run_dir, "gc")
    with pytest.raises(BlindbenchError, match="checkpoint not found"):
        load_model_from_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        run_train(dataclasses.replace(tiny_config(tmp_path / "run")))


def test_perceptual_terms_with_a_local_vgg_file(demo_dir: Path, tmp_path: Path) -> None:
    from vcn.vgg import VGG19Features

    weights = tmp_path / "vgg19.pth"
    torch.save(VGG19Features().state_dict(), weights)  # random weights, torchvision names: enough for the wiring
    run_dir = run_train(tiny_config(tmp_path / "run", steps_separate=1, steps_joint=1, perceptual=True,
                                    vgg19=str(weights)))
    text = (run_dir / "metrics.csv").read_text()
    assert ",separate,semantic," in text and ",joint,mrf," in text and ",separate,mrf," not in text


def test_bad_validation_set_and_foreign_checkpoints_are_one_line_errors(demo_dir: Path, tmp_path: Path) -> None:
    from blindbench.checkpoint import save_checkpoint
    from blindbench.errors import BlindbenchError
    from blindbench.models import create_model

    with pytest.raises(BlindbenchError, match="nosuchset"):  # at start, not at step val_every
        Trainer(tiny_config(tmp_path / "a", val_set="nosuchset", val_every=1000), setup_runtime(tiny_config(tmp_path)),
                tmp_path / "a")  # fmt: skip
    cfg = tiny_config(tmp_path / "b")
    trainer = Trainer(cfg, setup_runtime(cfg), tmp_path / "b")
    state = trainer.state("separate", 0)
    state["model"] = create_model("vcn", "paper").state_dict()  # right name, weights of another size
    state.pop("model_sha256")
    path = save_checkpoint({**state, "preset": "tiny"}, tmp_path / "other.pt")
    with pytest.raises(BlindbenchError, match=r"does not fit model 'vcn': Error\(s\) in loading state_dict"):
        trainer.restore(path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(BlindbenchError, match=r"cannot read checkpoint .*garbage.pt: .*\(UnpicklingError\)$") as info:
        trainer.restore(garbage)
    assert "weights_only" not in str(info.value)


def test_crop_defaults_per_preset_where_the_images_are_larger(tmp_path: Path) -> None:
    from blindbench.models import PRESET_TRAINING

    assert TrainConfig().crop_size == 0  # paper: whole 256² images
    assert TrainConfig(preset="tiny").crop_size == PRESET_TRAINING["tiny"].crop == 128  # photos-train is 256²
    assert TrainConfig(preset="tiny", image_size=64).crop_size == 0  # not larger than the crop: whole images
    assert TrainConfig(preset="tiny", crop_size=0).crop_size == 0  # an explicit value wins
    assert TrainConfig(preset="tiny", crop_size=64).crop_size == 64
    save_config(TrainConfig(preset="tiny"), tmp_path / "c.toml")
    assert "crop_size = 128" in (tmp_path / "c.toml").read_text()  # the resolved value is recorded
    with pytest.raises(ConfigError, match="crop_size must be >= 0"):
        TrainConfig(crop_size=-2)


def test_learning_rates_default_per_preset_and_must_be_finite(tmp_path: Path) -> None:
    from blindbench.models import PRESET_TRAINING

    paper, tiny = TrainConfig(), TrainConfig(preset="tiny")
    assert (paper.lr_separate, paper.lr_joint) == (1e-4, 1e-5)
    assert (tiny.lr_separate, tiny.lr_joint) == (PRESET_TRAINING["tiny"].lr_separate, PRESET_TRAINING["tiny"].lr_joint)
    assert TrainConfig(preset="tiny", lr_separate=2e-4).lr_separate == 2e-4  # an explicit value wins
    gmc = TrainConfig(model="gmc", preset="tiny")  # its own stage-1 rate: its output layer dies at 1e-3
    assert (gmc.lr_separate, gmc.lr_joint, gmc.crop_size) == (3e-4, tiny.lr_joint, tiny.crop_size)
    assert TrainConfig(model="gmc").lr_separate == paper.lr_separate
    save_config(tiny, tmp_path / "c.toml")
    assert "lr_separate = 0.001" in (tmp_path / "c.toml").read_text()  # the resolved value is recorded
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="lr_separate must be a finite number"):
            TrainConfig(lr_separate=bad)
    with pytest.raises(ConfigError, match="lambda_l1 must be a finite number"):
        TrainConfig(lambda_l1=float("nan"))


def test_validation_scores_the_whole_set_per_pattern(demo_dir: Path) -> None:
    from blindbench.models import create_model
    from blindbench.train import Runtime, validate

    cfg = TrainConfig(preset="tiny", val_set="photos-demo", val_batch=5, image_size=64, perceptual=False)
    model = create_model("vcn", "tiny")
    values = validate(cfg, model, Runtime(torch.device("cpu")))
    patterns = ("colour", "graffiti", "noise", "paste", "real", "text")
    assert {f"val_bce_{p}" for p in patterns} <= set(values)
    for key in ("val_psnr", "val_ssim", "val_psnr_composite", "val_ssim_composite", "val_psnr_true_mask"):
        assert np.isfinite(values[key])
    # 48 images in batches of 5: the per-pattern means average exactly the overall mean (8 images each)
    assert values["val_bce"] == pytest.approx(np.mean([values[f"val_bce_{p}"] for p in patterns]), rel=1e-9)
    first = validate(dataclasses.replace(cfg, val_batches=1), model, Runtime(torch.device("cpu")))
    assert first["val_bce"] != pytest.approx(values["val_bce"], rel=1e-9)  # val_batches=1 scores 5 images only


def test_fresh_critic_batches_are_consumed_and_resume_exactly(demo_dir: Path, tmp_path: Path) -> None:
    from blindbench.checkpoint import load_checkpoint

    common = dict(model="vcn", preset="tiny", set="photos-demo", source="shards", stage="joint", batch_joint=2,
                  critic_steps=2, image_size=32, perceptual=False, device="cpu", workers=0, shuffle_buffer=8,
                  val_set="", sample_every=0, tensorboard=False, progress=False)  # fmt: skip
    straight = run_train(TrainConfig(steps_joint=4, out=str(tmp_path / "a"), **common))
    state = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert state["data_batches"] == 4 * 3  # one batch per generator step plus one per critic update
    run_train(TrainConfig(steps_joint=2, out=str(tmp_path / "b"), **common))
    resumed = run_train(TrainConfig(steps_joint=4, out=str(tmp_path / "b"), resume=str(tmp_path / "b"), **common))
    a, b = state["model"], load_checkpoint(resumed / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    shared = run_train(TrainConfig(steps_joint=4, critic_batches="shared", out=str(tmp_path / "c"), **common))
    assert load_checkpoint(shared / "checkpoints" / "last.pt")["data_batches"] == 4


def _tiny_run(tmp_path: Path, name: str, **overrides) -> TrainConfig:
    return tiny_config(tmp_path / name, **overrides)


def test_resume_reads_the_run_config_and_refuses_unsafe_changes(demo_dir: Path, tmp_path: Path) -> None:
    """`train --resume RUN` (CLI: only given flags) continues the run as it was configured."""
    run = run_train(_tiny_run(tmp_path, "r", steps_separate=2, stage="separate"))
    before = (run / "config.toml").read_text()
    cfg = load_config(None, {"resume": str(run), "steps_separate": 3})
    assert (cfg.preset, cfg.steps_separate, cfg.image_size) == ("tiny", 3, 32)  # the run's, plus the given change
    for change, value in (("model", "gc"), ("lr_separate", 1e-5), ("seed", 3), ("preset", "paper")):
        with pytest.raises(ConfigError, match=f"cannot change {change} when resuming"):
            load_config(None, {"resume": str(run), change: value})
        with pytest.raises((ConfigError, BlindbenchError)):  # the API path: refused before any file is written
            run_train(dataclasses.replace(cfg, **{change: value}))
    assert (run / "config.toml").read_text() == before
    run_train(cfg)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3


def test_resume_from_a_file_outside_a_run_folder_needs_out(demo_dir: Path, tmp_path: Path) -> None:
    run = run_train(_tiny_run(tmp_path, "r", steps_separate=1, stage="separate"))
    models = tmp_path / "elsewhere" / "models"
    models.mkdir(parents=True)
    (models / "model.pt").write_bytes((run / "checkpoints" / "last.pt").read_bytes())
    (tmp_path / "elsewhere" / "config.toml").write_text("# someone's own file\n")
    with pytest.raises(ConfigError, match="not in a run folder's checkpoints/: give --out"):
        run_train(load_config(None, {"resume": str(models / "model.pt"), "steps_separate": 2}))
    assert (tmp_path / "elsewhere" / "config.toml").read_text() == "# someone's own file\n"


def test_metrics_csv_holds_each_step_once_after_resume_and_rerun(demo_dir: Path, tmp_path: Path) -> None:
    import csv

    cfg = _tiny_run(tmp_path, "m", steps_separate=4, stage="separate", log_every=1, checkpoint_every=2)
    run_train(dataclasses.replace(cfg, steps_separate=3))  # checkpoint at 2 and at the end (3)
    state = load_checkpoint(tmp_path / "m" / "checkpoints" / "last.pt")
    state["step"] = state["stage_step"] = 2  # as if killed after the step-2 checkpoint, with rows up to 3 logged
    save_checkpoint(state, tmp_path / "m" / "checkpoints" / "last.pt")
    run_train(dataclasses.replace(cfg, resume=str(tmp_path / "m")))
    with open(tmp_path / "m" / "metrics.csv", newline="") as handle:
        rows = [(r["step"], r["name"]) for r in csv.DictReader(handle)]
    assert len(rows) == len(set(rows)) and {int(s) for s, n in rows if n == "loss"} == {1, 2, 3, 4}
    fresh = _tiny_run(tmp_path, "k", steps_separate=2, stage="separate", log_every=1, checkpoint_every=0)
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "metrics.csv").write_text("step,stage,name,value\n1,separate,loss,9\n")  # killed early
    run_train(fresh)
    with open(tmp_path / "k" / "metrics.csv", newline="") as handle:
        losses = [r for r in csv.DictReader(handle) if r["name"] == "loss"]
    assert [r["step"] for r in losses] == ["1", "2"] and losses[0]["value"] != "9"


def test_a_run_resumed_into_a_new_folder_keeps_its_whole_curve(demo_dir: Path, tmp_path: Path) -> None:
    """Resuming a zoo-style resume.pt (beside its metrics.csv) into a new --out continues the curve from step 1."""
    import csv

    cfg = _tiny_run(tmp_path, "first", steps_separate=4, stage="separate", log_every=1, checkpoint_every=0)
    run_train(dataclasses.replace(cfg, steps_separate=2))
    entry = tmp_path / "entry"  # as `zoo publish --unfinished` leaves it
    entry.mkdir()
    (entry / "resume.pt").write_bytes((tmp_path / "first" / "checkpoints" / "last.pt").read_bytes())
    rows = (tmp_path / "first" / "metrics.csv").read_text().splitlines()
    (entry / "metrics.csv").write_text("\n".join([*rows, "3,separate,loss,9"]) + "\n")  # a row past the checkpoint
    run_train(load_config(None, {"resume": str(entry / "resume.pt"), "out": str(tmp_path / "second"),
                                 "steps_separate": 4}))
    with open(tmp_path / "second" / "metrics.csv", newline="") as handle:
        losses = [r for r in csv.DictReader(handle) if r["name"] == "loss"]
    assert [r["step"] for r in losses] == ["1", "2", "3", "4"] and losses[2]["value"] != "9"


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_resumes(demo_dir: Path, data_root: Path,
                                                                    tmp_path: Path) -> None:
    """`blindbench train` stopped by SIGTERM (a session ending, a preempted job) saves where it is, says how to go
    on and exits 143; the resumed run finishes the plan."""
    import signal
    import subprocess
    import sys
    import time

    from helpers import REPO, launch_env

    run = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "blindbench.cli", "train", "--model", "vcn", "--preset", "tiny",
           "--set", "photos-demo", "--source", "shards", "--stage", "separate", "--steps-separate", "100000",
           "--batch-separate", "2",
           "--image-size", "32", "--device", "cpu", "--workers", "0", "--val-set", "", "--no-perceptual",
           "--sample-every", "0", "--checkpoint-every", "0", "--log-every", "1", "--no-progress", "--out", str(run)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=launch_env(data_root), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    metrics = run / "metrics.csv"
    while not (metrics.is_file() and metrics.read_text().count(",loss,") >= 3):  # a few steps done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert f"stopped by SIGTERM at step {step} of 100000, checkpoint saved" in output
    assert f"blindbench train --resume {run}" in output
    logged = [int(line.split(",")[0]) for line in metrics.read_text().splitlines() if ",loss," in line]
    assert logged == list(range(1, step + 1))  # every step up to the checkpoint logged once, none after
    run_train(load_config(None, {"resume": str(run), "steps_separate": step + 2}))
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == step + 2


def test_runs_without_a_finite_step_fail_and_never_save_broken_weights(demo_dir: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(train, "reconstruction_losses", lambda *a, **k: {"l1": torch.tensor(float("nan"))})
        with pytest.raises(BlindbenchError, match="no finite training step in 2"):
            run_train(_tiny_run(tmp_path, "n", steps_separate=2, stage="separate", max_bad_steps=5))
    assert not (tmp_path / "n" / "checkpoints" / "last.pt").exists()
    cfg = _tiny_run(tmp_path, "i", steps_separate=2, stage="separate")
    trainer = Trainer(cfg, setup_runtime(cfg), tmp_path / "i")
    with torch.no_grad():
        next(trainer.raw_model.parameters()).view(-1)[0] = float("inf")  # a finite loss can still do this
    with pytest.raises(BlindbenchError, match="not saved, the model: 1 weight tensor.* hold NaN or inf"):
        trainer.save("separate", 1)
    assert not (tmp_path / "i" / "checkpoints" / "last.pt").exists()


def test_damaged_or_non_finite_checkpoints_are_refused(demo_dir: Path, tmp_path: Path) -> None:
    run = run_train(_tiny_run(tmp_path, "d", steps_separate=1, stage="separate"))
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and v.numel() > 8)
    flipped = {**state, "model": {**state["model"], name: state["model"][name].clone()}}
    flipped["model"][name].view(-1)[:8] += 0.5  # a few changed weights, the zip container intact
    save_checkpoint(flipped, tmp_path / "flipped.pt")
    with pytest.raises(BlindbenchError, match="do not match their recorded sha256"):
        load_model_from_checkpoint(tmp_path / "flipped.pt")
    nan = {**state, "model": {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                              for k, v in state["model"].items()}}
    nan.pop("model_sha256")
    save_checkpoint(nan, tmp_path / "nan.pt")
    with pytest.raises(BlindbenchError, match="hold NaN or inf"):
        load_model_from_checkpoint(tmp_path / "nan.pt")
    assert state["sessions"][0]["steps"] == [0, 1] and state["sessions"][0]["seconds"] > 0


def test_time_budget_stops_with_a_checkpoint_and_init_starts_from_weights(demo_dir: Path, tmp_path: Path) -> None:
    from blindbench.zoo import export_weights

    budget = run_train(_tiny_run(tmp_path, "t", stage="separate", steps_separate=10_000, max_minutes=0.002,
                                 checkpoint_every=0))  # fmt: skip
    state = load_checkpoint(budget / "checkpoints" / "last.pt")
    assert 1 <= state["step"] < 10_000 and state["sessions"][0]["seconds"] >= 0.12
    export_weights(budget, tmp_path / "w.pt")
    for source in (budget, tmp_path / "w.pt"):  # a run folder, or a weights-only file (fp16)
        cfg = _tiny_run(tmp_path, f"j{len(str(source))}", stage="joint", steps_joint=1, init=str(source))
        trainer = Trainer(cfg, setup_runtime(cfg), tmp_path / "x")
        for name, value in state["model"].items():
            expected = value.half().float() if source != budget and value.is_floating_point() else value
            assert torch.equal(trainer.raw_model.state_dict()[name], expected)
    with pytest.raises(BlindbenchError, match=r"are vcn \(tiny\), not gc \(tiny\)"):
        Trainer(_tiny_run(tmp_path, "g", model="gc", init=str(budget)), setup_runtime(cfg), tmp_path / "g")
    with pytest.raises(ConfigError, match="not both"):
        _tiny_run(tmp_path, "b", init=str(budget), resume=str(budget))


def _data_root_with(monkeypatch, root: Path, session_root: Path, *, sets: bool, corpus: bool) -> None:
    """Point BLINDBENCH_DATA at ``root``, holding a copy of the session's photos-demo shards and/or a link to its
    corpus."""
    import shutil

    root.mkdir()
    if sets:
        shutil.copytree(session_root / "sets" / "photos-demo", root / "sets" / "photos-demo")
    if corpus:
        (root / "corpora").mkdir()
        (root / "corpora" / "photos").symlink_to(session_root / "corpora" / "photos")
    monkeypatch.setenv("BLINDBENCH_DATA", str(root))


def test_a_corrupt_shard_read_by_a_loader_worker_is_one_line(demo_dir: Path, data_root: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    _data_root_with(monkeypatch, tmp_path / "data", data_root, sets=True, corpus=True)
    for shard in sorted((tmp_path / "data" / "sets" / "photos-demo").glob("*.tar")):
        with shard.open("r+b") as handle:
            handle.truncate(700)
    with pytest.raises(BlindbenchError) as info:
        run_train(tiny_config(tmp_path / "run", workers=1, stage="separate", steps_separate=2))
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message and "worker" not in message
    assert "photos-demo" in message and ".tar" in message


def test_the_stream_builds_an_unbuilt_corpus_before_its_workers_start(demo_dir: Path, data_root: Path,
                                                                        tmp_path: Path, monkeypatch, capsys) -> None:
    from blindbench import shards

    _data_root_with(monkeypatch, tmp_path / "data", data_root, sets=False, corpus=False)
    built = []

    def link_session_corpus(**kwargs) -> dict:  # building it for real takes a while; the session's is the same
        built.append(kwargs)
        (tmp_path / "data" / "corpora").mkdir()
        (tmp_path / "data" / "corpora" / "photos").symlink_to(data_root / "corpora" / "photos")
        return {}

    monkeypatch.setattr(shards, "build_embedded_corpus", link_session_corpus)
    run_dir = run_train(tiny_config(tmp_path / "run", source="stream", set="photos-train", workers=1,
                                    stage="separate", steps_separate=1))
    assert len(built) == 1 and (run_dir / "checkpoints" / "last.pt").is_file()
    assert "building its corpus 'photos' first" in capsys.readouterr().err


def test_a_missing_validation_set_is_generated_before_the_first_step(demo_dir: Path, data_root: Path,
                                                                     tmp_path: Path, monkeypatch, capsys) -> None:
    _data_root_with(monkeypatch, tmp_path / "data", data_root, sets=True, corpus=True)
    cfg = tiny_config(tmp_path / "run", val_set="photos-val", val_every=500)
    calls = []

    def stop_here(*args) -> None:
        calls.append(args)
        raise KeyboardInterrupt  # the trainer must prepare it while it is being built

    monkeypatch.setattr(train, "prepare_val_set", stop_here)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, setup_runtime(cfg), tmp_path / "run")
    assert len(calls) == 1
    monkeypatch.undo()
    _data_root_with(monkeypatch, tmp_path / "data2", data_root, sets=False, corpus=True)
    train.prepare_val_set(cfg, setup_runtime(cfg))
    assert "validation set photos-val: generating its shards first" in capsys.readouterr().err
    assert len(list((tmp_path / "data2" / "sets" / "photos-val").glob("*.tar"))) == 3
    train.prepare_val_set(cfg, setup_runtime(cfg))  # there now: nothing to say
    assert "generating" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------ joint step: syncs and speed


def _joint_trainer(tmp_path: Path, sync_free: bool = False, **overrides) -> tuple[Trainer, dict, list[dict]]:
    cfg = tiny_config(tmp_path / "run", **{"stage": "joint", "critic_steps": 3, **overrides})
    trainer = Trainer(cfg, setup_runtime(cfg), tmp_path / "run")
    trainer.sync_free = sync_free  # the device-side guard (what a GPU run uses), here on the CPU
    trainer._make_optimizers("joint")
    data = train.BatchSource(cfg, 2, trainer.runtime).batches()
    return trainer, next(data), [next(data) for _ in range(cfg.critic_steps)]


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_a_step_reads_the_device_once_and_logs_are_read_on_log_steps(demo_dir: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    """nanoGPT's habit: the losses stay tensors; one host read per step (the NaN verdict), one more to log. On
    the CPU (no queue to drain) each critic update reads its own flag."""
    import inspect

    trainer, batch, extras = _joint_trainer(tmp_path, sync_free=True)
    reads: list[str] = []
    repo = str(Path(train.__file__).resolve().parent.parent)
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            caller = inspect.stack(0)[1].filename
            if caller.startswith(repo) and "/.venv/" not in caller and "/tests/" not in caller:
                reads.append(f"{_name} in {Path(caller).name}")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    logs, _ = trainer.train_step("joint", batch, extras)
    assert reads == ["tolist in train.py"]  # 3 critic updates, 6 loss terms: still one read
    assert {"critic", "gp", "bce", "l1", "adv", "loss"} <= set(logs)
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in logs.values())
    reads.clear()
    values = train.scalars(logs)
    assert reads == ["tolist in train.py"] and all(isinstance(v, float) for v in values.values())
    assert values["loss"] == float(logs["loss"])
    reads.clear()
    logs, _ = trainer.train_step("separate", batch)
    assert reads == ["tolist in train.py"]
    reads.clear()
    trainer.sync_free = False
    trainer.train_step("joint", batch, extras)
    assert reads == ["__bool__ in train.py"] * 3 + ["tolist in train.py"]


@pytest.mark.parametrize("sync_free", [False, True])
def test_a_non_finite_critic_loss_undoes_that_update_and_the_later_ones(sync_free: bool, demo_dir: Path,
                                                                       tmp_path: Path, monkeypatch) -> None:
    """Both guards keep the old semantics: updates before the first non-finite critic loss stay, that one and the
    rest leave no trace (weights, Adam moments and step counters), the generator waits."""
    from vcn import losses

    trainer, batch, extras = _joint_trainer(tmp_path, sync_free)
    reference, _, _ = _joint_trainer(tmp_path / "ref", critic_steps=1)  # the same start: one critic update only
    reference.train_step("joint", batch, extras[:1])
    model = _state(trainer.raw_model)
    real = losses.critic_objective
    calls = {"n": 0}

    def nan_at_second(*args, **kwargs):
        calls["n"] += 1
        d_loss, gp = real(*args, **kwargs)
        return (d_loss * float("nan"), gp) if calls["n"] == 2 else (d_loss, gp)

    monkeypatch.setattr(losses, "critic_objective", nan_at_second)
    logs, _ = trainer.train_step("joint", batch, extras)
    assert logs == {"skipped": 1.0} and calls["n"] == 3 and trainer.bad_in_row == 1
    assert all(torch.equal(v, trainer.raw_model.state_dict()[k]) for k, v in model.items())
    for name in ("global", "patch"):
        kept, want = trainer.critics.modules()[name].state_dict(), reference.critics.modules()[name].state_dict()
        assert all(torch.equal(kept[k], want[k]) for k in want), name
    opt = trainer.optimizers["critic"]
    assert all(float(s["step"]) == 1.0 for s in opt.state.values()) and len(opt.state) == len(
        reference.optimizers["critic"].state)
    for p, q in zip(opt.param_groups[0]["params"], reference.optimizers["critic"].param_groups[0]["params"],
                    strict=True):
        assert torch.equal(opt.state[p]["exp_avg_sq"], reference.optimizers["critic"].state[q]["exp_avg_sq"])
    monkeypatch.undo()
    trainer2, batch, extras = _joint_trainer(tmp_path / "nan", sync_free)
    batch = {**batch, "target": batch["target"].clone()}
    batch["target"][0, 0, 0, 0] = float("nan")  # the reconstruction loss: no critic update at all, no state left
    before = _state(trainer2.critics.patch_critic)
    assert trainer2.train_step("joint", batch, extras)[0] == {"skipped": 1.0}
    assert not trainer2.optimizers["critic"].state
    assert all(torch.equal(v, trainer2.critics.patch_critic.state_dict()[k]) for k, v in before.items())


def _reference_joint_step(trainer: Trainer, batch: dict, extras: list[dict]) -> None:
    """The joint step as the official trainer writes it: per critic update a fresh generator pass, the critics on
    fake and on real separately, both penalties, an Adam step; then the generator step."""
    from vcn import losses
    from vcn.critics import critic_view

    cfg, g, p = trainer.cfg, trainer.critic_global, trainer.critic_patch
    out = trainer.model(batch["input"])
    rec = train.weighted_sum(cfg, train.reconstruction_losses(cfg, None, out, batch, True))
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + trainer.step)
    for extra in extras:
        with torch.no_grad():
            o = trainer.model(extra["input"])
            fake = critic_view(extra["input"], o.image, o.mask_logits)
        d_fake, d_real = g(fake) + p(fake, extra["mask"]), g(extra["target"]) + p(extra["target"], extra["mask"])
        gp = losses.wgan_gp_penalty(g, extra["target"], fake, cfg.lambda_gp, mask=extra["mask"], generator=gen)
        gp = gp + losses.wgan_gp_penalty(lambda x, m=extra["mask"]: p(x, m), extra["target"], fake, cfg.lambda_gp,
                                         mask=extra["mask"], generator=gen)
        trainer.optimizers["critic"].zero_grad(set_to_none=True)
        (losses.critic_loss(d_real.float(), d_fake.float()) + gp.float()).backward()  # as the loop casts
        trainer.optimizers["critic"].step()
    fake = critic_view(batch["input"], out.image, out.mask_logits)
    for m in (g, p):
        m.requires_grad_(False)
    adv = losses.generator_adv_loss((g(fake) + p(fake, batch["mask"])).float())
    for m in (g, p):
        m.requires_grad_(True)
    trainer.optimizers["generator"].zero_grad(set_to_none=True)
    (rec + cfg.lambda_adv * adv).backward()
    trainer.optimizers["generator"].step()


@pytest.mark.parametrize("sync_free", [False, True])
def test_the_faster_joint_step_trains_as_the_official_one(sync_free: bool, demo_dir: Path, tmp_path: Path) -> None:
    """One batched generator pass for the fresh critic batches, one critic pass over [fake; real], either guard:
    in float64 the weights after two steps equal the plain official step's to 1e-9."""
    ours, batch, extras = _joint_trainer(tmp_path / "a", sync_free)
    plain, _, _ = _joint_trainer(tmp_path / "b")
    to64 = lambda b: {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in b.items()}  # noqa: E731
    batch, extras = to64(batch), [to64(e) for e in extras]
    for t in (ours, plain):
        t.raw_model.double()
        for m in t.critics.modules().values():
            m.double()
        t._make_optimizers("joint")
    initial = _state(ours.raw_model)
    for _ in range(2):
        assert "skipped" not in ours.train_step("joint", batch, extras)[0]
        ours.step += 1
        _reference_joint_step(plain, batch, extras)
        plain.step += 1
    assert any(not torch.equal(v, ours.raw_model.state_dict()[k]) for k, v in initial.items() if v.is_floating_point())
    for a, b in ((ours.raw_model, plain.raw_model), (ours.critic_global, plain.critic_global),
                 (ours.critic_patch, plain.critic_patch)):
        sa, sb = a.state_dict(), b.state_dict()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-9, atol=1e-12, msg=k)


def test_critic_objective_batched_equals_two_passes() -> None:
    from vcn import losses
    from vcn.critics import GlobalCritic, PatchCritic

    torch.manual_seed(0)
    g, p = GlobalCritic(4, 64).double(), PatchCritic(4).double()
    real, fake = torch.rand(3, 3, 64, 64, dtype=torch.float64) * 2 - 1, torch.rand(3, 3, 64, 64, dtype=torch.float64)
    mask = (torch.rand(3, 1, 64, 64) > 0.7).double()
    results = []
    for batched in (True, False):
        d_loss, gp = losses.critic_objective(g, p, real, fake, mask, 10.0, torch.Generator().manual_seed(1),
                                             batched=batched)
        grads = torch.autograd.grad(d_loss, [*g.parameters(), *p.parameters()])
        results.append((d_loss, gp, grads))
    (d1, gp1, g1), (d2, gp2, g2) = results
    assert d1.dtype == torch.float32 and d1.ndim == 0 and float(gp1.detach()) > 0
    torch.testing.assert_close(d1, d2, rtol=1e-6, atol=1e-7)
    assert torch.equal(gp1, gp2)  # the same draws in the same order
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_tensorboard_gets_sample_grids_and_hparams(demo_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """With a SummaryWriter (a recording stand-in: tensorboard is not a dependency): scalars, each sample grid as
    an image, and the resolved config with the run's last values as hparams, written once at the end."""
    import sys
    import types

    calls: list[tuple] = []

    class Writer:
        def __init__(self, logdir: str) -> None:
            calls.append(("init", logdir))

        def add_scalar(self, tag, value, step) -> None:
            calls.append(("scalar", tag, value, step))

        def add_image(self, tag, image, step, dataformats="CHW") -> None:
            calls.append(("image", tag, image, step, dataformats))

        def add_hparams(self, hparams, metrics, run_name=None) -> None:
            calls.append(("hparams", hparams, metrics, run_name))

        def close(self) -> None:
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    run_dir = run_train(tiny_config(tmp_path / "run", tensorboard=True, sample_every=2, steps_separate=1,
                                    steps_joint=2))
    assert calls[0] == ("init", str(run_dir / "tb")) and calls[-1] == ("close",)
    images = [c for c in calls if c[0] == "image"]
    assert [(c[1], c[3], c[4]) for c in images] == [("joint/samples", 2, "HWC")]
    grid = images[0][2]
    assert grid.dtype == np.uint8 and grid.shape == (2 * 32, 4 * 32, 3)  # 2 samples of input | mask | output | target
    png = next((run_dir / "samples").glob("joint-*.png"))
    from blindbench.imageio import read_image

    assert np.array_equal(read_image(png), grid)
    (hp,) = [c for c in calls if c[0] == "hparams"]
    assert hp[1]["model"] == "vcn" and hp[1]["critic_steps"] == 1 and hp[3] == "."
    last_loss = [c for c in calls if c[0] == "scalar" and c[1] == "joint/loss"][-1][2]
    assert hp[2]["hparam/joint/loss"] == last_loss and "hparam/separate/l1" in hp[2]


def test_cpu_training_stays_off_channels_last_without_avx512(monkeypatch) -> None:
    # oneDNN 6035: AVX2 channels-last 1x1 stride-2 weight gradients corrupt memory (hangs, wrong gradients)
    import torch._inductor.config as inductor_config

    from blindbench.train import Runtime, check_cpu_layout

    cpu = Runtime(torch.device("cpu"))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with pytest.raises(ConfigError, match="channels_last training on this CPU.*oneDNN"):
        check_cpu_layout(TrainConfig(channels_last=True), cpu)
    monkeypatch.setattr(inductor_config, "layout_optimization", True)
    check_cpu_layout(TrainConfig(compile=True), cpu)
    assert inductor_config.layout_optimization is False
    monkeypatch.setattr(inductor_config, "layout_optimization", True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    check_cpu_layout(TrainConfig(channels_last=True, compile=True), cpu)  # not affected: left as asked
    assert inductor_config.layout_optimization is True


def test_lr_decay_falls_linearly_over_the_end_of_each_stage(demo_dir: Path, tmp_path: Path) -> None:
    assert [train.decayed_lr(1.0, i, 8, 0.5) for i in range(8)] == [1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2]
    assert [train.decayed_lr(1.0, i, 4, 0.0) for i in range(4)] == [1.0] * 4
    run = run_train(tiny_config(tmp_path / "decay", steps_separate=4, steps_joint=2, lr_separate=1e-3,
                                lr_joint=1e-4, lr_decay=0.5))
    rows = csv.DictReader((run / "metrics.csv").read_text().splitlines())
    lrs = {int(row["step"]): float(row["value"]) for row in rows if row["name"] == "lr"}
    assert lrs == pytest.approx({1: 1e-3, 2: 1e-3, 3: 2e-3 / 3, 4: 1e-3 / 3, 5: 1e-4, 6: 5e-5})
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert all(g["lr"] == pytest.approx(5e-5) for o in state["optimizers"].values() for g in o["param_groups"])
    with pytest.raises(ConfigError, match="lr_decay is a fraction"):
        tiny_config(tmp_path / "bad", lr_decay=1.5)
    with pytest.raises(ConfigError, match="cannot change lr_decay"):
        load_config(None, {"resume": str(run), "lr_decay": 0.25})


def test_resume_with_lr_decay_is_bit_exact(demo_dir: Path, tmp_path: Path) -> None:
    common = dict(stage="separate", lr_decay=0.5)
    full = run_train(tiny_config(tmp_path / "full", steps_separate=4, **common))
    half = run_train(tiny_config(tmp_path / "half", steps_separate=4, max_minutes=1e-9, **common))
    assert load_checkpoint(half)["step"] == 1  # the budget stops it after its first step
    resumed = run_train(tiny_config(tmp_path / "half", steps_separate=4, resume=str(tmp_path / "half"), **common))
    a, b = load_checkpoint(full)["model"], load_checkpoint(resumed)["model"]
    assert load_checkpoint(resumed)["step"] == 4
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_flip_changes_what_the_model_sees_and_is_fixed_for_a_run(demo_dir: Path, tmp_path: Path) -> None:
    common = dict(stage="separate", steps_separate=2, crop_size=32, image_size=0)
    plain = run_train(tiny_config(tmp_path / "plain", **common))
    flipped = run_train(tiny_config(tmp_path / "flip", flip=True, **common))
    again = run_train(tiny_config(tmp_path / "again", flip=True, **common))
    a, b, c = (load_checkpoint(run)["model"] for run in (plain, flipped, again))
    assert not all(torch.equal(a[k], b[k]) for k in a) and all(torch.equal(b[k], c[k]) for k in b)
    assert load_checkpoint(flipped)["config"]["flip"] is True
    with pytest.raises(ConfigError, match="cannot change flip"):
        load_config(None, {"resume": str(plain), "flip": True})
    assert train.LEGACY_DEFAULTS["flip"] is False  # runs saved before the option trained without flips


def test_a_resume_before_the_joint_stage_may_change_its_options_and_equals_a_run_configured_so(
        demo_dir: Path, tmp_path: Path) -> None:
    joint = dict(lambda_composite=1.4, critic_steps=2, lr_joint=3e-4)
    straight = run_train(tiny_config(tmp_path / "straight", steps_separate=2, steps_joint=2, **joint))
    first = run_train(tiny_config(tmp_path / "branch", steps_separate=2, steps_joint=0))
    assert load_checkpoint(first)["stage"] == "separate"
    cfg = load_config(None, {"resume": str(first), "steps_joint": 2, **joint})
    assert (cfg.lambda_composite, cfg.critic_steps, cfg.lr_joint) == (1.4, 2, 3e-4)
    branched = run_train(cfg)
    a, b = load_checkpoint(straight)["model"], load_checkpoint(branched)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="cannot change lambda_composite"):  # once in the joint stage: refused
        load_config(None, {"resume": str(branched), "steps_joint": 3, "lambda_composite": 0.0})
    with pytest.raises(ConfigError, match="cannot change lr_separate"):  # stage-1 options: always refused
        load_config(None, {"resume": str(tmp_path / "straight"), "lr_separate": 1e-4})

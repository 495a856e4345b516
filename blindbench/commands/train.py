"""``blindbench train``: its config and the config's checks (torch imported only by :mod:`blindbench.train`)."""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass

from blindbench.errors import ConfigError
from blindbench.options import device_option, preset_option, progress_option
from blindbench.options import option as _option

STAGES = ("separate", "joint", "all")
SOURCES = ("shards", "stream")


@dataclass(frozen=True)
class TrainConfig:
    """Train a registered model (paper schedule: stage 1 separate, then joint with WGAN-GP)."""

    model: str = _option("vcn", "registered model name")
    preset: str = preset_option()
    set: str = _option("photos-train", "training set name or manifest path")
    source: str = _option("stream", "stream (corrupt on the fly, fresh each epoch) or shards", choices=SOURCES)
    stage: str = _option("all", "separate, joint, or all (separate then joint)", choices=STAGES)
    steps_separate: int = _option(160_000, "stage-1 iterations")
    steps_joint: int = _option(160_000, "stage-2 iterations")
    batch_separate: int = _option(12, "stage-1 batch size (per process)")
    batch_joint: int = _option(4, "stage-2 batch size (per process)")
    lr_separate: float = _option(0.0, "stage-1 Adam learning rate (0: the preset's, paper 1e-4, tiny 1e-3; "
                                                "tiny gmc 3e-4)")
    lr_joint: float = _option(0.0, "stage-2 Adam learning rate, generator and critics (0: paper 1e-5, tiny 1e-4)")
    lr_decay: float = _option(0.0, "fraction of each stage's steps, at its end, over which the learning rates fall "
                              "linearly towards 0 (0: constant, as the paper)")
    beta1: float = _option(0.5, "Adam β1")
    beta2: float = _option(0.9, "Adam β2")
    lambda_mask: float = _option(2.0, "λ_m, weight of the mask BCE")
    lambda_l1: float = _option(1.4, "weight of the L1 reconstruction term")
    lambda_semantic: float = _option(1e-4, "weight of the VGG19 relu3_2 semantic term")
    lambda_mrf: float = _option(1e-3, "weight of the ID-MRF term (joint stage)")
    lambda_adv: float = _option(1e-3, "weight of the WGAN generator term (joint stage)")
    lambda_composite: float = _option(0.0, "weight of the L1 of the composite Ô ⊙ M̂ + I ⊙ (1 − M̂) against O (joint "
                                      "stage; 0: off, as the paper): trains M̂ for the image eval scores")
    lambda_composite_ssim: float = _option(0.0, "weight of 1 − SSIM of the composite against O (joint stage; 0: off, "
                                           "as the paper): trains M̂ and Ô for the composite's eval SSIM")
    lambda_gp: float = _option(10.0, "WGAN-GP gradient-penalty weight")
    critic_steps: int = _option(5, "critic updates per generator step (joint stage)")
    critic_batches: str = _option("fresh", "fresh: each critic update draws its own batch and generator output "
                                  "(official); shared: all reuse the generator step's", choices=("fresh", "shared"))
    critic_input: str = _option("composite", "composite: critics judge Ô ⊙ M̃̂ + I ⊙ (1 − M̃̂) (official); raw: Ô",
                                choices=("composite", "raw"))
    mpn_separate: str = _option("bce", "what trains the MPN in the separate stage: bce (its mask loss only, as "
                                "the paper says; fused features detached) or all (the RIN's losses too, through "
                                "the fused features, as the official TF code)", choices=("bce", "all"))
    critic_width: int = _option(0, "critic base width (0: 64 for the paper preset, 8 for tiny)")
    perceptual: bool = _option(True, "semantic and ID-MRF terms (need VGG19 weights); False turns them off")
    vgg19: str = _option("", "torchvision vgg19 .pth file (default: $BLINDBENCH_VGG19)")
    image_size: int = _option(0, "resize batches to this side (0: the set's size); area for images")
    crop_size: int = _option(-1, "random square crop of this side after any resize, keeping the strokes' scale (0: "
                             "none; -1: the preset's, paper none, tiny 128 where the images are larger)")
    flip: bool = _option(False, "random horizontal flip of each training sample (p = 1/2, input, target and "
                         "masks together), drawn with its crop")
    device: str = device_option()
    amp: bool = _option(True, "mixed precision on CUDA (bf16, fp16 + GradScaler where bf16 is missing)")
    channels_last: bool = _option(False, "channels-last memory format")
    compile: bool = _option(False, "torch.compile the model")
    workers: int = _option(min(4, os.cpu_count() or 1), "DataLoader worker processes (0: load in the main process)")
    shuffle_buffer: int = _option(256, "sample shuffle buffer for the shards source")
    seed: int = _option(0, "seed of weights, data order and the gradient-penalty draws")
    val_set: str = _option("photos-val", "validation set (generated shards; not a benchmark set); empty: none")
    val_every: int = _option(5000, "validate every N steps (0: never)")
    val_batch: int = _option(8, "validation batch size")
    val_batches: int = _option(0, "validate on the first N batches of val_batch (0: the whole validation set)")
    log_every: int = _option(50, "write scalars every N steps")
    sample_every: int = _option(1000, "save a sample grid PNG every N steps (0: never)")
    checkpoint_every: int = _option(1000, "save checkpoints/last.pt every N steps (and at stage ends)")
    tensorboard: bool = _option(True, "also write TensorBoard scalars when tensorboard is installed")
    progress: bool = progress_option("show a tqdm progress bar")
    max_bad_steps: int = _option(20, "stop after more than N non-finite losses in a row")
    out: str = _option("", "run folder (default <data>/runs/<model>-<stage>)")
    resume: str = _option("", "checkpoint or run folder to continue from")
    init: str = _option("", "start from these model weights (checkpoint, run folder or zoo weights.pt) with new "
                        "optimisers: fine-tuning, or a joint stage after a separate run")
    max_minutes: float = _option(0.0, "stop after this many minutes of training steps, with a checkpoint (0: no "
                                 "limit); a resume continues the plan")

    def __post_init__(self) -> None:
        if self.crop_size == -1:  # resolved first: the checks see a side
            object.__setattr__(self, "crop_size", _preset_crop(self))
        _validate(self)
        from blindbench.models import preset_training

        defaults = preset_training(self.model, self.preset)
        for name in ("lr_separate", "lr_joint"):  # 0 means "the preset's default"; the resolved value is saved
            if getattr(self, name) == 0:
                object.__setattr__(self, name, getattr(defaults, name))

    def plan(self) -> list[tuple[str, int]]:
        """The stages to run with their step counts."""
        if self.stage == "separate":
            return [("separate", self.steps_separate)]
        if self.stage == "joint":
            return [("joint", self.steps_joint)]
        return [("separate", self.steps_separate), ("joint", self.steps_joint)]

    @property
    def total_steps(self) -> int:
        return sum(n for _, n in self.plan())


def _preset_crop(cfg: TrainConfig) -> int:
    """The preset's crop side where the training images are larger than it, else 0 (whole images)."""
    from blindbench.errors import BlindbenchError
    from blindbench.models import preset_training

    preset = preset_training(str(cfg.model), cfg.preset) if isinstance(cfg.preset, str) else None
    if preset is None or not preset.crop or not isinstance(cfg.image_size, int) or not isinstance(cfg.set, str):
        return 0  # bad options are reported by the checks
    side = cfg.image_size
    if not side:
        from blindbench.sets import load_set

        try:
            side = load_set(cfg.set).size
        except BlindbenchError:
            return 0  # a bad set name is reported, once, where the trainer opens it
    return preset.crop if preset.crop < side else 0


# Upper bounds far beyond any real run, so that a typo is a one-line error rather than an out-of-memory crash.
TRAIN_LIMITS = {
    "steps_separate": 10**9, "steps_joint": 10**9, "batch_separate": 4096, "batch_joint": 4096, "val_batch": 4096,
    "val_batches": 10**6, "image_size": 4096, "crop_size": 4096, "critic_steps": 100, "critic_width": 1024,
    "workers": 256, "shuffle_buffer": 10**6, "val_every": 10**9, "log_every": 10**9, "sample_every": 10**9,
    "checkpoint_every": 10**9, "max_bad_steps": 10**6, "max_minutes": 10**7,
}  # fmt: skip


def _validate(cfg: TrainConfig) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        kind = hints[f.name]
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, int | float) and not isinstance(value, bool) if kind is float
            else isinstance(value, kind) and not isinstance(value, bool) if kind is int
            else isinstance(value, kind)
        )
        if not ok:
            raise ConfigError(f"train option {f.name}: expected {kind.__name__}, got {value!r}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"train option {f.name}: {value!r} is not one of {', '.join(choices)}")
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"train option {f.name} must be a finite number, got {value!r}")
        if f.name == "seed" and not 0 <= value < 2**31:
            raise ConfigError(f"train option seed must be in [0, 2**31), got {value!r}")
        if kind in (int, float) and f.name != "seed" and value < 0:
            raise ConfigError(f"train option {f.name} must be >= 0, got {value!r}")
    for name, top in TRAIN_LIMITS.items():
        if getattr(cfg, name) > top:
            raise ConfigError(f"train option {name} must be <= {top}, got {getattr(cfg, name)}")
    for name in ("batch_separate", "batch_joint", "val_batch"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"train option {name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.lr_decay > 1.0:
        raise ConfigError(f"train option lr_decay is a fraction of each stage's steps, in [0, 1], got {cfg.lr_decay}")
    if not (0.0 <= cfg.beta1 < 1.0 and 0.0 <= cfg.beta2 < 1.0):
        raise ConfigError(f"Adam betas must lie in [0, 1), got ({cfg.beta1}, {cfg.beta2})")
    if cfg.init and cfg.resume:
        raise ConfigError("give init (new run from weights) or resume (continue a run), not both")
    for name in ("image_size", "crop_size"):
        if (side := getattr(cfg, name)) % 32:
            raise ConfigError(f"train option {name} must be a multiple of 32 (the patch critic), got {side}")
    from blindbench.models import get_entry

    get_entry(cfg.model)  # unknown model: one line with a "did you mean"


def run_train(path: str | None, overrides: dict[str, typing.Any]) -> None:
    """``blindbench train``: defaults, then the ``--config`` file, then the flags given (``train.load_config``)."""
    from blindbench.train import load_config, run_train

    run_dir = run_train(load_config(path, overrides))
    print(f"run finished: {run_dir}")

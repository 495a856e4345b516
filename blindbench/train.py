"""Training: stage 1 (MPN on BCE, inpainting net fed the ground-truth mask), stage 2 (joint, WGAN-GP), or both.

Losses (SPEC §4–5), always a *sum*, images in [-1, 1]:

- ``separate``: ``λ_m·BCE(F(I), M) + λ_l1·L1(G(I|M), O) + λ_sem·semantic``. The MPN and the inpainting net are
  trained "separately" in the sense of the paper: the inpainting net sees the ground-truth mask, so the image
  losses do not reach the MPN's mask output; both parts share one Adam step for simplicity. Where a model fuses
  MPN features into the RIN (VCN), ``mpn_separate = "bce"`` (default; the paper's "MPN on BCE only", the PyTorch
  reproductions) detaches them, so the MPN learns from its BCE alone; ``"all"`` lets the image losses reach it
  through them, as the official TF code does.
- ``joint``: ``λ_m·BCE(F(I), M) + λ_l1·L1 + λ_sem·semantic + λ_mrf·ID-MRF + λ_adv·(−D(Ô))`` with Ô = G(I|M̂),
  M̂ not detached, so the image losses train the MPN too; ``lambda_composite`` (default 0, not in the paper)
  adds the L1 of the composite ``Ô ⊙ M̂ + I ⊙ (1 − M̂)``, which trains M̂ for the composite's scores, and
  ``lambda_composite_ssim`` (default 0, not in the paper) its ``1 − SSIM`` (:func:`vcn.losses.ssim_loss`).
  Each generator step first makes ``critic_steps`` updates of a global and a patch WGAN-GP critic, as the
  official trainer does: each update on a fresh batch and
  a fresh (no-grad) generator output (``critic_batches = "shared"`` reuses the step's batch instead), the critics
  judging the composite ``Ô ⊙ M̃̂ + I ⊙ (1 − M̃̂)`` with M̃̂ the smoothed M̂ (``critic_input = "raw"``: Ô), and
  both gradient penalties restricted to the damaged region (official ``gradients_penalty(x, y, mask)``).
  Computed with less work, same values (tested against the plain official step): the fresh batches go through
  the generator in one no-grad pass (the critic updates do not change it), real and fake through each critic as
  one batch; the losses stay on the device and reach the host on log steps only, and on an accelerator a step
  reads the host once, for its NaN verdict.

A generator step consumes a fixed number of batches (1, or 1 + ``critic_steps`` with fresh critic batches), so
the data position of a stage follows from its step count: resuming rebuilds the loader for the stored epoch and
skips the batches already used, which makes a resumed CPU run bit-for-bit equal to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import signal
import sys
import time
import tomllib
import typing
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blindbench.checkpoint import (
    capture_rng,
    check_weights,
    checkpoint_file,
    hardware,
    load_checkpoint,
    load_weights,
    read_weights,
    restore_rng,
    retire_optimizer_state,
    save_checkpoint,
    unwrap,
    weights_digest,
)
from blindbench.commands.train import TrainConfig
from blindbench.errors import BlindbenchError, ConfigError, TrainingStopped, did_you_mean
from blindbench.locking import exclusive_folder
from blindbench.options import resolved_toml, select_device
from blindbench.paths import data_root


def load_config(path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then a flat TOML file, then ``overrides`` (e.g. CLI flags); unknown keys are one-line errors.

    With ``resume``, the base is the checkpoint's stored config instead of the defaults (see `resume_config`).
    """
    values: dict[str, Any] = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"train config not found: {path}")
        try:
            values.update(tomllib.loads(path.read_text()))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"bad train config {path}: {exc}") from None
    values.update(overrides or {})
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in values:
        if key not in names:
            where = f" in {path}" if path else ""
            raise ConfigError(f"unknown train option {key!r}{where}{did_you_mean(key, names, list_all=False)}")
    hints = typing.get_type_hints(TrainConfig)
    for key, value in values.items():  # TOML ints are fine where floats are expected
        if hints[key] is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
    if values.get("resume"):  # the run's own settings, changed only where it is safe
        return resume_config(values.pop("resume"), values)
    return TrainConfig(**values)


def save_config(cfg: TrainConfig, path: Path) -> None:
    """The resolved config as a flat TOML file that :func:`load_config` reads back."""
    path.write_text(resolved_toml(cfg, "train"))


# ----------------------------------------------------------------------------------------------------- device


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None  # None: full precision

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device once; join a process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = select_device(cfg.device).type == "cuda"
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    amp_dtype = None
    if cfg.amp and use_cuda:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Runtime(device, rank, world, local_rank, amp_dtype)


# ------------------------------------------------------------------------------------------------------- data


def decayed_lr(base: float, step: int, steps: int, fraction: float) -> float:
    """The learning rate of update ``step`` (0-based) of a stage of ``steps``: ``base``, then, over the last
    ``fraction`` of the stage (n updates), a linear fall: ``base·n/(n+1)`` down to ``base/(n+1)`` (warmup-stable-decay:
    a constant rate explores, the short decay settles it; the zoo's validation BCE swings by ±0.04 at a constant
    rate)."""
    n = round(fraction * steps)
    if n <= 0 or step < steps - n:
        return base
    return base * (steps - step) / (n + 1)


def resize_batch(batch: dict, size: int) -> dict:
    """Resize a batch to ``size``²: area for images and the soft mask, nearest for the hard mask."""
    if not size or batch["input"].shape[-1] == size and batch["input"].shape[-2] == size:
        return batch
    out = dict(batch)
    for key in ("input", "target", "soft_mask"):
        out[key] = F.interpolate(batch[key], size=(size, size), mode="area")
    out["mask"] = F.interpolate(batch["mask"], size=(size, size), mode="nearest")
    return out


class BatchSource:
    """Batches of a training set, ``steps_per_epoch`` per epoch on every rank, restartable at any position."""

    def __init__(self, cfg: TrainConfig, batch_size: int, runtime: Runtime, epoch_offset: int = 0) -> None:
        from blindbench.sets import load_set

        self.cfg, self.batch_size, self.runtime, self.epoch_offset = cfg, batch_size, runtime, epoch_offset
        self.spec = load_set(cfg.set)
        workers = max(cfg.workers, 1)
        if cfg.source == "shards":
            from blindbench.loader import shard_urls

            self.urls = shard_urls(self.spec)
            sizes = sorted(len(self.spec.shard_range(i)) for i in range(self.spec.shard_count))
            per_rank = sum(sizes[: self.spec.shard_count // runtime.world])  # the smallest share any rank gets
            if per_rank == 0:
                raise ConfigError(f"set {self.spec.name} has {self.spec.shard_count} shards, fewer than the "
                                  f"{runtime.world} processes")
        elif self.spec.kind == "pairs":
            raise ConfigError(f"set {self.spec.name} holds real pairs, which cannot be made on the fly: train on "
                              f"its shards (source = \"shards\", after `blindbench generate --set {cfg.set}`)")
        else:
            from blindbench.shards import ensure_corpus

            # the stream cuts crops from the corpus inside the workers: build it here, once, before they start
            if runtime.main:
                ensure_corpus(self.spec, progress=cfg.progress)
            if runtime.world > 1:
                torch.distributed.barrier()
            per_rank = self.spec.count // runtime.world
        usable = per_rank - (workers - 1) * (batch_size - 1) if cfg.workers > 1 else per_rank
        self.steps_per_epoch = usable // batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(f"set {self.spec.name} has too few samples for batch {batch_size} per process")

    def _loader(self, epoch: int) -> Iterator[dict]:
        from torch.utils.data import DataLoader

        from blindbench.loader import CorruptionStream, collate, shard_dataset, worker_errors

        seed = self.cfg.seed
        # an own generator: creating the iterator must not draw from the global torch RNG
        generator = torch.Generator().manual_seed(seed * 7919 + epoch)
        if self.cfg.source == "shards":
            dataset = shard_dataset(self.urls, self.batch_size, seed, epoch, self.cfg.shuffle_buffer, partial=False)
            loader = DataLoader(dataset, batch_size=None, num_workers=self.cfg.workers, generator=generator)
        else:
            loader = DataLoader(CorruptionStream(self.spec, epoch), batch_size=self.batch_size, collate_fn=collate,
                                num_workers=self.cfg.workers, drop_last=True, generator=generator)
        return worker_errors(iter(loader))

    def batches(self, start: int = 0) -> Iterator[dict]:
        """Endless batches from position ``start`` (batches consumed in this stage)."""
        position = start
        while True:
            epoch, skip = divmod(position, self.steps_per_epoch)
            it = self._loader(self.epoch_offset + epoch)
            for _ in range(skip):
                next(it)
            for _ in range(self.steps_per_epoch - skip):
                batch = next(it, None)
                if batch is None:
                    raise BlindbenchError(f"set {self.spec.name} ran out of batches in epoch {epoch}")
                position += 1
                batch = resize_batch(batch, self.cfg.image_size)
                yield crop_batch(batch, self.cfg.crop_size, self.cfg.seed, self.epoch_offset, position,
                                 flip=self.cfg.flip)


def crop_batch(batch: dict, size: int, seed: int, epoch_offset: int, position: int, flip: bool = False) -> dict:
    """One random ``size``² window per sample, drawn from a generator seeded by (seed, stage, batch position),
    and with ``flip`` a horizontal flip of each sample with probability 1/2, drawn after the windows.

    Seeding by position rather than drawing from a running generator keeps a resumed run's crops identical; the
    flips come after the window draws so that a run with flips sees the same windows as one without.
    """
    height, width = batch["input"].shape[-2:]
    crop = bool(size) and (height != size or width != size)
    if not crop and not flip:
        return batch
    if crop and size > min(height, width):
        raise ConfigError(f"crop_size {size} exceeds the batch images ({height}x{width})")
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch_offset) * 1_000_033 + position)
    n = batch["input"].shape[0]
    if crop:
        tops = torch.randint(0, height - size + 1, (n,), generator=gen).tolist()
        lefts = torch.randint(0, width - size + 1, (n,), generator=gen).tolist()
    else:
        tops = lefts = [0] * n
    flips = (torch.rand(n, generator=gen) < 0.5).tolist() if flip else [False] * n
    out = dict(batch)
    for key, value in batch.items():
        if isinstance(value, Tensor) and value.ndim == 4:
            windows = [v[:, t:t + size, x:x + size] if crop else v
                       for v, t, x in zip(value, tops, lefts, strict=True)]
            out[key] = torch.stack([w.flip(-1) if f else w for w, f in zip(windows, flips, strict=True)])
    return out


# ----------------------------------------------------------------------------------------------------- losses


@dataclass
class Critics:
    global_critic: nn.Module
    patch_critic: nn.Module

    def modules(self) -> dict[str, nn.Module]:
        return {"global": self.global_critic, "patch": self.patch_critic}


def build_critics(cfg: TrainConfig, image_size: int) -> Critics:
    from vcn.critics import GlobalCritic, PatchCritic

    width = cfg.critic_width or (64 if cfg.preset == "paper" else 8)
    return Critics(GlobalCritic(width, image_size), PatchCritic(width))


def load_perceptual(cfg: TrainConfig) -> nn.Module | None:
    """The VGG19 feature extractor, or None with ``perceptual=False``; missing weights are a one-line error."""
    if not cfg.perceptual:
        return None
    from vcn.vgg import load_vgg19

    try:
        return load_vgg19(cfg.vgg19 or None)
    except (FileNotFoundError, ValueError) as exc:
        raise BlindbenchError(f"{exc} (or train with perceptual = false)") from None


def reconstruction_losses(cfg: TrainConfig, vgg: nn.Module | None, out, batch: dict, joint: bool) -> dict[str, Tensor]:
    """The critic-free terms, unweighted: bce (when the model predicts a mask), l1, semantic, mrf."""
    from vcn import losses

    pred, target = out.image, batch["target"]
    terms: dict[str, Tensor] = {}
    if out.mask_logits is not None:
        terms["bce"] = losses.mask_bce(out.mask_logits.float(), batch["mask"])
    terms["l1"] = losses.l1(pred.float(), target)
    if joint and (cfg.lambda_composite or cfg.lambda_composite_ssim) and out.mask_logits is not None:
        from vcn.types import composite  # stage 1 keeps image losses off the MPN

        blended = composite(batch["input"], out).float()
        if cfg.lambda_composite:
            terms["l1_composite"] = losses.l1(blended, target)
        if cfg.lambda_composite_ssim:
            terms["ssim_composite"] = losses.ssim_loss(blended, target)
    if vgg is not None:  # one VGG19 pass per image for both perceptual terms
        terms.update({k: v.float() for k, v in losses.perceptual_losses(vgg, pred, target, mrf=joint).items()})
    return terms


def weighted_sum(cfg: TrainConfig, terms: dict[str, Tensor]) -> Tensor:
    weights = {"bce": cfg.lambda_mask, "l1": cfg.lambda_l1, "semantic": cfg.lambda_semantic, "mrf": cfg.lambda_mrf,
               "adv": cfg.lambda_adv, "l1_composite": cfg.lambda_composite,
               "ssim_composite": cfg.lambda_composite_ssim}
    return sum(weights[k] * v for k, v in terms.items())


class StopRequest:
    """The first SIGINT or SIGTERM asks the run to stop after the current step with a checkpoint; a second one
    interrupts at once as usual. Only a single-process run on the main thread listens: the ranks of a torchrun
    job would otherwise stop at different steps and hang in the next collective."""

    def __init__(self, enabled: bool) -> None:
        import threading

        self.signal: signal.Signals | None = None
        self.previous: dict[int, Any] = {}
        if enabled and threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
            for sig in self.previous:
                signal.signal(sig, self._request)

    def _request(self, signum: int, frame: object) -> None:
        self.signal = signal.Signals(signum)
        self.restore()  # the next one acts at once
        print(f"\n{self.signal.name}: stopping after this step with a checkpoint (again to stop at once)",
              file=sys.stderr, flush=True)

    def restore(self) -> None:
        """Put the handlers back that were there before."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


# ------------------------------------------------------------------------------------------------------ logging


class Logger:
    """Scalars to ``metrics.csv`` (long format: step, stage, name, value); with TensorBoard installed also the
    scalars, the sample grids and, at :meth:`close`, the run's hyperparameters beside its last value of each
    scalar (TensorBoard's HParams tab)."""

    def __init__(self, run_dir: Path, tensorboard: bool, keep_until: int = 0,
                 hparams: dict[str, Any] | None = None, history: Path | None = None) -> None:
        """Rows of an earlier process after step ``keep_until`` (the checkpoint it resumes from) are dropped: they
        are about to be replayed, and each step must be logged once. ``history``: the ``metrics.csv`` of the run
        the checkpoint came from, whose rows up to ``keep_until`` start a run folder that has none yet (a run
        resumed into a new ``--out``, e.g. from a zoo ``resume.pt``, keeps its whole curve). ``hparams``: flat str,
        int, float or bool values (the resolved train config)."""
        self.hparams = dict(hparams or {})
        self.last: dict[str, float] = {}
        self.path = run_dir / "metrics.csv"
        kept: list[list[str]] = []
        source = self.path if self.path.exists() else history
        if source is not None and source.is_file():
            with source.open(newline="") as handle:
                for row in list(csv.reader(handle))[1:]:
                    if row and row[0].isdigit() and int(row[0]) <= keep_until:
                        kept.append(row)
        tmp = self.path.with_name(".metrics.csv.tmp")
        with tmp.open("w", newline="") as handle:
            csv.writer(handle).writerows([["step", "stage", "name", "value"], *kept])
        os.replace(tmp, self.path)
        self.handle = self.path.open("a", newline="")
        self.writer = csv.writer(self.handle)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                self.tb = None
                print("blindbench: warning: tensorboard is not installed (pip install 'blindbench[tensorboard]'); "
                      "scalars go to metrics.csv only", file=sys.stderr)

    def scalars(self, step: int, stage: str, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.writerow([step, stage, name, f"{value:.6g}"])
            self.last[f"{stage}/{name}"] = value
            if self.tb is not None:
                self.tb.add_scalar(f"{stage}/{name}", value, step)
        self.handle.flush()

    def image(self, step: int, stage: str, grid: np.ndarray) -> None:
        """A (H, W, 3) uint8 sample grid (:func:`sample_grid`) under ``<stage>/samples``."""
        if self.tb is not None:
            self.tb.add_image(f"{stage}/samples", grid, step, dataformats="HWC")

    def close(self) -> None:
        self.handle.close()
        if self.tb is not None:
            if self.hparams:  # in the run's own folder ("."), metrics apart from the curves ("hparam/" tags)
                self.tb.add_hparams(self.hparams, {f"hparam/{k}": v for k, v in self.last.items()}, run_name=".")
            self.tb.close()


def _to_uint8(images: Tensor) -> np.ndarray:
    """(B, C, H, W) in [0, 1] → (B, H, W, 3) uint8."""
    images = images.detach().float().clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return (images.permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def sample_grid(batch: dict, out, rows: int = 4) -> np.ndarray:
    """(rows·H, 4·W, 3) uint8, one row per sample: input | predicted mask | output | target."""
    n = min(rows, batch["input"].shape[0])
    to01 = lambda x: (x[:n] + 1.0) / 2.0  # noqa: E731
    mask = torch.sigmoid(out.mask_logits[:n]) if out.mask_logits is not None else torch.zeros_like(batch["mask"][:n])
    columns = [_to_uint8(to01(batch["input"])), _to_uint8(mask), _to_uint8(to01(out.image)),
               _to_uint8(to01(batch["target"]))]
    return np.concatenate([np.concatenate(list(col), axis=0) for col in columns], axis=1)


def write_grid(path: Path, grid: np.ndarray) -> Path:
    """Write a :func:`sample_grid` as a PNG (folders created)."""
    from blindbench.imageio import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, grid)
    return path


def save_sample_grid(path: Path, batch: dict, out, rows: int = 4) -> Path:
    """A PNG grid, one row per sample: input | predicted mask | output | target."""
    return write_grid(path, sample_grid(batch, out, rows))


@torch.no_grad()
def validate(cfg: TrainConfig, model: nn.Module, runtime: Runtime) -> dict[str, float]:
    """Blind restoration of ``val_set`` (all of it, or the first ``val_batches`` batches of ``val_batch``).

    Means over images of the official mask BCE (unweighted, from logits), PSNR and SSIM (the conventions of
    ``blindbench.metrics``) of the raw output and of the composite ``Ô ⊙ M̂ + I ⊙ (1 − M̂)``, the BCE per
    corruption pattern (``val_bce_<pattern>``) and the PSNR of the inpainting net fed the *true* mask
    (``val_psnr_true_mask``: what stage 1 trains, beside the blind figure it is judged by). ``model`` must be the
    plain module (not DDP): only the main process validates, on every shard of the set (not only its rank's
    share), so the numbers do not depend on the process count.
    """
    from blindbench.loader import shard_dataset, shard_urls
    from blindbench.metrics import mask_bce_from_logits, psnr, ssim
    from blindbench.sets import load_set
    from vcn.types import composite

    spec = load_set(cfg.val_set)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(name: str, values: Tensor) -> None:
        sums[name] = sums.get(name, 0.0) + float(values.double().sum())
        counts[name] = counts.get(name, 0) + values.numel()

    def to01(x: Tensor) -> Tensor:  # (B, 3, H, W) in [0, 1]
        return ((x.float().cpu().nan_to_num(0.0) + 1.0) / 2.0).clamp(0, 1)

    was_training = model.training
    model.eval()
    batches = shard_dataset(shard_urls(spec), cfg.val_batch, split_nodes=False, partial=True)
    for i, batch in enumerate(batches):
        if cfg.val_batches and i >= cfg.val_batches:
            break
        batch = resize_batch(batch, cfg.image_size)
        image = batch["input"].to(runtime.device)
        with _autocast(runtime):
            out = model(image)
            guided = model(image, mask=batch["mask"].to(runtime.device))
        target = (batch["target"] + 1.0) / 2.0
        blended = composite(image, out)
        add("psnr", psnr(to01(out.image), target))
        add("ssim", ssim(to01(out.image), target))
        add("psnr_composite", psnr(to01(blended), target))
        add("ssim_composite", ssim(to01(blended), target))
        add("psnr_true_mask", psnr(to01(guided.image), target))
        if out.mask_logits is not None:
            logits = out.mask_logits.float().cpu().nan_to_num(0.0, posinf=1e4, neginf=-1e4)
            bce = mask_bce_from_logits(logits, batch["mask"])
            add("bce", bce)
            for pattern in sorted(set(batch["pattern"])):
                add(f"bce_{pattern}", bce[[p == pattern for p in batch["pattern"]]])
    model.train(was_training)
    return {f"val_{k}": v / max(counts[k], 1) for k, v in sums.items()}


# -------------------------------------------------------------------------------------------------------- loop


def _autocast(runtime: Runtime):
    if runtime.amp_dtype is None:
        return nullcontext()
    return torch.autocast(runtime.device.type, dtype=runtime.amp_dtype)


def _all_ranks_min(flags: Tensor) -> Tensor:
    """``flags`` (int) reduced to their minimum over all ranks (all ranks then skip or step together)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
    return flags


def scalars(logs: dict[str, Tensor | float]) -> dict[str, float]:
    """The step's logs as Python floats, in their order, read from the device in one transfer (one host sync)."""
    keys = [k for k, v in logs.items() if isinstance(v, Tensor)]
    read = dict(zip(keys, torch.stack([logs[k].float() for k in keys]).tolist(), strict=True)) if keys else {}
    return {k: read[k] if k in read else float(v) for k, v in logs.items()}


def _average_gradients(params: list[Tensor], world: int, ok: Tensor | None = None) -> Tensor | None:
    """Average the gradients of ``params`` over all ranks in one collective (for modules outside DDP).

    SUM then divide: gloo has no ``ReduceOp.AVG`` before torch 2.8. Every rank must hold the same parameters
    with gradients (true here: all ranks run the same critic graph). A flag ``ok`` travels in the same collective
    and comes back True only where it is True on every rank.
    """
    grads = [p.grad for p in params if p.grad is not None]
    parts = [g.reshape(-1) for g in grads]
    if ok is not None:
        parts.append((~ok).to(grads[0].dtype if grads else torch.float32).reshape(1))  # 1 on a rank that failed
    if not parts:
        return ok
    flat = torch.cat(parts)
    torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
    if ok is not None:
        ok, flat = flat[-1] == 0, flat[:-1]
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return ok


class _Rollback:
    """Undo of optimizer updates made under a False device flag, without a host sync.

    :meth:`guard` copies every tensor an update writes on the parameters' device (the parameters and their
    optimizer state), lets the update run, and puts the copy back where the flag is False (``torch.where``, no
    sync). What the device cannot put back, state on the host (Adam's step counters of GPU parameters, the fp16
    GradScaler's) or state the update created, :meth:`undo` restores once the host has read the flags.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        self.optimizer, self.scaler = optimizer, scaler
        self.marks: list[tuple[dict[Tensor, dict[str, Any] | None], dict[str, Any] | None]] = []

    @contextlib.contextmanager
    def guard(self, ok: Tensor) -> Iterator[None]:
        on_device: list[Tensor] = []
        host: dict[Tensor, dict[str, Any] | None] = {}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                state = self.optimizer.state.get(p)
                here = [v for v in state.values() if isinstance(v, Tensor) and v.device == p.device] if state else []
                host[p] = None if not state else {k: v.clone() if isinstance(v, Tensor) else v
                                                  for k, v in state.items() if not any(v is t for t in here)}
                on_device += [p, *here]
        scaler = self.scaler.state_dict() if self.scaler.is_enabled() else None  # fp16 only (it syncs anyway)
        self.marks.append((host, scaler))
        before = [t.detach().clone() for t in on_device]
        yield
        with torch.no_grad():
            for t, old in zip(on_device, before, strict=True):
                t.copy_(torch.where(ok, t, old))

    def undo(self, flags: list[int]) -> None:
        """Restore the host side as it was before the first update whose flag is 0 (the device side already is)."""
        if all(flags):
            return
        host, scaler = self.marks[flags.index(0)]
        for p, kept in host.items():
            if kept is None:  # state this step's updates created
                self.optimizer.state.pop(p, None)
            else:
                self.optimizer.state[p].update(kept)
        if scaler is not None:
            self.scaler.load_state_dict(scaler)


def load_init_weights(model: nn.Module, cfg: TrainConfig) -> None:
    """Load ``cfg.init`` (a training checkpoint, run folder or zoo weights file) into ``model``; one-line errors."""
    blob = read_weights(cfg.init, "init weights")
    if (blob.get("model_name"), blob.get("preset")) != (cfg.model, cfg.preset):
        raise BlindbenchError(f"init weights {cfg.init} are {blob.get('model_name')} ({blob.get('preset')}), not "
                              f"{cfg.model} ({cfg.preset})")
    load_weights(model, blob["model"], f"init weights {cfg.init} do not fit model {cfg.model!r}")


def _default_out(cfg: TrainConfig) -> Path:
    return data_root() / "runs" / f"{cfg.model}-{cfg.stage}"


def _resolve_run_dir(cfg: TrainConfig) -> tuple[Path, Path | None]:
    resume = Path(cfg.resume) if cfg.resume else None
    if resume is not None:
        ckpt = checkpoint_file(resume)
        if not ckpt.is_file():
            raise BlindbenchError(f"nothing to resume: {ckpt} not found")
        if cfg.out:
            return Path(cfg.out), ckpt
        if ckpt.parent.name != "checkpoints":  # a checkpoint outside a run folder: which folder to write is unknown
            raise ConfigError(f"{ckpt} is not in a run folder's checkpoints/: give --out for the resumed run")
        return ckpt.parent.parent, ckpt
    run_dir = Path(cfg.out) if cfg.out else _default_out(cfg)
    if (run_dir / "checkpoints" / "last.pt").exists():
        raise ConfigError(f"run folder {run_dir} already holds a checkpoint; pass resume or another out")
    return run_dir, None


# What a resume may change: how long to train and how to report and save it. Anything else (model, data, lr, loss
# weights, seed, workers) would make the continued run something else than the run it claims to be.
RESUME_CHANGEABLE = frozenset({
    "steps_separate", "steps_joint", "val_set", "val_every", "val_batch", "val_batches", "log_every", "sample_every",
    "checkpoint_every", "tensorboard", "progress", "max_bad_steps", "device", "out", "resume", "init", "max_minutes",
})  # fmt: skip


# What only the joint stage reads: a resume from a checkpoint still in the separate stage may change these too, and
# the run goes on as a run configured so from the start would have (its first stage never read them).
JOINT_STAGE_OPTIONS = frozenset({
    "lr_joint", "batch_joint", "lambda_mrf", "lambda_adv", "lambda_gp", "lambda_composite", "lambda_composite_ssim",
    "critic_steps", "critic_batches", "critic_input",
})  # fmt: skip


def resume_changeable(state: dict[str, Any]) -> frozenset[str]:
    """The options a resume from the checkpoint ``state`` may change."""
    return RESUME_CHANGEABLE | (JOINT_STAGE_OPTIONS if state.get("stage") == "separate" else frozenset())


# Options added after runs were saved, with the behaviour those runs had before the option existed.
LEGACY_DEFAULTS: dict[str, Any] = {"mpn_separate": "all", "lr_decay": 0.0, "lambda_composite": 0.0, "flip": False,
                                   "lambda_composite_ssim": 0.0}


def stored_config(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's saved config, options added since it was saved set to the behaviour the run had."""
    stored = dict(state.get("config") or {})
    return {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in stored}, **stored} if stored else stored


def resume_config(resume: str, given: dict[str, Any]) -> TrainConfig:
    """The stored config of the checkpoint ``resume`` with the options ``given`` explicitly applied.

    Raises:
        ConfigError: one line when ``given`` changes an option outside ``RESUME_CHANGEABLE``.
    """
    state = load_checkpoint(checkpoint_file(resume))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    stored = {k: v for k, v in stored_config(state).items() if k in names and k not in ("out", "resume")}
    changeable = resume_changeable(state)
    for key, value in given.items():
        if key in changeable or key not in stored:
            continue
        if isinstance(stored[key], float) and isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
        if value != stored[key]:
            raise ConfigError(f"cannot change {key} when resuming ({stored[key]!r} in the run, {value!r} given): "
                              f"start a new run instead")
    # the weights come from the checkpoint now, not from the run's init file
    return TrainConfig(**{**stored, **given, "resume": str(resume), "init": ""})


def prepare_val_set(cfg: TrainConfig, runtime: Runtime) -> None:
    """Check the validation set, and generate its shards (a small set, seconds) if they are not there yet."""
    from blindbench.loader import shard_urls
    from blindbench.sets import load_set
    from blindbench.shards import generate_set

    spec = load_set(cfg.val_set)
    if runtime.main:
        try:
            shard_urls(spec)
        except BlindbenchError:
            print(f"validation set {spec.name}: generating its shards first (as `blindbench generate --set "
                  f"{cfg.val_set}` does)", file=sys.stderr)  # an earlier step of the chain: say so
            # another run may be generating the same set right now: wait for it, keep its shards
            generate_set(spec, progress=cfg.progress, wait=True)
    if runtime.world > 1:
        torch.distributed.barrier()


def check_cpu_layout(cfg: TrainConfig, runtime: Runtime) -> None:
    """Keep CPU training off channels-last convolutions on CPUs without AVX-512.

    oneDNN's AVX2 weight gradient of a 1x1 stride-2 convolution with fewer than 8 input channels in channels-last
    layout writes past its workspace (oneDNN issue 6035): with 2 threads it hangs or returns wrong gradients, with
    1 it aborts. VCN's first MPN block has exactly that shortcut. ``torch.compile`` picks channels-last for
    training convolutions by itself, so its layout optimisation is turned off there too.
    """
    if runtime.device.type != "cpu" or torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return
    if cfg.channels_last:
        raise ConfigError(f"channels_last training on this CPU ({torch.backends.cpu.get_cpu_capability()}, no "
                          f"AVX-512) hits a oneDNN bug that corrupts convolution gradients: drop --channels-last")
    if cfg.compile:
        import torch._inductor.config as inductor_config

        inductor_config.layout_optimization = False


class Trainer:
    """Holds the model, critics, optimizers and scalers of one run; :meth:`run` executes the plan."""

    def __init__(self, cfg: TrainConfig, runtime: Runtime, run_dir: Path) -> None:
        from blindbench.models import create_model

        self.cfg, self.runtime, self.run_dir = cfg, runtime, run_dir
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        self.vgg = load_perceptual(cfg)
        if self.vgg is not None:
            self.vgg = self.vgg.to(runtime.device)
        from blindbench.sets import load_set

        self.image_size = cfg.crop_size or cfg.image_size or load_set(cfg.set).size
        if cfg.val_set and cfg.val_every:
            prepare_val_set(cfg, runtime)  # now, not at step val_every: a misspelt or missing set fails early
        self.raw_model = create_model(cfg.model, cfg.preset).to(runtime.device)
        if cfg.init:
            load_init_weights(self.raw_model, cfg)
        needs_critics = any(stage == "joint" for stage, _ in cfg.plan())
        self.critics = build_critics(cfg, self.image_size) if needs_critics else None
        check_cpu_layout(cfg, runtime)
        memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        self.raw_model.to(memory_format=memory_format)
        if self.critics is not None:
            for m in self.critics.modules().values():
                m.to(runtime.device, memory_format=memory_format)
        self.model = self._wrap(self.raw_model)
        # stage 1 "MPN on BCE only": models that fuse MPN features into the inpainting net get them detached
        fuses = bool(getattr(self.raw_model, "fuses_features", False))
        self.separate_options = {"detach_features": True} if cfg.mpn_separate == "bce" and fuses else {}
        # Critics are not DDP-wrapped (DDP does not support the gradient penalty's double backward, nor several
        # forwards per backward); their gradients are averaged over ranks by hand in _backward_step.
        self.critic_global = self.critic_patch = None
        if self.critics is not None:
            self.critic_global, self.critic_patch = self.critics.global_critic, self.critics.patch_critic
        self.memory_format = memory_format
        # on an asynchronous device a host read drains its queue: the NaN guard then works on the device and the
        # step reads the host once; on the CPU a read is free and the device-side guard's copies are not
        self.sync_free = runtime.device.type != "cpu"
        self.step = 0  # global generator steps done
        self.history: Path | None = None  # metrics.csv of the run a restored checkpoint came from
        self.finite_steps = 0  # generator steps that were not skipped, in this process
        self.stopped_by_budget = False  # max_minutes ran out before the plan
        self.stopped_by: signal.Signals | None = None  # the signal that stopped the run before its plan, if one did
        # one record per (re)start: steps, seconds spent in training steps, and the hardware (for the zoo's cards)
        self.sessions: list[dict[str, Any]] = []
        self.session = {"steps": [0, 0], "seconds": 0.0, **hardware()}
        self.bad_in_row = 0
        self.bad_total = 0
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self._pending: dict[str, Any] | None = None

    def _wrap(self, module: nn.Module, compile_it: bool = True) -> nn.Module:
        if self.runtime.world > 1:
            ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
        if self.cfg.compile and compile_it:
            module = torch.compile(module)
        return module

    def _make_optimizers(self, stage: str) -> None:
        cfg = self.cfg
        lr = cfg.lr_separate if stage == "separate" else cfg.lr_joint
        betas = (cfg.beta1, cfg.beta2)
        self.optimizers = {"generator": torch.optim.Adam(self.raw_model.parameters(), lr=lr, betas=betas)}
        fp16 = self.runtime.amp_dtype == torch.float16
        self.scalers = {"generator": torch.amp.GradScaler(self.runtime.device.type, enabled=fp16)}
        if stage == "joint":
            params = [p for m in self.critics.modules().values() for p in m.parameters()]
            self.optimizers["critic"] = torch.optim.Adam(params, lr=lr, betas=betas)
            self.scalers["critic"] = torch.amp.GradScaler(self.runtime.device.type, enabled=fp16)

    # ------------------------------------------------------------------------------------------ checkpoints

    def state(self, stage: str, stage_step: int) -> dict[str, Any]:
        weights = unwrap(self.raw_model).state_dict()
        return {
            "model_name": self.cfg.model,
            "preset": self.cfg.preset,
            "step": self.step,
            "stage": stage,
            "stage_step": stage_step,
            "data_batches": stage_step * self.batches_per_step(stage),
            "config": dataclasses.asdict(self.cfg),
            "model": weights,
            "model_sha256": weights_digest(weights),
            "sessions": [*self.sessions, {**self.session, "seconds": round(self.session["seconds"], 3)}],
            "critics": {k: m.state_dict() for k, m in self.critics.modules().items()} if self.critics else {},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "rng": capture_rng(),
            "bad_steps": self.bad_in_row,
        }

    def save(self, stage: str, stage_step: int) -> None:
        if self.runtime.main:
            state = self.state(stage, stage_step)
            # never a checkpoint of broken weights (a finite loss can still leave inf weights, e.g. lr = 1e30)
            check_weights(state["model"], None, f"step {self.step}: not saved, the model")
            save_checkpoint(state, self.run_dir / "checkpoints" / "last.pt")
            if (self.run_dir / "metrics.csv").is_file():  # every run's curve, drawn at each checkpoint
                from blindbench.figures import loss_curve

                with contextlib.suppress(ValueError, KeyError, OSError):  # a curve with too few rows: next time
                    loss_curve(self.run_dir / "metrics.csv", self.run_dir / "loss-curve.png",
                               title=f"{self.cfg.model} ({self.cfg.preset}) on {self.cfg.set}")

    def restore(self, path: Path) -> tuple[str, int]:
        """Load a checkpoint; returns (stage, stage_step) of its position."""
        state = load_checkpoint(path, self.runtime.device)
        # its run's scalars: run/checkpoints/x.pt -> run/metrics.csv; a zoo resume.pt -> the entry's metrics.csv
        self.history = (path.parent.parent if path.parent.name == "checkpoints" else path.parent) / "metrics.csv"
        if state["model_name"] != self.cfg.model or state["preset"] != self.cfg.preset:
            raise BlindbenchError(f"checkpoint {path} is for {state['model_name']} ({state['preset']}), "
                                  f"not {self.cfg.model} ({self.cfg.preset})")
        stored = stored_config(state)
        for key in sorted(set(stored) - resume_changeable(state)):  # the API path too, not only resume_config
            if hasattr(self.cfg, key) and stored[key] != getattr(self.cfg, key):
                raise ConfigError(f"cannot change {key} when resuming {path} ({stored[key]!r} in the run, "
                                  f"{getattr(self.cfg, key)!r} now): start a new run instead")
        check_weights(state["model"], state.get("model_sha256"), f"checkpoint {path}")
        load_weights(self.raw_model, state["model"], f"checkpoint {path} does not fit model {self.cfg.model!r}")
        optimizers = state.get("optimizers") or {}
        if "generator" in optimizers:  # a run from before a retired block was dropped: its Adam moments less those
            optimizers["generator"] = retire_optimizer_state(optimizers["generator"], state["model"], self.raw_model)
        if self.critics is not None and state.get("critics"):
            for k, m in self.critics.modules().items():
                load_weights(m, state["critics"].get(k), f"checkpoint {path}: critic {k!r} does not fit")
        self.step = int(state["step"])
        self.sessions = list(state.get("sessions", []))
        self.session["steps"] = [self.step, self.step]
        self.bad_in_row = int(state.get("bad_steps", 0))
        restore_rng(state["rng"])
        self._pending = state
        return state["stage"], int(state["stage_step"])

    # ----------------------------------------------------------------------------------------------- steps

    def _to_device(self, batch: dict) -> dict:
        out = dict(batch)
        for key in ("input", "target", "mask", "soft_mask"):
            out[key] = batch[key].to(self.runtime.device, non_blocking=True).contiguous(
                memory_format=self.memory_format)
        return out

    def _bad(self, what: str) -> dict[str, float]:
        self.bad_in_row += 1
        self.bad_total += 1
        if self.bad_in_row > self.cfg.max_bad_steps:
            raise BlindbenchError(
                f"stopped at step {self.step}: {self.bad_in_row} non-finite losses in a row ({what}); "
                f"the last good checkpoint is {self.run_dir / 'checkpoints' / 'last.pt'}")
        return {"skipped": 1.0}

    def _backward_step(self, name: str, loss: Tensor) -> None:
        opt, scaler = self.optimizers[name], self.scalers[name]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def _critic_update(self, d_loss: Tensor, ok: Tensor, rollback: _Rollback | None) -> Tensor:
        """One critic update, kept only where ``ok`` and ``d_loss`` are finite (on every rank).

        Returns the step's running flag: False from the first non-finite loss of the step on, so that this update
        and every later one of the step are not made, as if the step had stopped there. With ``rollback`` (an
        asynchronous device) the update is made and undone on the device, without a host sync; without it (CPU,
        where reading the flag costs nothing and spares the copies) the flag is read and a bad update not made.
        """
        opt, scaler = self.optimizers["critic"], self.scalers["critic"]
        ok = ok & torch.isfinite(d_loss.detach())
        opt.zero_grad(set_to_none=True)
        scaler.scale(d_loss).backward()
        if self.runtime.world > 1:  # the flag rides in the gradients' all-reduce: every rank keeps or undoes alike
            ok = _average_gradients([p for group in opt.param_groups for p in group["params"]], self.runtime.world,
                                    ok)
        if rollback is None:
            if bool(ok):
                scaler.step(opt)
                scaler.update()
            return ok
        with rollback.guard(ok):
            scaler.step(opt)
            scaler.update()
        return ok

    def batches_per_step(self, stage: str) -> int:
        """Batches one generator step consumes: its own, plus one per critic update when those are fresh."""
        fresh = stage == "joint" and self.cfg.critic_batches == "fresh"
        return 1 + (self.cfg.critic_steps if fresh else 0)

    def _critic_view(self, image: Tensor, output) -> Tensor:
        if self.cfg.critic_input == "composite":
            from vcn.critics import critic_view

            return critic_view(image, output.image, output.mask_logits)
        return output.image

    def _critic_inputs(self, batch: dict, fake: Tensor, critic_batches: list[dict] | None
                       ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """(fake, real, mask) of each critic update. Fresh batches get their (no-grad) generator outputs from one
        forward over all of them: the critic updates leave the generator as it is, so this is the output each
        update would compute for itself, made in one batched pass instead of ``critic_steps``."""
        if not critic_batches:
            fake = fake.detach()
            return [(fake, batch["target"], batch["mask"])] * self.cfg.critic_steps
        extras = [self._to_device(b) for b in critic_batches[: self.cfg.critic_steps]]
        inputs = torch.cat([e["input"] for e in extras])  # (critic_steps·B, 3, H, W)
        with torch.no_grad(), _autocast(self.runtime):
            views = self._critic_view(inputs, self.model(inputs)).split([len(e["input"]) for e in extras])
        return [(v, e["target"], e["mask"]) for v, e in zip(views, extras, strict=True)]

    def train_step(self, stage: str, batch: dict, critic_batches: list[dict] | None = None
                   ) -> tuple[dict[str, Tensor | float], Any]:
        """One generator step (with its critic steps in the joint stage); returns the losses and the output.

        The losses are detached 0-dim tensors (``{"skipped": 1.0}`` for a skipped step): read them with
        :func:`scalars`, which the loop does on log steps only. A non-finite reconstruction, critic or generator
        loss (on any rank) skips the generator update, and the critic updates from the first non-finite loss on are
        not made, as when the step stopped there. With ``sync_free`` (any device but the CPU) the step syncs with
        the host once, for that verdict; on the CPU each critic update also reads its flag (no queue to drain).
        ``critic_batches`` (joint stage, ``critic_batches = "fresh"``): one batch per critic update; without them
        every update reuses ``batch`` and its generator output.
        """
        cfg = self.cfg
        batch = self._to_device(batch)
        joint = stage == "joint"
        with _autocast(self.runtime):
            if joint:
                out = self.model(batch["input"])
            else:
                out = self.model(batch["input"], mask=batch["mask"], **self.separate_options)
            terms = reconstruction_losses(cfg, self.vgg, out, batch, joint)
            rec = weighted_sum(cfg, terms)
        flags = [torch.isfinite(rec.detach())]
        logs: dict[str, Tensor | float] = {}
        total, rollback = rec, None
        if joint:
            from vcn import losses

            fake, mask = self._critic_view(batch["input"], out), batch["mask"]
            gen = torch.Generator(device=self.runtime.device).manual_seed(cfg.seed * 1_000_003 + self.step)
            rollback = _Rollback(self.optimizers["critic"], self.scalers["critic"]) if self.sync_free else None
            ok = flags[0]
            for c_fake, c_real, c_mask in self._critic_inputs(batch, fake, critic_batches):
                with _autocast(self.runtime):
                    d_loss, gp = losses.critic_objective(self.critic_global, self.critic_patch, c_real, c_fake,
                                                         c_mask, cfg.lambda_gp, gen)
                ok = self._critic_update(d_loss, ok, rollback)
                flags.append(ok)
                logs["critic"], logs["gp"] = d_loss.detach(), gp.detach()  # the last update's values
            for m in self.critics.modules().values():
                m.requires_grad_(False)
            with _autocast(self.runtime):
                terms["adv"] = losses.generator_adv_loss(
                    (self.critic_global(fake) + self.critic_patch(fake, mask)).float())
            for m in self.critics.modules().values():
                m.requires_grad_(True)
            total = rec + cfg.lambda_adv * terms["adv"]
            flags.append(torch.isfinite(total.detach()))
        verdict = _all_ranks_min(torch.stack(flags).to(torch.int32)).tolist()  # the step's one host sync
        if not all(verdict):
            if rollback is not None:
                rollback.undo(verdict[1:-1])
            what = "reconstruction" if not verdict[0] else "critic" if not all(verdict[1:-1]) else "generator"
            return self._bad(what), out
        self._backward_step("generator", total)
        self.bad_in_row = 0
        self.finite_steps += 1
        logs.update({k: v.detach() for k, v in terms.items()})
        logs["loss"] = total.detach()
        return logs, out

    # ------------------------------------------------------------------------------------------------- run

    def run(self, position: tuple[str, int] | None = None) -> None:
        """Execute the plan from step 0, or from ``position`` = :meth:`restore`'s (stage, stage_step)."""
        cfg, rt = self.cfg, self.runtime
        logger = Logger(self.run_dir, cfg.tensorboard, keep_until=self.step, hparams=dataclasses.asdict(cfg),
                        history=self.history) if rt.main else None
        first = self.step
        bar = None
        if rt.main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.total_steps, initial=self.step, desc=cfg.model, dynamic_ncols=True)
        stop = StopRequest(enabled=rt.world == 1)
        try:
            done_before = 0
            for index, (stage, steps) in enumerate(cfg.plan()):
                if self.step >= done_before + steps:
                    done_before += steps
                    continue
                start = self.step - done_before
                self._make_optimizers(stage)
                pending = self._pending
                if pending is not None and position is not None and position[0] == stage and position[1] == start:
                    for k, o in self.optimizers.items():
                        if k in pending["optimizers"]:
                            o.load_state_dict(pending["optimizers"][k])
                    for k, s in self.scalers.items():
                        if k in pending["scalers"]:
                            s.load_state_dict(pending["scalers"][k])
                self._pending = None
                batch_size = cfg.batch_separate if stage == "separate" else cfg.batch_joint
                source = BatchSource(cfg, batch_size, rt, epoch_offset=1000 * index)
                self.raw_model.train()
                per_step = self.batches_per_step(stage)
                data = source.batches(start * per_step)
                base_lr = self.optimizers["generator"].defaults["lr"]  # the stage's rate (param groups get decayed)
                tic = time.perf_counter()
                for stage_step in range(start, steps):
                    lr = decayed_lr(base_lr, stage_step, steps, cfg.lr_decay)
                    for optimizer in self.optimizers.values():
                        for group in optimizer.param_groups:
                            group["lr"] = lr
                    batch = next(data)
                    logs, out = self.train_step(stage, batch, [next(data) for _ in range(per_step - 1)])
                    self.step += 1
                    now = time.perf_counter()
                    self.session["seconds"] += now - tic
                    self.session["steps"][1] = self.step
                    logs["images_per_s"] = batch_size * rt.world / max(now - tic, 1e-9)
                    logs["lr"] = lr
                    tic = now
                    self._periodic(stage, stage_step + 1, steps, logs, batch, out, logger, bar)
                    out_of_time = bool(cfg.max_minutes) and self.session["seconds"] >= 60 * cfg.max_minutes
                    if out_of_time or (stop.signal is not None and self.step < cfg.total_steps):
                        if logger is not None and self.step % max(cfg.log_every, 1):  # the last step is logged
                            logger.scalars(self.step, stage, {**scalars(logs), "bad_total": float(self.bad_total)})
                        if self.bad_in_row == 0:
                            self.save(stage, stage_step + 1)
                        self.stopped_by_budget, self.stopped_by = out_of_time, stop.signal
                        break
                if self.stopped_by_budget and rt.main:
                    print(f"stopped by max_minutes = {cfg.max_minutes:g} at step {self.step} of "
                          f"{cfg.total_steps}; resume to continue", flush=True)
                if self.stopped_by_budget or self.stopped_by is not None:
                    break
                done_before += steps
            if self.step > first and self.finite_steps == 0:
                raise BlindbenchError(f"no finite training step in {self.step - first} (every loss was NaN or inf): "
                                      f"check the learning rate and loss weights; nothing was saved")
        finally:
            stop.restore()
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()

    def _periodic(self, stage: str, stage_step: int, steps: int, logs: dict[str, Tensor | float], batch: dict,
                  out, logger: Logger | None, bar) -> None:
        cfg, step = self.cfg, self.step
        if bar is not None:
            bar.update(1)
        if (logger is not None or bar is not None) and (step % max(cfg.log_every, 1) == 0 or stage_step == steps):
            values = scalars(logs)  # the losses reach the host on log steps only (nanoGPT's habit)
            if bar is not None:
                shown = {k: f"{v:.3g}" for k, v in values.items() if k in ("loss", "bce", "l1", "critic",
                                                                              "images_per_s")}
                bar.set_postfix(stage=stage, **shown, refresh=False)
            if logger is not None:
                logger.scalars(step, stage, {**values, "bad_total": float(self.bad_total)})
        if self.runtime.main and cfg.sample_every and step % cfg.sample_every == 0:
            with torch.no_grad():
                grid = sample_grid(batch, type(out)(*(None if t is None else t.detach().float().cpu() for t in out)))
            write_grid(self.run_dir / "samples" / f"{stage}-{step:07d}.png", grid)
            if logger is not None:
                logger.image(step, stage, grid)
        if cfg.val_set and cfg.val_every and step % cfg.val_every == 0 and self.runtime.main:
            values = validate(cfg, self.raw_model, self.runtime)
            if logger is not None:
                logger.scalars(step, stage, values)
        due = (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or stage_step == steps
        if due and self.bad_in_row == 0:  # never overwrite the last good checkpoint after a skipped step
            self.save(stage, stage_step)


def run_train(cfg: TrainConfig) -> Path:
    """Train as ``cfg`` says; returns the run folder (config.toml, metrics.csv, checkpoints/, samples/)."""
    run_dir, resume = _resolve_run_dir(cfg)
    joined_before = torch.distributed.is_available() and torch.distributed.is_initialized()
    runtime = setup_runtime(cfg)
    try:
        trainer = Trainer(cfg, runtime, run_dir)
        position = trainer.restore(resume) if resume is not None else None
        with exclusive_folder(run_dir, "train") if runtime.main else nullcontext():
            if runtime.main:  # no file is touched before the model, data and checkpoint are known to fit
                save_config(cfg, run_dir / "config.toml")
            trainer.run(position)
        if trainer.stopped_by is not None:
            saved = "checkpoint saved" if trainer.bad_in_row == 0 else "no checkpoint (the last step was not finite)"
            raise TrainingStopped(f"stopped by {trainer.stopped_by.name} at step {trainer.step} of "
                                  f"{cfg.total_steps}, {saved}; continue with `blindbench train --resume {run_dir}`",
                                  128 + int(trainer.stopped_by))
    finally:
        if not joined_before and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # only a group this call joined
    return run_dir

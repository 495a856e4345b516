"""``blindbench eval``: score a model (or a reference method) on a benchmark set, one CSV row per sample.

An eval folder holds::

    eval.toml          the resolved config, plus the checkpoint's sha256 and the set's lock digest
    samples.csv        one row per sample (columns ``results.sample_columns``); written batch by batch
    set_metrics.toml   per-set metrics (``--iqa fid``)
    images/KEY.png     the restored image Ô (uint8, the levels the metrics saw)     } with --save-images
    masks/KEY.png      the predicted mask M̂ = sigmoid(logits) as 8-bit             }
    inputs/KEY.png, targets/KEY.png   I and O, so figures and the user study need no shards  }

Rows are appended only after a batch's images are written (each atomically), so a killed run leaves at most
a torn last line; a rerun with the same config drops it, skips the keys already scored and goes on. A rerun
with a different config into the same folder is refused rather than mixed in.

Reference methods need no training: ``input`` scores I itself as the output (the floor every method must
beat), ``oracle-telea`` is OpenCV's Telea inpainting given the true corrupted region (non-blind; the region is
every pixel the corruption touched, ``M̃ > 0``, because the soft blend alters a halo around the hard mask).
They have no predicted mask, so their mask columns are empty.

Metrics follow :mod:`blindbench.metrics` (SPEC §7): PSNR/SSIM on uint8-rounded RGB (and the YIQ-luma ``y``
convention beside them), the official unweighted mask BCE from logits against the hard mask, IoU/F1 at 0.5
and average precision. The columns, the metric table and the folder layout live in :mod:`blindbench.results`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from blindbench.checkpoint import checkpoint_file
from blindbench.commands.eval import EvalConfig
from blindbench.distributed import Ranks, joined_ranks
from blindbench.errors import BlindbenchError, ConfigError
from blindbench.imageio import atomic_write_bytes, encode_png, sha256_file
from blindbench.locking import exclusive_folder
from blindbench.options import resolved_toml, select_device
from blindbench.paths import data_root
from blindbench.plugins import is_external, load_external
from blindbench.results import COLUMNS, EvalFolder, format_value, metric_names, sample_columns
from blindbench.shards import find_lock

__all__ = ["COLUMNS", "EvalConfig", "EvalReport", "format_value", "run_eval", "score_batch", "summary_line",
           "telea_inpaint", "validate_config"]  # fmt: skip

TELEA_RADIUS = 3


def validate_config(cfg: EvalConfig) -> None:
    """One-line errors for inconsistent options (before any data is touched)."""
    from blindbench.models import get_entry

    if cfg.predictions:
        if cfg.checkpoint or cfg.pretrained:
            raise ConfigError("--predictions scores files: it takes no --checkpoint or --pretrained")
        if not cfg.label:
            raise ConfigError("--predictions needs --label NAME, the method's name in the CSV and the tables")
        if not Path(cfg.predictions).is_dir():
            raise ConfigError(f"predictions folder not found: {cfg.predictions}")
    elif cfg.allow_missing:
        raise ConfigError("--allow-missing applies to --predictions only")
    elif cfg.mask_source == "true" and cfg.is_reference:
        raise ConfigError(f"--mask-source true needs a model; {cfg.model!r} is a reference method")
    elif is_external(cfg.model):
        if cfg.pretrained:
            raise ConfigError("--pretrained names zoo weights of registered models only")
        if cfg.checkpoint and ":" not in cfg.model:  # as inpaint: a silently ignored checkpoint is a wrong result
            raise ConfigError(f"--checkpoint loads weights into a pkg.module:build model; {cfg.model} holds its own")
    elif not cfg.is_reference:
        get_entry(cfg.model)  # unknown name: one line with a suggestion
        if bool(cfg.checkpoint) == bool(cfg.pretrained):
            raise ConfigError(f"eval of model {cfg.model!r} needs --checkpoint (a training checkpoint or run folder) "
                              f"or --pretrained (zoo weights), one of them")
    elif cfg.checkpoint or cfg.pretrained:
        raise ConfigError(f"reference method {cfg.model!r} takes no --checkpoint or --pretrained")
    if cfg.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {cfg.batch}")
    if cfg.limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {cfg.limit}")
    if cfg.compile_min < 0:
        raise ConfigError(f"--compile-min must be >= 0, got {cfg.compile_min}")
    if not cfg.method.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"--label must be letters, digits, '-', '_' or '.', got {cfg.method!r}")
    from blindbench.iqa import parse_iqa

    metrics = parse_iqa(cfg.iqa)
    if "fid" in metrics and not cfg.save_images:
        raise ConfigError("--iqa fid compares folders of images: add --save-images")


# ------------------------------------------------------------------------------------------------ pure parts


def telea_inpaint(image: Tensor, region: Tensor, radius: int = TELEA_RADIUS) -> Tensor:
    """OpenCV Telea inpainting of ``region`` (B, 1, H, W) > 0 in ``image`` (B, 3, H, W) in [-1, 1]."""
    import cv2

    out = []
    for img, reg in zip(image, region, strict=True):
        rgb = ((img.detach().cpu().permute(1, 2, 0).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
        mask = (reg[0].detach().cpu().numpy() > 0).astype(np.uint8) * 255
        filled = cv2.inpaint(np.ascontiguousarray(rgb), mask, radius, cv2.INPAINT_TELEA)
        out.append(torch.from_numpy(filled).permute(2, 0, 1).float().div(127.5).sub(1.0))
    return torch.stack(out).to(image)


def score_batch(
    restored: Tensor, target: Tensor, hard_mask: Tensor, mask_logits: Tensor | None, image: Tensor | None = None
) -> dict[str, Tensor]:
    """Per-sample metrics of a batch: images in [-1, 1] (B, 3, H, W), masks (B, 1, H, W) with 1 = damaged.

    With the corrupted ``image`` I and mask logits, ``psnr_composite`` / ``ssim_composite`` score the official
    composite ``Ô ⊙ M̂ + I ⊙ (1 − M̂)`` (input pixels kept where the MPN sees no damage); without logits the
    composite is the raw output.

    Returns a dict of (B,) float64 CPU tensors; the mask columns are absent when ``mask_logits`` is None, the
    composite ones when ``image`` is None.
    """
    from blindbench.metrics import (
        mask_average_precision,
        mask_bce_from_logits,
        mask_f1,
        mask_iou,
        psnr,
        ssim,
    )

    pred = ((restored.detach().float().cpu().nan_to_num(0.0) + 1.0) / 2.0).clamp(0, 1)  # (B, 3, H, W) in [0, 1]
    real = ((target.detach().float().cpu() + 1.0) / 2.0).clamp(0, 1)
    hard = hard_mask.detach().float().cpu()
    values = {
        "mask_area": hard.mean(dim=(1, 2, 3)).double(),
        "psnr": psnr(pred, real).double(),
        "ssim": ssim(pred, real).double(),
        "psnr_y": psnr(pred, real, convention="y").double(),
        "ssim_y": ssim(pred, real, convention="y").double(),
    }
    if image is not None:
        blended = pred
        if mask_logits is not None:
            from vcn.types import InpaintOutput, composite

            raw = restored.detach().float().cpu().nan_to_num(0.0)
            logits = mask_logits.detach().float().cpu().nan_to_num(0.0, posinf=1e4, neginf=-1e4)
            blended = ((composite(image.detach().float().cpu(), InpaintOutput(logits, raw)) + 1.0) / 2.0).clamp(0, 1)
        values |= {"psnr_composite": psnr(blended, real).double(), "ssim_composite": ssim(blended, real).double()}
    if mask_logits is not None:
        logits = mask_logits.detach().float().cpu().nan_to_num(0.0, posinf=1e4, neginf=-1e4)
        prob = torch.sigmoid(logits)
        values |= {
            "bce": mask_bce_from_logits(logits, hard).double(),
            "iou": mask_iou(prob, hard).double(),
            "f1": mask_f1(prob, hard).double(),
            "ap": mask_average_precision(prob, hard).double(),
        }
    return values


# ------------------------------------------------------------------------------------------------ the folder


def default_out(cfg: EvalConfig, set_name: str) -> Path:
    return data_root() / "evals" / f"{cfg.method}-{set_name}"


def _identity(cfg: EvalConfig, set_name: str, checkpoint_sha: str, lock_sha: str, device: str) -> dict[str, Any]:
    """What decides the rows: a rerun into the same folder must agree on all of it (``limit`` may grow).

    The checkpoint counts by content (sha256), not by the path it was given as; the precision counts because
    bf16 shifts the scores; ``save_images`` counts so that a folder never holds images for only some rows.
    """
    precision = "bf16" if cfg.amp and device == "cuda" else "fp32"
    return {
        "method": cfg.method, "model": cfg.model_name, "mask_source": cfg.mask_source,
        "checkpoint_sha256": checkpoint_sha, "set": set_name,
        "set_lock_sha256": lock_sha, "iqa": cfg.iqa, "save_images": cfg.save_images, "precision": precision,
    }  # fmt: skip


def _toml_text(cfg: EvalConfig, identity: dict[str, Any]) -> str:
    return resolved_toml(cfg, "eval", table="config", records={"identity": identity})


def _read_done(csv_path: Path) -> set[str]:
    """Keys already scored; a torn last line (killed mid-write) is cut off the file.

    Anything that does not start with our header line is refused untouched.
    """
    if not csv_path.is_file():
        return set()
    data = csv_path.read_bytes()
    if not data:
        return set()
    header = ",".join(sample_columns()).encode()
    first = data.split(b"\n", 1)[0]
    if not first.startswith(header) or b"\n" not in data:
        shown = first[:80].decode(errors="replace")
        raise BlindbenchError(f"{csv_path} is not a blindbench eval CSV (first line {shown!r})")
    if not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        with open(csv_path, "r+b") as handle:
            handle.truncate(len(data))
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise BlindbenchError(f"{csv_path} is not a blindbench eval CSV (not UTF-8 text)") from None
    return {row["key"] for row in csv.DictReader(io.StringIO(text))}


def _check_folder(out: Path, identity: dict[str, Any]) -> set[str]:
    """Keys already scored in ``out``; an earlier eval of something else there is a one-line error.

    A folder whose CSV holds no rows yet (a run that failed while setting up) may be taken over.
    """
    if out.exists() and not out.is_dir():
        raise BlindbenchError(f"--out {out} is a file, not a folder")
    folder = EvalFolder(out)
    done = _read_done(folder.samples)
    config_path = folder.config
    if done and not config_path.is_file():  # rows of an unknown checkpoint: never mix this run's rows in
        raise BlindbenchError(f"{out} holds scored rows but no eval.toml, so what scored them is unknown; choose "
                              f"another --out or delete the folder")
    if config_path.is_file() and done:
        try:
            stored = tomllib.loads(config_path.read_text()).get("identity", {})
            stored.setdefault("mask_source", "predicted")  # folders scored before non-blind eval existed
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BlindbenchError(f"cannot read {config_path}: {exc}") from None
        if stored != identity:
            changed = sorted(k for k in identity if stored.get(k) != identity[k])
            raise BlindbenchError(
                f"{out} holds an eval with other {', '.join(changed)}; choose another --out or delete the folder"
            )
    return done


def _lock_digest(spec, folder: Path, verify: bool) -> str:
    """sha256 of the set's lock (committed, else beside the shards), after checking the shards against it.

    Without ``verify`` the digest is prefixed ``unverified:`` so the identity says what was (not) checked.
    """
    from blindbench.shards import verify_set

    if not verify:
        lock = find_lock(spec, folder)
        return "unverified:" + (sha256_file(lock) if lock.is_file() else "")
    report = verify_set(spec, folder)
    if not report.ok:
        raise BlindbenchError(
            f"shards in {folder} do not match {report.lock_path}: {report.problems[0]}"
            + (f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else "")
            + "; regenerate the set or pass --no-verify"
        )
    return sha256_file(report.lock_path)


# ------------------------------------------------------------------------------------------------- the runner


@dataclass
class EvalReport:
    out_dir: Path
    scored: int
    skipped: int
    seconds: float
    means: dict[str, float]
    set_metrics: dict[str, float]

    @property
    def images_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else float("nan")


def prediction_files(folder: Path, keys: list[str]) -> tuple[dict[str, Path], dict[str, Path], list[str]]:
    """(images, masks, missing keys) of a predictions folder; a file that names no key is a one-line error."""
    images = {p.name.removesuffix(".png"): p for p in folder.glob("*.png") if not p.name.endswith(".mask.png")}
    masks = {p.name.removesuffix(".mask.png"): p for p in folder.glob("*.mask.png")}
    wanted = set(keys)
    others = sorted(p.name for p in folder.iterdir() if p.is_file() and not (
        p.name.removesuffix(".mask.png") in wanted and p.name.endswith(".mask.png")
        or p.name.removesuffix(".png") in wanted and p.name.endswith(".png")))  # fmt: skip
    if others:
        raise BlindbenchError(f"{folder}: {others[0]} names no sample of the set (expected KEY.png and optional "
                              f"KEY.mask.png{f'; {len(others) - 1} more' if len(others) > 1 else ''})")
    if masks and set(masks) != set(images):
        key = sorted(set(images) ^ set(masks))[0]
        raise BlindbenchError(f"{folder}: give a predicted mask for every image or for none ({key} differs)")
    return images, masks, [k for k in keys if k not in images]


def predictions_digest(images: dict[str, Path], masks: dict[str, Path]) -> str:
    """The identity of a predictions folder: sha256 over every file's name and bytes."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted([*images.values(), *masks.values()], key=lambda p: p.name):
        digest.update(f"{path.name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _read_prediction(path: Path, key: str, shape: tuple[int, int], grey: bool) -> np.ndarray:
    from blindbench.imageio import read_image

    try:
        array = read_image(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure names the key
        raise BlindbenchError(f"prediction of {key}: cannot read {path} ({str(exc).splitlines()[0]})") from None
    if array.shape[:2] != shape:
        raise BlindbenchError(f"prediction of {key}: {path} is {array.shape[1]}x{array.shape[0]}, the sample is "
                              f"{shape[1]}x{shape[0]}")  # fmt: skip
    if grey:
        return array.max(axis=2) if array.ndim == 3 else array
    return np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]


def _files_predictor(images: dict[str, Path], masks: dict[str, Path]) -> Callable[[dict], tuple]:
    def predict(batch: dict) -> tuple[Tensor, Tensor | None]:
        shape = tuple(batch["target"].shape[-2:])
        restored = torch.stack([torch.from_numpy(_read_prediction(images[k], k, shape, False).astype(np.float32))
                                .permute(2, 0, 1) / 127.5 - 1.0 for k in batch["key"]])  # fmt: skip
        if not masks:
            return restored, None
        prob = torch.stack([torch.from_numpy(_read_prediction(masks[k], k, shape, True).astype(np.float64))[None]
                            / 255.0 for k in batch["key"]]).clamp(1e-7, 1 - 1e-7)  # fmt: skip
        return restored, torch.logit(prob).float()

    return predict


def _predictor(cfg: EvalConfig, device: torch.device, todo: int = 0) -> Callable[[dict], tuple[Tensor, Tensor | None]]:
    """A function batch → (restored image, mask logits or None) for the configured method (not --predictions).

    On CPU a registered model runs compiled (`blindbench.fastpath`) when ``todo`` samples reach ``compile_min``.
    """
    if cfg.model == "input":
        return lambda batch: (batch["input"], None)
    if cfg.model == "oracle-telea":
        return lambda batch: (telea_inpaint(batch["input"], batch["soft_mask"]), None)

    if is_external(cfg.model):
        model = load_external(cfg.model, cfg.checkpoint, map_location=device)
    elif cfg.pretrained:
        from blindbench.zoo import load_pretrained

        model = load_pretrained(cfg.model, cfg.pretrained, map_location=device)
    else:
        from blindbench.checkpoint import load_model_from_checkpoint

        model, _ = load_model_from_checkpoint(cfg.checkpoint, name=cfg.model, map_location=device)
    if device.type == "cpu" and not cfg.eager and not is_external(cfg.model) and todo >= cfg.compile_min:
        from blindbench.fastpath import compiler_available, prepare_for_inference

        if compiler_available():
            print(f"eval {cfg.method}: {todo} samples to score: compiling the model for CPU once (--eager skips it)",
                  file=sys.stderr)
            model = prepare_for_inference(model)
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        if device.type == "cuda" and cfg.amp
        else nullcontext()
    )

    @torch.inference_mode()
    def predict(batch: dict) -> tuple[Tensor, Tensor | None]:
        guide = batch["mask"].to(device) if cfg.mask_source == "true" else None  # non-blind: the true mask
        with amp:
            out = model(batch["input"].to(device, non_blocking=True), mask=guide)
        logits = None if out.mask_logits is None or guide is not None else out.mask_logits.float().cpu()
        return out.image.float().cpu(), logits

    return predict


def _batches(cfg: EvalConfig, urls: list[str], done: set[str], ranks: Ranks | None = None) -> Iterator[dict]:
    """Batches of this rank's not-yet-scored samples in file order (``limit`` counts all samples, scored or not).

    Every rank reads every sample; the ``j``-th one still to score is rank ``j % world``'s, so a resumed run
    shares what is left evenly too.
    """
    from blindbench.loader import collate, shard_dataset

    ranks = ranks or Ranks()
    pending: list[dict] = []
    seen: set[str] = set()
    todo = 0
    # every sample, whatever WORLD_SIZE/RANK the environment holds: the share is dealt here, not by shard
    for index, sample in enumerate(shard_dataset(urls, split_nodes=False)):
        if cfg.limit and index >= cfg.limit:
            break
        if sample["key"] in seen:
            raise BlindbenchError(f"sample {sample['key']} occurs twice in the shards of {cfg.set}")
        seen.add(sample["key"])
        if sample["key"] in done:
            continue
        todo += 1
        if not ranks.mine(todo - 1):
            continue
        pending.append(sample)
        if len(pending) == cfg.batch:
            yield collate(pending)
            pending = []
    if pending:
        yield collate(pending)


def _save_images(out: Path, batch: dict, restored: Tensor, logits: Tensor | None) -> None:
    from blindbench.metrics import to_uint8_levels

    def rgb(t: Tensor) -> np.ndarray:  # (3, H, W) in [-1, 1] → uint8 (H, W, 3), the metrics' rounding
        levels = to_uint8_levels(((t.float().nan_to_num(0.0) + 1.0) / 2.0).clamp(0, 1)[None])[0]
        return levels.permute(1, 2, 0).to(torch.uint8).numpy()

    folder = EvalFolder(out)
    for i, key in enumerate(batch["key"]):
        files = {
            "images": rgb(restored[i]),
            "inputs": rgb(batch["input"][i]),
            "targets": rgb(batch["target"][i]),
        }
        if logits is not None:
            files["masks"] = (torch.sigmoid(logits[i, 0]) * 255.0).round().to(torch.uint8).numpy()
        for kind, array in files.items():
            atomic_write_bytes(folder.image(kind, key), encode_png(array), durable=False)
    os.sync()  # one flush for the batch's files (an fsync per file costs more than the model on a slow disk)


def run_eval(cfg: EvalConfig) -> EvalReport:
    """Score ``cfg.model`` on ``cfg.set``; returns the folder, counts, speed and the means of this run's rows.

    Under ``torchrun`` each rank scores a disjoint share of the samples and rank 0 writes every row (see
    :mod:`blindbench.distributed`); every rank returns the same report.
    """
    with joined_ranks() as ranks:
        return _run_eval_ranks(cfg, ranks)


def _prepare(cfg: EvalConfig, ranks: Ranks) -> tuple:
    """What a run needs before it touches the folder: set, shards, the checkpoint's digest, device, folder."""
    from blindbench.loader import shard_urls
    from blindbench.paths import set_dir
    from blindbench.sets import load_set

    validate_config(cfg)
    spec = load_set(cfg.set)
    folder = Path(cfg.shards) if cfg.shards else set_dir(spec.name)
    urls = shard_urls(spec, folder)
    checkpoint_sha = ""
    skip: set[str] = set()
    files = None
    if cfg.predictions:
        from blindbench.shards import sample_key

        keys = [sample_key(spec, i) for i in range(min(spec.count, cfg.limit) if cfg.limit else spec.count)]
        images, masks, missing = prediction_files(Path(cfg.predictions), keys)
        if missing and not cfg.allow_missing:
            raise BlindbenchError(f"{cfg.predictions}: no prediction for {missing[0]}"
                                  f"{f' and {len(missing) - 1} more keys' if len(missing) > 1 else ''} "
                                  f"(--allow-missing scores the rest)")  # fmt: skip
        if missing and ranks.main:
            print(f"eval {cfg.method}: {len(missing)} of {len(keys)} keys have no prediction and are not scored")
        skip, files = set(missing), (images, masks)
        checkpoint_sha = "predictions:" + predictions_digest(images, masks)
    elif cfg.pretrained:
        from blindbench.zoo import entry_dir, read_card

        checkpoint_sha = read_card(cfg.pretrained, cfg.model)["weights_sha256"]
        if not (entry_dir(cfg.pretrained, cfg.model) / "weights.pt").is_file():
            raise BlindbenchError(f"zoo weights missing: {entry_dir(cfg.pretrained, cfg.model) / 'weights.pt'}")
    elif is_external(cfg.model):
        target = Path(cfg.model) if cfg.model.endswith((".pt", ".ts", ".pt2")) else Path(cfg.checkpoint or "")
        checkpoint_sha = f"external:{cfg.model}:" + (sha256_file(target) if target.is_file() else "")
    elif not cfg.is_reference:
        path = checkpoint_file(cfg.checkpoint)
        if not path.is_file():
            raise BlindbenchError(f"checkpoint not found: {path}")
        checkpoint_sha = sha256_file(path)
    device = ranks.device(select_device(cfg.device))
    out = Path(cfg.out) if cfg.out else default_out(cfg, spec.name)
    if out.exists() and not out.is_dir():
        raise BlindbenchError(f"--out {out} is a file, not a folder")
    return spec, folder, urls, checkpoint_sha, device, out, skip, files


def _run_eval_ranks(cfg: EvalConfig, ranks: Ranks) -> EvalReport:
    # a failure on one rank (a missing file, a bad lock) stops every rank: none is left waiting
    spec, folder, urls, checkpoint_sha, device, out, skip, files = ranks.agree(lambda: _prepare(cfg, ranks))
    # the shards are checked once, by rank 0; the identity holds the device type, the same on every rank
    lock_sha = ranks.broadcast(ranks.agree(lambda: _lock_digest(spec, folder, cfg.verify) if ranks.main else None))
    identity = _identity(cfg, spec.name, checkpoint_sha, lock_sha, device.type)
    with ExitStack() as claimed:

        def claim() -> tuple[set[str], Callable, Any]:
            done: set[str] = set()
            if ranks.main:  # a second eval into the same folder: one line, not a torn CSV
                claimed.enter_context(exclusive_folder(out, "eval"))
                done = _check_folder(out, identity)
            # everything that can fail while setting up happens before eval.toml claims the folder
            from blindbench.iqa import IqaMetrics

            todo = (min(spec.count, cfg.limit) if cfg.limit else spec.count) - len(done) - len(skip)
            predict = _files_predictor(*files) if files is not None else _predictor(cfg, device, todo)
            iqa = IqaMetrics(cfg.iqa, cfg.iqa_weights, device)
            return done, predict, iqa

        done, predict, iqa = ranks.agree(claim)

        def record() -> None:
            if ranks.main:
                atomic_write_bytes(EvalFolder(out).config, _toml_text(cfg, identity).encode())

        ranks.agree(record)
        done = ranks.broadcast(done)
        return _score(cfg, ranks, spec, folder, urls, out, done, skip, predict, iqa)


def _score(cfg: EvalConfig, ranks: Ranks, spec, folder: Path, urls: list[str], out: Path, done: set[str],
           skip: set[str], predict: Callable, iqa) -> EvalReport:
    """Score this rank's share batch by batch; rank 0 appends every rank's rows once all of them are ready."""
    from tqdm import tqdm

    total = (min(spec.count, cfg.limit) if cfg.limit else spec.count) - len(skip)
    run = EvalFolder(out)
    csv_path = run.samples
    new_file = not done  # no scored row yet: (re)write the header, which may name other --iqa columns
    columns = sample_columns(iqa.per_sample_names)
    averaged = [c for c in columns if c in metric_names("sample")]  # the metric columns: this run's means
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    scored = 0
    start = time.perf_counter()
    batches = _batches(cfg, urls, done | skip, ranks)
    with (
        open(csv_path, "w" if new_file else "a", newline="") if ranks.main else nullcontext() as handle,
        tqdm(total=total, initial=len(done), desc=f"eval {cfg.method} on {spec.name}", unit="img",
             disable=not cfg.progress or not ranks.main, dynamic_ncols=True) as bar,
    ):  # fmt: skip
        writer = csv.writer(handle, lineterminator="\n") if ranks.main else None
        if new_file and writer is not None:
            writer.writerow(columns)
        while True:
            # this rank's next batch, scored and its images saved: a list of rows, or None when it has no more
            rows = ranks.agree(lambda: _score_next(cfg, spec, out, batches, predict, iqa))
            shares = ranks.gather(rows) if ranks.world > 1 else [rows]
            if all(share is None for share in shares):
                break
            for row in (row for share in shares if share is not None for row in share):
                if writer is not None:
                    writer.writerow([format_value(row.get(c)) for c in columns])
                for name in averaged:
                    value = row.get(name)
                    if isinstance(value, float) and math.isfinite(value):
                        sums[name] = sums.get(name, 0.0) + value
                        counts[name] = counts.get(name, 0) + 1
                scored += 1
                bar.update(1)
            if handle is not None:
                handle.flush()
                os.fsync(handle.fileno())
            bar.set_postfix({k: f"{sums[k] / counts[k]:.3g}" for k in ("psnr", "ssim", "bce") if k in counts})
    seconds = time.perf_counter() - start

    def finish() -> dict[str, float]:
        if scored + len(done) < total:
            raise BlindbenchError(
                f"only {scored + len(done)} of {total} samples of {spec.name} were found in {folder}; rows so far are "
                f"in {csv_path}"
            )
        if not (ranks.main and cfg.save_images):
            return {}
        set_metrics = iqa.per_set(out / "images", out / "targets")
        if set_metrics:
            lines = [f"{k} = {v!r}" for k, v in set_metrics.items()]
            atomic_write_bytes(run.set_metrics_file, ("\n".join(lines) + "\n").encode())
        return set_metrics

    set_metrics = ranks.broadcast(ranks.agree(finish))
    means = {k: sums[k] / counts[k] for k in sums}
    return EvalReport(out, scored, len(done), seconds, means, set_metrics)


def _score_next(cfg: EvalConfig, spec, out: Path, batches: Iterator[dict], predict: Callable,
                iqa) -> list[dict] | None:
    """Score the next batch of ``batches`` (saving its images first): its CSV rows, or None when there is none."""
    batch = next(batches, None)
    if batch is None:
        return None
    restored, logits = predict(batch)
    values = score_batch(restored, batch["target"], batch["mask"], logits, batch["input"])
    values |= iqa.per_sample(restored, batch["target"])
    if cfg.save_images:
        _save_images(out, batch, restored, logits)
    return [
        {
            "method": cfg.method, "model": cfg.model_name, "set": spec.name,
            "checkpoint": f"zoo:{cfg.pretrained}" if cfg.pretrained else cfg.checkpoint or cfg.predictions,
            "key": key, "pattern": batch["pattern"][i],
        } | {name: float(v[i]) for name, v in values.items()}
        for i, key in enumerate(batch["key"])
    ]  # fmt: skip


def summary_line(cfg: EvalConfig, report: EvalReport) -> str:
    parts = [f"{k} {report.means[k]:.4g}" for k in ("bce", "psnr", "ssim", "iou", "f1") if k in report.means]
    parts += [f"{k} {v:.4g}" for k, v in report.set_metrics.items()]
    speed = f"{report.images_per_second:.1f} images/s" if report.scored else "nothing new to score"
    kept = f", {report.skipped} kept from an earlier run" if report.skipped else ""
    return (
        f"eval {cfg.method}: {report.scored} samples scored{kept} ({speed}) → {EvalFolder(report.out_dir).samples}"
        + (f"\n  this run's means: {', '.join(parts)}" if parts else "")
    )

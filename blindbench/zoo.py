"""The model zoo: weights trained by blindbench itself, each with the card that says how.

One entry per corpus and model, ``zoo/<corpus>/<model>/``::

    train.toml     the exact training config: ``blindbench train --config zoo/photos/vcn/train.toml`` reproduces it
    weights.pt     the model's weights only (fp16), read with ``torch.load(weights_only=True)``
    metrics.csv    the training run's scalars (loss, validation per pattern, ...)
    card.json      steps, images seen, hardware, wall time, the weights' sha256 and the photos-demo scores
    card.md        the same, for people
    resume.pt      while the run is unfinished: the full resumable checkpoint (optimisers, critics, RNG states)

``create_model("vcn", pretrained="photos")`` (timm's habit) and ``--pretrained photos`` on ``eval`` and ``inpaint``
load an entry; a missing entry, a weights file that differs from the card's sha256 or weights that are not finite
are one-line errors. Nothing is ever downloaded: the weights ship in the repository.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from blindbench.checkpoint import (
    check_weights,
    checkpoint_file,
    load_checkpoint,
    read_weights,
    retired_keys,
    weights_digest,
)
from blindbench.commands.zoo import WEIGHT_FORMATS, ExportWeightsConfig, ZooPublishConfig
from blindbench.errors import BlindbenchError
from blindbench.imageio import atomic_write_bytes, sha256_file

WEIGHTS_FORMAT = "blindbench-weights-1"
CARD_FORMAT = 1


def zoo_root() -> Path:
    """``$BLINDBENCH_ZOO`` or the repository's ``zoo/`` folder."""
    override = os.environ.get("BLINDBENCH_ZOO")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "zoo"


def entry_dir(name: str, model: str) -> Path:
    return zoo_root() / name / model


def available(name: str | None = None) -> list[tuple[str, str]]:
    """(corpus, model) of every entry with published weights."""
    root = zoo_root()
    cards = sorted(root.glob(f"{name or '*'}/*/card.json")) if root.is_dir() else []
    return [(p.parent.parent.name, p.parent.name) for p in cards]


def read_card(name: str, model: str) -> dict[str, Any]:
    """The card of an entry; a missing or unreadable card is a one-line error naming what exists."""
    path = entry_dir(name, model) / "card.json"
    if not path.is_file():
        known = ", ".join(f"{c}/{m}" for c, m in available()) or "none"
        raise BlindbenchError(f"no pretrained {model!r} weights for {name!r} in the zoo ({path}); published: {known}")
    try:
        card = json.loads(path.read_text())
        if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
            raise ValueError("unknown card format")
        card["weights"], card["weights_sha256"], card["preset"]  # noqa: B018 - the keys a load needs
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BlindbenchError(f"corrupt zoo card {path} ({type(exc).__name__}: {exc})") from None
    return card


def load_pretrained(model: str, name: str, map_location: str | torch.device = "cpu") -> nn.Module:
    """The zoo's ``model`` trained on ``name``, in eval mode, float32.

    Raises:
        BlindbenchError: one line when the entry is missing, the weights file differs from its card's sha256, is
            unreadable, holds another model, or holds weights that are not finite.
    """
    from blindbench.checkpoint import load_weights
    from blindbench.models import create_model

    card = read_card(name, model)
    path = entry_dir(name, model) / card["weights"]
    if not path.is_file():
        raise BlindbenchError(f"zoo weights missing: {path} (its card is there: restore the file from git)")
    if sha256_file(path) != card["weights_sha256"]:
        raise BlindbenchError(f"zoo weights {path} do not match the sha256 on their card: the file is damaged")
    blob = read_weights(path, "zoo weights")
    if blob.get("format") != WEIGHTS_FORMAT or blob.get("model_name") != model:
        raise BlindbenchError(f"{path} is not a blindbench weights file of {model!r}")
    network = create_model(model, card["preset"])
    load_weights(network, blob["model"], f"zoo weights {path} do not fit model {model!r}")
    return network.to(map_location).eval()


def export_weights(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], half: bool = True,
                   fmt: str = "pt") -> str:
    """Write a checkpoint's model weights alone (fp16 unless ``half`` is False); returns the file's sha256.

    Parameters the model has retired (see :func:`blindbench.checkpoint.retired_keys`) are left out.

    ``fmt="pt"`` writes a ``torch.save`` dict (``format``, ``model_name``, ``preset``, ``step``, ``model``,
    ``model_sha256``); ``fmt="safetensors"`` writes the tensors with the same facts as string metadata. Both load
    with :func:`blindbench.checkpoint.read_weights` (digest and finite checks), e.g. for ``train --init``.
    """
    if fmt not in WEIGHT_FORMATS:
        raise BlindbenchError(f"weights format {fmt!r} is not one of {', '.join(WEIGHT_FORMATS)}")
    state = load_checkpoint(checkpoint)
    check_weights(state["model"], state.get("model_sha256"), f"checkpoint {checkpoint}")
    from blindbench.models import create_model

    with torch.device("meta"):  # only its names: which stored parameters the model has retired
        retired = set(retired_keys(create_model(state["model_name"], state["preset"]), state["model"]))
    weights = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state["model"].items()
               if k not in retired}  # fmt: skip
    check_weights(weights, None, f"checkpoint {checkpoint} in fp16")  # a weight beyond fp16's range
    meta = {"format": WEIGHTS_FORMAT, "model_name": state["model_name"], "preset": state["preset"],
            "step": state["step"], "model_sha256": weights_digest(weights)}  # fmt: skip
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if fmt == "safetensors":
            from safetensors.torch import save_file

            # own storage per tensor: safetensors refuses tensors that share memory (tied weights)
            save_file({k: v.clone() for k, v in weights.items()}, tmp, {k: str(v) for k, v in meta.items()})
        else:
            torch.save({**meta, "model": weights}, tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sha256_file(out)


def default_weights_path(run: str | os.PathLike[str], fmt: str) -> Path:
    """Where ``export-weights`` writes by default: ``<run>/weights.<fmt>``, or ``<name>.weights.<fmt>`` beside a
    checkpoint file."""
    run = Path(run)
    return run / f"weights.{fmt}" if run.is_dir() else run.with_name(f"{run.stem}.weights.{fmt}")


def run_export_weights(cfg: ExportWeightsConfig) -> Path:
    """``blindbench export-weights``: the run's model weights in ``cfg.format``; prints what was written."""
    if not cfg.run:
        raise BlindbenchError("give the training run folder or checkpoint file: blindbench export-weights RUN")
    source = checkpoint_file(cfg.run)
    out = Path(cfg.out) if cfg.out else default_weights_path(cfg.run, cfg.format)
    if out.suffix != f".{cfg.format}":
        raise BlindbenchError(f"--out {out} does not end in .{cfg.format} (--format {cfg.format})")
    if out.resolve() == source.resolve():
        raise BlindbenchError(f"--out {out} is the checkpoint itself: name another file")
    sha = export_weights(source, out, half=cfg.half, fmt=cfg.format)
    blob = read_weights(out, "exported weights")  # read back through the loader that train --init uses
    size, whole = out.stat().st_size, source.stat().st_size
    print(f"weights of {blob['model_name']} ({blob['preset']}, step {blob['step']}): {out} ({size / 2**20:.2f} MiB "
          f"of {whole / 2**20:.2f} MiB for the checkpoint; sha256 {sha[:12]})")  # fmt: skip
    return out


def _eval_summary(samples_csv: Path) -> dict[str, Any]:
    """Means of an eval's samples.csv, overall and per corruption pattern."""
    metrics = ("bce", "psnr", "ssim", "psnr_composite", "ssim_composite")
    groups: dict[str, dict[str, list[float]]] = {}
    with samples_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for group in ("all", row["pattern"]):
                for m in metrics:
                    if row.get(m):
                        groups.setdefault(group, {}).setdefault(m, []).append(float(row[m]))
    return {g: {m: round(sum(v) / len(v), 6) for m, v in values.items()} | {"n": len(values["psnr"])}
            for g, values in groups.items()}  # fmt: skip


def publish(run_dir: str | os.PathLike[str], name: str, eval_dirs: dict[str, Path] | None = None,
            finished: bool = True) -> Path:
    """Write (or refresh) the zoo entry of a training run: weights, metrics, card; ``resume.pt`` while unfinished.

    Args:
        run_dir: the training run folder (``checkpoints/last.pt``, ``metrics.csv``, ``config.toml``).
        name: corpus name of the entry (``photos``).
        eval_dirs: set name -> eval folder of these weights, summarised on the card.
        finished: the run reached its planned steps: drop ``resume.pt``; otherwise keep a copy of the checkpoint.
    """
    from blindbench.models import count_parameters, create_model

    run_dir = Path(run_dir)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    model, config = state["model_name"], state["config"]
    folder = entry_dir(name, model)
    folder.mkdir(parents=True, exist_ok=True)
    digest = export_weights(run_dir / "checkpoints" / "last.pt", folder / "weights.pt")
    shutil.copyfile(run_dir / "metrics.csv", folder / "metrics.csv")
    if (run_dir / "loss-curve.png").is_file():
        shutil.copyfile(run_dir / "loss-curve.png", folder / "loss-curve.png")
    resume = folder / "resume.pt"
    if finished:
        resume.unlink(missing_ok=True)
    else:
        shutil.copyfile(run_dir / "checkpoints" / "last.pt", resume)
    sessions = state.get("sessions", [])
    steps = {"separate": config["steps_separate"], "joint": config["steps_joint"]}
    done_sep = min(state["step"], steps["separate"]) if config["stage"] != "joint" else 0
    done_joint = state["step"] - done_sep
    per_joint = 1 + (config["critic_steps"] if config.get("critic_batches") == "fresh" else 0)
    images = done_sep * config["batch_separate"] + done_joint * config["batch_joint"] * per_joint
    card = {
        "format": CARD_FORMAT,
        "model": model,
        "preset": state["preset"],
        "parameters": count_parameters(create_model(model, state["preset"])),
        "corpus": name,
        "train_set": config["set"],
        "weights": "weights.pt",
        "weights_dtype": "float16",
        "weights_sha256": digest,
        "finished": finished,
        "steps_done": state["step"],
        "steps_planned": steps,
        "images_seen": images,
        "crop": config.get("crop_size") or config.get("image_size") or 256,
        "train_seconds": round(sum(s.get("seconds", 0.0) for s in sessions), 1),
        "sessions": sessions,
        "config_sha256": hashlib.sha256((folder / "train.toml").read_bytes()).hexdigest()
        if (folder / "train.toml").is_file() else None,
        "eval": {s: _eval_summary(Path(d) / "samples.csv") for s, d in (eval_dirs or {}).items()},
    }
    atomic_write_bytes(folder / "card.json", (json.dumps(card, indent=1) + "\n").encode())
    atomic_write_bytes(folder / "card.md", card_markdown(card).encode())
    return folder


def card_markdown(card: dict[str, Any]) -> str:
    """The card for people: what was trained, how long, on what, and how it scores per pattern."""
    hours = card["train_seconds"] / 3600
    hardware = "; ".join(sorted({f"{s.get('device')} × {s.get('threads')} thread(s), {s.get('cpu')}"
                                 for s in card["sessions"]})) or "unknown"  # fmt: skip
    lines = [
        f"# zoo/{card['corpus']}/{card['model']}",
        "",
        f"- model: `{card['model']}`, preset `{card['preset']}`, {card['parameters']:,} parameters",
        f"- trained by blindbench on `{card['train_set']}`: {card['steps_done']:,} of "
        f"{sum(card['steps_planned'].values()):,} planned steps ({card['steps_planned']['separate']:,} separate + "
        f"{card['steps_planned']['joint']:,} joint){'' if card['finished'] else ' — unfinished, resumable'}",
        f"- images seen: {card['images_seen']:,} ({card['crop']}² crops)",
        f"- training time: {hours:.2f} h in {len(card['sessions'])} session(s) on {hardware}",
        f"- weights: `{card['weights']}` ({card['weights_dtype']}), sha256 `{card['weights_sha256']}`",
        f"- reproduce: `blindbench train --config zoo/{card['corpus']}/{card['model']}/train.toml`",
    ]
    for set_name, groups in card["eval"].items():
        lines += ["", f"## {set_name}", "", "| pattern | n | BCE ↓ | PSNR ↑ | SSIM ↑ | PSNR-C ↑ | SSIM-C ↑ |",
                  "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        order = ["all", *sorted(g for g in groups if g != "all")]
        for group in order:
            g = groups[group]
            cells = [f"{g[m]:.{d}f}" if m in g else "–" for m, d in
                     (("bce", 3), ("psnr", 2), ("ssim", 4), ("psnr_composite", 2), ("ssim_composite", 4))]
            lines.append(f"| {group} | {g['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_publish(cfg: ZooPublishConfig) -> Path:
    """Score the run's weights on ``cfg.set`` (as they ship: fp16), draw the loss curve, write the entry."""
    from blindbench.evaluate import EvalConfig, run_eval
    from blindbench.figures import loss_curve
    from blindbench.paths import data_root

    if not cfg.run:
        raise BlindbenchError("give the training run folder with --run")
    run = Path(cfg.run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    config = state["config"]
    both = config["steps_separate"] + config["steps_joint"]
    planned = {"separate": config["steps_separate"], "joint": config["steps_joint"]}.get(config["stage"], both)
    finished = state["step"] >= planned
    if not finished and not cfg.unfinished:
        raise BlindbenchError(f"{run} stopped at step {state['step']} of {planned}: finish it (train --resume) or "
                              f"pass --unfinished")
    model = state["model_name"]
    loss_curve(run / "metrics.csv", run / "loss-curve.png", title=f"zoo/{cfg.name}/{model} ({state['preset']})")
    folder = publish(run, cfg.name, finished=finished)  # weights first: the eval scores the shipped fp16 file
    out = data_root() / "evals" / f"zoo-{cfg.name}-{model}-{read_card(cfg.name, model)['weights_sha256'][:12]}"
    run_eval(EvalConfig(model=model, pretrained=cfg.name, set=cfg.set, out=str(out), progress=False))
    publish(run, cfg.name, {cfg.set: out}, finished=finished)
    print(card_markdown(read_card(cfg.name, model)))
    return folder

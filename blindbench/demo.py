"""``blindbench demo``: the main job on the embedded default, end to end, in a few minutes on 2 CPU cores.

1. the embedded ``photos`` corpus;
2. the ``photos-demo`` benchmark (verified against its committed lock, with a contact sheet) and ``photos-val``;
3. a short training run of a tiny VCN, to show training (the zoo holds the models that learned);
4. eval of the zoo models (weights trained by blindbench, ``zoo/photos/``) and the reference rows on photos-demo;
5. Table 1, the robustness table and a comparison figure;
6. blind restoration of a held-out photo with the zoo VCN.

Every step keeps what an earlier run finished; an interrupted training run resumes from its checkpoint.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from blindbench.options import option as _option

ZOO_MODELS = ("ca", "gmc", "pc", "gc", "vcn")


@dataclass(frozen=True)
class DemoConfig:
    """The main job on the embedded default: corpus, photos-demo, a short training run, the zoo's Table 1."""

    set: str = _option("photos-demo", "demo set")
    workers: int = _option(-1, "parallel workers (-1: all cores)")
    train_steps: int = _option(240, "training steps of the demo's own tiny VCN (three quarters separate, then joint)")
    train_batch: int = _option(8, "training batch size")
    train_crop: int = _option(128, "training crop side (random crops of photos-train's 256² samples)")
    run: str = _option("", "demo run folder (default <data>/runs/vcn-demo); an unfinished run is resumed")
    zoo: str = _option("photos", "zoo whose models are scored (zoo/<name>/<model>/)")


def _device_name() -> str:
    import torch

    return "CUDA" if torch.cuda.is_available() else "CPU"


def run_demo(cfg: DemoConfig) -> None:
    from blindbench.commands.corpus import corpus_summary
    from blindbench.commands.sets import GenerateConfig, SheetConfig, VerifyConfig, run_generate, run_sheet
    from blindbench.commands.sets import run_verify as verify
    from blindbench.compare import CompareConfig, run_compare
    from blindbench.corpus import build_embedded_corpus, is_built
    from blindbench.tables import TablesConfig, run_tables

    print("== 1/6 corpus: embedded photos")
    if is_built("photos"):
        print("corpus photos already built")
    else:
        print(corpus_summary(build_embedded_corpus(workers=cfg.workers)))
    print(f"== 2/6 generate {cfg.set} (verified against its lock, with a contact sheet) and photos-val")
    run_generate(GenerateConfig(set=cfg.set, workers=cfg.workers))
    verify(VerifyConfig(set=cfg.set))
    run_sheet(SheetConfig(set=cfg.set))
    _print_set_summary(cfg.set)
    run_generate(GenerateConfig(set="photos-val", workers=cfg.workers))
    print(f"== 3/6 train a tiny VCN on photos-train ({cfg.train_steps} steps on {_device_name()}): training shown, "
          f"not a model that has learned (those are in zoo/{cfg.zoo})")  # fmt: skip
    run_dir = _demo_train(cfg)
    print(f"== 4/6 eval the zoo/{cfg.zoo} models and the reference rows on {cfg.set}")
    runs = _demo_eval(cfg)
    print("== 5/6 tables and a comparison figure")
    run_tables(TablesConfig(runs=str(runs)))
    print(f"comparison figure: {run_compare(CompareConfig(runs=str(runs), set=cfg.set))}")
    print("== 6/6 blind inpainting of a photo no model saw (held-out test source, text written over it)")
    _demo_inpaint(cfg, run_dir)


def demo_train_config(cfg: DemoConfig):
    """The demo's training run: tiny VCN, stream of photos-train, no VGG (no weights offline), validated on
    photos-val (never on the benchmark)."""
    from blindbench.paths import data_root
    from blindbench.train import TrainConfig

    joint = cfg.train_steps // 4
    return TrainConfig(
        model="vcn", preset="tiny", set="photos-train", source="stream", stage="all",
        steps_separate=cfg.train_steps - joint, steps_joint=joint, batch_separate=cfg.train_batch,
        batch_joint=cfg.train_batch, critic_steps=1, perceptual=False, crop_size=cfg.train_crop,
        workers=1, val_set="photos-val", val_every=max(cfg.train_steps // 4, 1), log_every=5,
        sample_every=max(cfg.train_steps // 3, 1), checkpoint_every=50, tensorboard=False,
        out=cfg.run or str(data_root() / "runs" / "vcn-demo"),
    )  # fmt: skip


def _demo_train(cfg: DemoConfig) -> Path:
    """Train (or resume, or keep) the demo run; draw its loss curve."""
    import dataclasses as dc

    from blindbench.checkpoint import checkpoint_file, load_checkpoint
    from blindbench.figures import loss_curve
    from blindbench.train import run_train

    train_cfg = demo_train_config(cfg)
    run_dir = Path(train_cfg.out)
    last = checkpoint_file(run_dir)
    if last.is_file():
        step = load_checkpoint(last)["step"]
        if step >= train_cfg.total_steps:
            print(f"demo run {run_dir} already trained ({step} steps)")
        else:
            print(f"resuming demo run {run_dir} at step {step}")
            run_train(dc.replace(train_cfg, resume=str(last)))
    else:
        run_train(train_cfg)
    png = loss_curve(run_dir / "metrics.csv", run_dir / "loss-curve.png", title="demo VCN (tiny) on photos-train")
    print(f"loss curve: {png}")
    return run_dir


def _stale(folder: Path, weights_sha256: str | None) -> bool:
    """An eval folder of the demo's own that must be rescored: other weights than the zoo's current ones, or
    written by an older blindbench (other CSV columns)."""
    from blindbench.evaluate import COLUMNS

    try:
        identity = tomllib.loads((folder / "eval.toml").read_text())["identity"]
        with (folder / "samples.csv").open() as handle:
            header = handle.readline().strip()
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return folder.exists()
    if header != ",".join(COLUMNS):
        return True
    return weights_sha256 is not None and identity.get("checkpoint_sha256") != weights_sha256


def zoo_jobs(cfg: DemoConfig) -> list[tuple[str, str]]:
    """(model, zoo) of every finished zoo entry in Table 1's order, then the two reference rows; says what is missing.

    Table 1 compares equal budgets: an entry still training (published with ``--unfinished``) is named, not scored.
    """
    from blindbench.zoo import available, read_card

    cards = {model: read_card(zoo, model) for zoo, model in available(cfg.zoo)}
    published = {model for model, card in cards.items() if card.get("finished", True)}
    for model in ZOO_MODELS:
        if model in cards and model not in published:
            card = cards[model]
            print(f"zoo/{cfg.zoo}/{model}: unfinished ({card['steps_done']:,} of "
                  f"{sum(card['steps_planned'].values()):,} steps), not in Table 1 (continue it with `blindbench "
                  f"train --resume zoo/{cfg.zoo}/{model}/resume.pt --out data/runs/zoo-{cfg.zoo}-{model}`)")
        elif model not in published:
            print(f"zoo/{cfg.zoo}/{model}: no published weights yet (train them with "
                  f"`blindbench train --config zoo/{cfg.zoo}/{model}/train.toml`)")  # fmt: skip
    return [(m, cfg.zoo) for m in ZOO_MODELS if m in published] + [("input", ""), ("oracle-telea", "")]


def _demo_eval(cfg: DemoConfig) -> Path:
    """Eval every published zoo model (with images) and the two reference methods into one runs folder."""
    from blindbench.evaluate import EvalConfig, run_eval, summary_line
    from blindbench.paths import data_root
    from blindbench.zoo import read_card

    runs = data_root() / "evals" / "demo"
    jobs = zoo_jobs(cfg)
    for model, zoo in jobs:
        folder = runs / model
        if _stale(folder, read_card(zoo, model)["weights_sha256"] if zoo else None):
            shutil.rmtree(folder)
        eval_cfg = EvalConfig(model=model, pretrained=zoo, set=cfg.set, out=str(folder),
                              save_images=model != "input")  # fmt: skip
        print(summary_line(eval_cfg, run_eval(eval_cfg)))
    return runs


def _demo_inpaint(cfg: DemoConfig, run_dir: Path) -> Path:
    """Write text over a held-out photo at its own (non-square) size, restore it blind, save before/after."""
    import numpy as np

    from blindbench.corpus import committed_manifest_path, shrink
    from blindbench.corruption import Recipe, apply, sample_params
    from blindbench.figures import before_after
    from blindbench.imageio import read_image, write_image
    from blindbench.inpainting import InpaintConfig, run_inpaint
    from blindbench.zoo import available

    manifest = json.loads(committed_manifest_path("photos").read_text())
    source = next(s for s in manifest["sources"] if s["role"] == "clean" and s["split"] == "test")
    clean = shrink(read_image(source["file"]), 384)
    params = sample_params(np.random.default_rng(2020), Recipe(pattern="text"), clean.shape[:2])
    damaged = apply(clean, None, params).input
    folder = run_dir / "inpaint-demo"
    write_image(folder / "damaged.png", damaged)
    zoo_vcn = (cfg.zoo, "vcn") in available(cfg.zoo)
    weights = {"pretrained": cfg.zoo} if zoo_vcn else {"checkpoint": str(run_dir)}
    run_inpaint(InpaintConfig(inputs=(str(folder / "damaged.png"),), out=str(folder / "out"), progress=False,
                              **weights))  # fmt: skip
    restored = read_image(folder / "out" / "damaged.png")
    mask = read_image(folder / "out" / "damaged.mask.png")
    who = f"zoo/{cfg.zoo}/vcn" if zoo_vcn else "the demo's own VCN (no zoo VCN published yet)"
    png = before_after(damaged, mask, restored, clean, folder / "before-after.png",
                       title=f"{who} on {source['id']} ({clean.shape[1]}x{clean.shape[0]}), never seen in training")
    print(f"before/after: {png}")
    return png


def _print_set_summary(name: str) -> None:
    from blindbench.imageio import decode_png
    from blindbench.loader import shard_urls
    from blindbench.sets import load_set
    from blindbench.shards import iter_shard_samples

    spec = load_set(name)
    stats: dict[str, list[float]] = {}
    for url in shard_urls(spec):
        for raw in iter_shard_samples(url):
            mask = decode_png(raw["mask.png"], grey=True)
            stats.setdefault(json.loads(raw["json"])["pattern"], []).append(float((mask > 127).mean()))
    print(f"{'pattern':<10} {'samples':>7} {'mean damaged area':>18}")
    for pattern, areas in stats.items():
        print(f"{pattern:<10} {len(areas):>7} {sum(areas) / len(areas):>18.3f}")

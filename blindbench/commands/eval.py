"""``blindbench eval``: its config, and the run (torch imported inside, by :mod:`blindbench.evaluate`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from blindbench.options import device_option, eager_option, progress_option, set_option
from blindbench.options import option as _option

REFERENCE_METHODS = ("input", "oracle-telea")


@dataclass(frozen=True)
class EvalConfig:
    """Score a trained model (or the reference rows input / oracle-telea) on a set: one CSV row per sample."""

    model: str = _option("vcn", "registered model name, or a reference method: input, oracle-telea")
    checkpoint: str = _option("", "checkpoint file or run folder (a model needs this or --pretrained)")
    pretrained: str = _option("", "zoo weights trained by blindbench, e.g. photos (zoo/photos/<model>/)")
    predictions: str = _option("", "score a folder of restored images KEY.png (+ optional predicted masks "
                               "KEY.mask.png) made by any method; needs --label")
    allow_missing: bool = _option(False, "with --predictions: score the keys that have a file, report the rest")
    mask_source: str = _option("predicted", "predicted (blind) or true: feed the set's true mask to the inpainting "
                               "net (non-blind; no mask columns)", choices=("predicted", "true"))
    set: str = set_option()
    shards: str = _option("", "folder holding the set's shards (default <data>/sets/<name>)")
    out: str = _option("", "eval folder (default <data>/evals/<label>-<set>)")
    label: str = _option("", "method label in the CSV and tables (default: the model name)")
    batch: int = _option(8, "images per forward pass")
    device: str = device_option()
    save_images: bool = _option(False, "save restored images, predicted masks, inputs and targets as PNG")
    limit: int = _option(0, "score only the first N samples (0: all)")
    amp: bool = _option(False, "bf16 autocast on CUDA: faster, but scores shift (~0.005 dB PSNR) against fp32")
    verify: bool = _option(True, "check the shards against the set's lock before scoring (sha256 of every shard)")
    iqa: str = _option("", "extra pyiqa metrics, comma-separated: lpips (per sample), fid (per set; needs images)")
    iqa_weights: str = _option("", "folder of pyiqa/torchvision weights for --iqa (nothing is downloaded)")
    progress: bool = progress_option()
    eager: bool = eager_option()
    compile_min: int = _option(500, "CPU: run a torch.compile'd forward (1.4-2.6x faster at batch 1, scores equal "
                               "to 1e-5 dB; benchmarks/RESULTS.md) when at least this many samples are to be scored: "
                               "its one-time cost (20 s to minutes) pays only on large sets; 0: always")

    @property
    def method(self) -> str:
        if self.label:
            return self.label
        name = Path(self.model).stem if self.model.endswith((".pt", ".ts", ".pt2")) else self.model.replace(":", ".")
        return f"{name}-true-mask" if self.mask_source == "true" else name

    @property
    def is_reference(self) -> bool:
        return self.model in REFERENCE_METHODS or bool(self.predictions)

    @property
    def model_name(self) -> str:
        """The CSV's model column: ``predictions`` for a folder of files, else the model."""
        return "predictions" if self.predictions else self.model


def run_eval(cfg: EvalConfig) -> None:
    from blindbench.evaluate import run_eval, summary_line

    report = run_eval(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank returns the same report: say it once
        print(summary_line(cfg, report))

"""``blindbench zoo publish`` and ``export-weights``: their configs, and the runs (torch imported inside)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from blindbench.options import option as _option
from blindbench.options import set_option

WEIGHT_FORMATS = ("safetensors", "pt")


@dataclass(frozen=True)
class ZooPublishConfig:
    """Publish a finished (or, with --unfinished, a resumable) training run as a zoo entry, scored on photos-demo."""

    run: str = _option("", "training run folder (checkpoints/last.pt, metrics.csv)")
    name: str = _option("photos", "zoo name (zoo/<name>/<model>/)")
    set: str = set_option("benchmark set scored on the card")
    unfinished: bool = _option(False, "publish a run that has not reached its planned steps (keeps resume.pt)")


@dataclass(frozen=True)
class ExportWeightsConfig:
    """Write a training run's model weights only (no optimisers, critics or RNG states): safetensors or .pt."""

    run: str = _option("", "training run folder (its checkpoints/last.pt) or checkpoint file", positional=True)
    format: str = _option("safetensors", "safetensors (safetensors.torch.load_file) or pt (torch.load with "
                          "weights_only=True)", choices=WEIGHT_FORMATS)
    out: str = _option("", "output file (default: <run>/weights.<format>, or <name>.weights.<format> beside a "
                       "checkpoint file)", short="-o")
    half: bool = _option(False, "store floating-point weights as fp16 (half the size; the zoo ships fp16)")


def run_zoo_publish(cfg: ZooPublishConfig) -> None:
    from blindbench.zoo import run_publish

    print(f"zoo entry: {run_publish(cfg)}")


def run_export_weights(cfg: ExportWeightsConfig) -> Path:
    from blindbench.zoo import run_export_weights

    return run_export_weights(cfg)

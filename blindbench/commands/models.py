"""``blindbench models``: its config, and the run (torch imported inside)."""

from __future__ import annotations

from dataclasses import dataclass

from blindbench.errors import BlindbenchError
from blindbench.options import option, preset_option


@dataclass(frozen=True)
class ModelsConfig:
    """List the registered models: parameters, the paper's count, GMACs per image."""

    preset: str = preset_option()
    size: int = option(256, "image side for the GMAC count (a multiple of 128, every model's size multiple)")

    def __post_init__(self) -> None:
        if self.size % 128 or not 128 <= self.size <= 4096:
            raise BlindbenchError(f"--size must be a multiple of 128 in [128, 4096], got {self.size}")


def run_models(cfg: ModelsConfig) -> None:
    from blindbench.models import model_names, summarize

    print(f"| model | parameters | paper | deviation | GMAC @ {cfg.size}² | description |")
    print("|---|---:|---:|---:|---:|---|")
    for name in model_names():
        s = summarize(name, cfg.preset, cfg.size)
        paper = f"{s.paper_params / 1e6:.2f}M" if s.paper_params and cfg.preset == "paper" else "–"
        deviation = f"{100 * s.deviation:+.1f}%" if s.deviation is not None and cfg.preset == "paper" else "–"
        print(f"| {name} | {s.params:,} | {paper} | {deviation} | {s.gmacs:.2f} | {s.description} |")

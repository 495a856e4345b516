"""``blindbench compare``: its config, and the run (OpenCV imported inside, by :mod:`blindbench.compare`)."""

from __future__ import annotations

from dataclasses import dataclass

from blindbench.options import option as _option


@dataclass(frozen=True)
class CompareConfig:
    """Save a comparison figure (paper Fig. 5): input, each method's output with its mask inset, target."""

    runs: str = _option("", "folder of eval runs (saved with images)")
    set: str = _option("", "test set to show (default: the only one in --runs)")
    keys: str = _option("", "comma-separated sample keys (default: the first --count keys every method has)")
    methods: str = _option("", "comma-separated methods, in column order (default: every method with images)")
    count: int = _option(4, "rows when --keys is not given")
    inset: float = _option(0.3, "side of the predicted-mask inset as a fraction of the image side (0: none)")
    png: str = _option("", "output PNG (default <runs>/compare-<set>.png)")


def run_compare(cfg: CompareConfig) -> None:
    from blindbench.compare import run_compare

    print(f"comparison figure: {run_compare(cfg)}")

"""``blindbench generate``, ``verify`` and ``sheet``: their configs, and the runs (heavy imports inside)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blindbench.errors import BlindbenchError
from blindbench.options import check_workers, option, progress_option, set_option, workers_option


def _shards_folder() -> Any:
    """``--out`` of verify and sheet: the folder their set's shards are read from."""
    return option("", "folder holding the shards (default <data>/sets/<name>)")


@dataclass(frozen=True)
class GenerateConfig:
    """Write a benchmark set's WebDataset shards and lock; an interrupted run resumes."""

    set: str = set_option("set name (manifests/<name>.toml) or a path to a .toml manifest")
    out: str = option("", "output folder (default <data>/sets/<name>)")
    workers: int = workers_option("parallel workers (-1: all cores, or all of a cluster's); the bytes do not depend "
                                  "on it")
    backend: str = option("loky", "joblib backend: loky, threading, multiprocessing, dask (pip install "
                          "'blindbench[dask]') or ray ('blindbench[ray]'); the bytes do not depend on it")
    scheduler: str = option("", "--backend dask: the dask.distributed scheduler, e.g. tcp://host:8786 (default: "
                            "a local cluster of --workers processes)")
    address: str = option("", "--backend ray: the ray cluster, e.g. auto or ray://host:10001 (default: "
                          "$RAY_ADDRESS, else a local ray)")
    overwrite: bool = option(False, "regenerate shards made from another version of the manifest (else an error)")
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        from blindbench.shards import check_backend

        check_workers(self.workers)
        if self.scheduler and self.backend != "dask":
            raise BlindbenchError(f"--scheduler is the dask scheduler: use it with --backend dask, not {self.backend}")
        if self.address and self.backend != "ray":
            raise BlindbenchError(f"--address is the ray cluster: use it with --backend ray, not {self.backend}")
        check_backend(self.backend)


@dataclass(frozen=True)
class VerifyConfig:
    """Check a set's shards against its lock (the committed one when there is one)."""

    set: str = set_option()
    out: str = _shards_folder()
    lock: str = option(
        "", "lock file to check against (default: committed manifests/<name>.lock.json, else the one beside the shards)"
    )


@dataclass(frozen=True)
class SheetConfig:
    """Save a contact sheet PNG of a set: one sample per pattern (input, M, M̃, N, target)."""

    set: str = set_option()
    out: str = _shards_folder()
    png: str = option("", "output PNG (default <shards folder>/<name>-contact-sheet.png)")
    per_pattern: int = option(1, "samples shown per pattern")

    def __post_init__(self) -> None:
        if not 1 <= self.per_pattern <= 64:
            raise BlindbenchError(f"--per-pattern must be in [1, 64], got {self.per_pattern}")


def run_generate(cfg: GenerateConfig) -> None:
    from blindbench.sets import load_set
    from blindbench.shards import generate_set

    spec = load_set(cfg.set)
    report = generate_set(spec, cfg.out or None, workers=cfg.workers, backend=cfg.backend, overwrite=cfg.overwrite,
                          address=cfg.scheduler or cfg.address, progress=cfg.progress)
    total = sum(e["bytes"] for e in report.lock["shards"])
    print(
        f"set {spec.name}: {spec.count} samples in {spec.shard_count} shards ({total / 2**20:.1f} MiB) at "
        f"{report.out_dir}; {report.written} written, {report.kept} kept from an earlier run"
    )


def run_verify(cfg: VerifyConfig) -> None:
    from blindbench.sets import load_set
    from blindbench.shards import verify_set

    spec = load_set(cfg.set)
    report = verify_set(spec, cfg.out or None, Path(cfg.lock) if cfg.lock else None)
    if not report.ok:
        raise BlindbenchError(f"set {spec.name} does not match {report.lock_path}: " + "; ".join(report.problems))
    print(f"set {spec.name}: {report.checked} shards match {report.lock_path}")


def run_sheet(cfg: SheetConfig) -> Path:
    from blindbench.figures import contact_sheet
    from blindbench.imageio import decode_png
    from blindbench.loader import shard_urls
    from blindbench.paths import set_dir
    from blindbench.sets import load_set
    from blindbench.shards import iter_shard_samples

    spec = load_set(cfg.set)
    folder = Path(cfg.out) if cfg.out else set_dir(spec.name)
    wanted = dict.fromkeys(spec.patterns, cfg.per_pattern)
    rows = []
    for url in shard_urls(spec, folder):
        for raw in iter_shard_samples(url):
            pattern = json.loads(raw["json"])["pattern"]
            if wanted.get(pattern, 0) > 0:
                wanted[pattern] -= 1
                try:
                    rows.append(
                        {
                            "pattern": pattern,
                            "input": decode_png(raw["input.png"]),
                            "mask": decode_png(raw["mask.png"], grey=True),
                            "soft_mask": decode_png(raw["soft_mask.png"], grey=True),
                            "fill": decode_png(raw["fill.png"]),
                            "target": decode_png(raw["target.png"]),
                        }
                    )
                except (KeyError, ValueError) as exc:
                    raise BlindbenchError(f"bad sample {raw.get('__key__')} in {url}: {exc} (regenerate the set)"
                                          ) from None  # fmt: skip
        if not any(wanted.values()):
            break
    order = {name: i for i, name in enumerate(spec.patterns)}
    rows.sort(key=lambda row: order[row["pattern"]])
    png = Path(cfg.png) if cfg.png else folder / f"{spec.name}-contact-sheet.png"
    contact_sheet(rows, png, title=f"{spec.name}: one sample per corruption pattern")
    print(f"contact sheet: {png}")
    return png

"""``blindbench export``: a benchmark set as plain files that any framework reads (LaMa's layout).

``OUT/KEY.png`` is the corrupted input I, ``OUT/KEY_mask.png`` (with ``--masks``, for non-blind methods) the true
hard mask (255 = damaged), ``OUT/index.csv`` lists ``key,pattern,mask_area``. The shards are checked against the
set's lock first; PNGs are written at a fixed compression level, so an export is byte-reproducible. Score a
method's restored images with ``blindbench eval --predictions DIR --label NAME --set NAME``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from blindbench.errors import BlindbenchError
from blindbench.options import option as _option


@dataclass(frozen=True)
class ExportConfig:
    """Write a set's corrupted inputs (and, with --masks, true masks) as PNG files plus index.csv."""

    set: str = _option("photos-demo", "set name or manifest path")
    out: str = _option("", "output folder", short="-o")
    masks: bool = _option(False, "also write KEY_mask.png, the true hard mask (for non-blind methods)")
    shards: str = _option("", "folder holding the set's shards (default <data>/sets/<name>)")
    progress: bool = _option(True, "show a progress bar")


def run_export(cfg: ExportConfig) -> Path:
    from tqdm.auto import tqdm

    from blindbench.imageio import atomic_write_bytes, decode_png
    from blindbench.loader import shard_urls
    from blindbench.locking import exclusive_folder
    from blindbench.paths import set_dir
    from blindbench.sets import load_set
    from blindbench.shards import iter_shard_samples, verify_set

    if not cfg.out:
        raise BlindbenchError("give an output folder with --out")
    spec = load_set(cfg.set)
    folder = Path(cfg.shards) if cfg.shards else set_dir(spec.name)
    report = verify_set(spec, folder)
    if not report.ok:
        raise BlindbenchError(f"shards in {folder} do not match {report.lock_path}: {report.problems[0]}")
    out = Path(cfg.out)
    rows = []
    with exclusive_folder(out, "export"), tqdm(total=spec.count, desc=f"export {spec.name}", unit="img",
                                                disable=not cfg.progress) as bar:  # fmt: skip
        for url in shard_urls(spec, folder):
            for raw in iter_shard_samples(url):
                key = raw["__key__"]
                # the shard's PNG bytes as they are: the exported input is exactly what the metrics compare
                atomic_write_bytes(out / f"{key}.png", raw["input.png"], durable=False)
                mask = decode_png(raw["mask.png"], grey=True)
                if cfg.masks:
                    atomic_write_bytes(out / f"{key}_mask.png", raw["mask.png"], durable=False)
                rows.append((key, json.loads(raw["json"])["pattern"], f"{float((mask > 127).mean()):.6f}"))
                bar.update(1)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows([("key", "pattern", "mask_area"), *rows])
        atomic_write_bytes(out / "index.csv", buffer.getvalue().encode())
    print(f"exported {len(rows)} inputs of {spec.name}{' with masks' if cfg.masks else ''} to {out}")
    return out

"""Pack what benchmarks/gpu_train.sh needs on a machine without the Debian photo packages, under 64 MiB.

Writes ``.gl/gpu/`` (git-ignored; give it to the device tool as a carried path, with ``.whl``):

- ``train-crops.tar``: the embedded corpus's train crops (both roles) as JPEG q90, in corpus order;
- ``train-crops.json``: their crop records and the corpus config;
- ``photos-demo/``: the photos-demo shards, checked there against the committed lock before eval;

and ``.whl/``: the webdataset and braceexpand wheels (the GPU image lacks them; nothing can be fetched there).

    python benchmarks/gpu_pack.py     # here, after `make setup` and `blindbench generate --set photos-demo`
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np

from blindbench.corpus import Corpus
from blindbench.paths import set_dir
from blindbench.sets import load_set

ROOT = Path(__file__).resolve().parent.parent
PACK = Path(os.environ.get("BLINDBENCH_GPU_PACK", ROOT / ".gl" / "gpu"))
WHEELS = Path(os.environ.get("BLINDBENCH_GPU_WHEELS", ROOT / ".whl"))
QUALITY = 90


def main() -> None:
    corpus = Corpus.open("photos")
    PACK.mkdir(parents=True, exist_ok=True)
    records = {}
    with tarfile.open(PACK / "train-crops.tar", "w") as tar:
        for role in ("clean", "fill"):
            crops = corpus.crops(role, "train")
            records[role] = corpus.manifest["crops"][f"{role}-train"]
            for i in range(len(crops)):
                ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(np.asarray(crops[i]), cv2.COLOR_RGB2BGR),
                                        [cv2.IMWRITE_JPEG_QUALITY, QUALITY])  # fmt: skip
                data = jpeg.tobytes()
                info = tarfile.TarInfo(f"{role}/{i:06d}.jpg")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
    meta = {"config": corpus.manifest["config"], "crops": records, "quality": QUALITY}
    (PACK / "train-crops.json").write_text(json.dumps(meta) + "\n")
    spec = load_set("photos-demo")
    shutil.copytree(set_dir(spec.name), PACK / "photos-demo", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".*", "*.png"))  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d",
                    str(WHEELS), "webdataset", "braceexpand"], check=True)  # fmt: skip
    sizes = sum(p.stat().st_size for p in [*PACK.rglob("*"), *WHEELS.glob("*")] if p.is_file())
    print(f"packed {sum(len(v) for v in records.values())} train crops and photos-demo into {PACK} "
          f"({sizes / 2**20:.1f} MiB with the wheels)")


if __name__ == "__main__":
    main()

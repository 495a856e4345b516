"""On the GPU machine: turn ``.gl/gpu/`` (benchmarks/gpu_pack.py) into the corpus ``photos-gpu`` and the
photos-demo shards under ``$BLINDBENCH_DATA``. The corpus holds train crops only (val and test arrays empty)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np

from blindbench.corpus import ROLES, SPLITS
from blindbench.paths import corpus_dir, set_dir

PACK = Path(os.environ.get("BLINDBENCH_GPU_PACK", Path(__file__).resolve().parent.parent / ".gl" / "gpu"))


def main() -> None:
    meta = json.loads((PACK / "train-crops.json").read_text())
    size = meta["config"]["crop"]
    decoded: dict[str, list[np.ndarray]] = {role: [] for role in ROLES}
    with tarfile.open(PACK / "train-crops.tar") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            role = member.name.split("/")[0]
            data = np.frombuffer(tar.extractfile(member).read(), np.uint8)
            decoded[role].append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    out = corpus_dir("photos-gpu")
    out.mkdir(parents=True, exist_ok=True)
    arrays, crops = {}, {}
    for role in ROLES:
        for split in SPLITS:
            images = decoded[role] if split == "train" else []
            array = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
            np.save(out / f"{role}-{split}.npy", array)
            key = f"{role}-{split}"
            arrays[key] = {"count": len(array), "sha256": hashlib.sha256(array.tobytes()).hexdigest()}
            crops[key] = meta["crops"][role] if split == "train" else []
    manifest = {"name": "photos-gpu", "config": {**meta["config"], "name": "photos-gpu"}, "sources": [],
                "arrays": arrays, "crops": crops, "problems": [f"train crops re-encoded as JPEG q{meta['quality']}"]}
    (out / "corpus.json").write_text(json.dumps(manifest) + "\n")
    shutil.copytree(PACK / "photos-demo", set_dir("photos-demo"), dirs_exist_ok=True)
    print(f"corpus photos-gpu: {', '.join(f'{r} {len(v)}' for r, v in decoded.items())} train crops at {out}")


if __name__ == "__main__":
    main()

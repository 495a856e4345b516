"""Real paired damage: corpora of (damaged, clean) photographs, with the mask derived from their difference.

The paper's raindrop experiment (§4.2), and later work on watermarks and shadows, have no synthetic mask:
each sample is a real damaged photo I and its clean shot O. ``blindbench corpus pairs`` matches the two
folders by file name, cuts the same crops from both and derives the hard mask as

    M = opening(max_c |I − O| > t)

with a small square opening that removes isolated pixels (sensor noise, JPEG ringing); ``t`` and the opening
are recorded in ``corpus.json``. The corpus folder ``<data>/corpora/<name>/`` holds
``{input,target,mask}-{train,val,test}.npy`` and the manifest. A set manifest with ``kind = "pairs"`` then
writes shards with the usual members (N is I itself: the damage is what covers the hole; M̃ = M) and
``"derived_mask": true`` in each sample's JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from blindbench.commands.corpus import CorpusPairsConfig
from blindbench.corpus import SPLITS, CorpusConfig, _NpyStream, cut_crops, load_crop_array, shrink, split_of
from blindbench.corruption import Corruption
from blindbench.errors import BlindbenchError, ConfigError, ImageReadError
from blindbench.imageio import atomic_write_bytes, list_images, read_image, sha256_file
from blindbench.locking import exclusive_folder
from blindbench.paths import corpus_dir

PAIR_ARRAYS = ("input", "target", "mask")
PAIR_PATTERN = "paired"  # the pattern name of every sample of a pairs set (its rows in per-pattern tables)


@dataclass(frozen=True)
class PairConfig:
    """How the mask is derived from a pair: difference threshold ``t`` (grey levels, 0-255) and opening side."""

    threshold: int = 20
    opening: int = 3

    def __post_init__(self) -> None:
        for key, low, high in (("threshold", 0, 254), ("opening", 1, 31)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"pair {key} must be an integer in [{low}, {high}], got {value!r}")


def derive_mask(damaged: np.ndarray, clean: np.ndarray, threshold: int, opening: int) -> np.ndarray:
    """Hard mask (H, W) uint8 0/1 of where two aligned RGB uint8 images differ by more than ``threshold``.

    The per-pixel difference is the largest over the channels; an ``opening``² square opening then drops
    specks smaller than the kernel (1: none).
    """
    if damaged.shape != clean.shape or damaged.dtype != np.uint8 or clean.dtype != np.uint8:
        raise ValueError(f"pair images must be equal-shape uint8, got {damaged.shape} and {clean.shape}")
    difference = cv2.absdiff(damaged, clean).max(axis=2)  # (H, W)
    mask = (difference > threshold).astype(np.uint8)
    if opening > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((opening, opening), np.uint8))
    return mask


def match_pairs(input_dir: str | os.PathLike[str], target_dir: str | os.PathLike[str]) -> list[tuple[str, Path, Path]]:
    """(id, damaged file, clean file) for every name in both folders, matched by relative path without suffix.

    Raises:
        BlindbenchError: one line naming the first unmatched file (either side) or a name given twice.
    """
    sides = []
    for root in (Path(input_dir), Path(target_dir)):
        files = list_images(root)
        if not files:
            raise BlindbenchError(f"no images found under {root}")
        by_name: dict[str, Path] = {}
        for path in files:
            name = path.relative_to(root).with_suffix("").as_posix()
            if name in by_name:
                raise BlindbenchError(f"two images named {name!r} under {root}: {by_name[name].name}, {path.name}")
            by_name[name] = path
        sides.append((root, by_name))
    (input_root, inputs), (target_root, targets) = sides
    for have, want, other in ((inputs, targets, target_root), (targets, inputs, input_root)):
        extra = sorted(set(have) - set(want))
        if extra:
            raise BlindbenchError(f"{have[extra[0]]} has no partner named {extra[0]!r} under {other}")
    return [(name, inputs[name], targets[name]) for name in sorted(inputs)]


@dataclass
class _PairResult:
    id: str
    files: tuple[str, str]
    sha256: tuple[str, str]
    size: tuple[int, int]
    crops: list[list]
    pixels: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    problem: str | None


def _process_pair(pair_id: str, damaged_path: Path, clean_path: Path, config: CorpusConfig,
                  pairs: PairConfig) -> _PairResult:  # fmt: skip
    damaged, clean = read_image(damaged_path), read_image(clean_path)
    if damaged.shape != clean.shape:
        raise ImageReadError(f"pair {pair_id!r}: {damaged_path} is {damaged.shape[1]}x{damaged.shape[0]} but "
                             f"{clean_path} is {clean.shape[1]}x{clean.shape[0]}")  # fmt: skip
    digests = (sha256_file(damaged_path), sha256_file(clean_path))
    # the crop boxes come from the clean photo (its texture filter), and the same boxes are cut from both
    records, clean_crops = cut_crops(clean, pair_id, config)
    size = (clean.shape[1], clean.shape[0])
    if not records:
        problem = f"smaller than the {config.crop}px crop" if min(clean.shape[:2]) < config.crop else "no crop kept"
        return _PairResult(pair_id, (str(damaged_path), str(clean_path)), digests, size, [], None, problem)
    damaged_crops = []
    for record in records:
        scaled = shrink(damaged, record.scale)  # in center mode the scale is the crop
        damaged_crops.append(np.ascontiguousarray(scaled[record.y : record.y + config.crop,
                                                         record.x : record.x + config.crop]))  # fmt: skip
    inputs, targets = np.stack(damaged_crops), np.stack(clean_crops)
    masks = np.stack([derive_mask(i, t, pairs.threshold, pairs.opening) for i, t in zip(inputs, targets)])
    crops = [[r.source, r.scale, r.x, r.y] for r in records]
    return _PairResult(pair_id, (str(damaged_path), str(clean_path)), digests, size, crops,
                       (inputs, targets, masks), None)  # fmt: skip


def build_pair_corpus(
    input_dir: str | os.PathLike[str],
    target_dir: str | os.PathLike[str],
    config: CorpusConfig,
    pairs: PairConfig = PairConfig(),
    out_dir: Path | None = None,
    workers: int = -1,
    progress: bool = True,
) -> dict:
    """Match, crop and write a paired corpus; return its manifest (written last, so a failed build is not 'built').

    Pairs are split by pair (sorted by name) as sources are in `blindbench.corpus`: ``test_every`` and
    ``val_every`` of ``config``. Written in name order whatever ``workers`` is.
    """
    matched = match_pairs(input_dir, target_dir)
    out_dir = Path(out_dir) if out_dir is not None else corpus_dir(config.name)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BlindbenchError(f"output folder not writable: {out_dir} ({exc.strerror})") from None
    (out_dir / "corpus.json").unlink(missing_ok=True)  # a half-rebuilt corpus must not read as built
    streams = {(a, s): _NpyStream(out_dir / f"{a}-{s}.npy", config.crop, channels=0 if a == "mask" else 3)
               for a in PAIR_ARRAYS for s in SPLITS}  # fmt: skip
    entries, crops, problems = [], {s: [] for s in SPLITS}, []
    try:
        jobs = (delayed(_process_pair)(pid, d, c, config, pairs) for pid, d, c in matched)
        results = Parallel(n_jobs=workers, return_as="generator")(jobs)
        for index, result in enumerate(tqdm(results, total=len(matched), desc=f"pairs {config.name}",
                                            disable=not progress)):  # fmt: skip
            split = split_of(index, config.test_every, config.val_every)
            entries.append({"id": result.id, "split": split, "files": list(result.files),
                            "sha256": list(result.sha256), "size": list(result.size), "crops": len(result.crops)})
            if result.problem:
                problems.append(f"{result.id}: {result.problem}")
                continue
            for name, pixels in zip(PAIR_ARRAYS, result.pixels):
                streams[(name, split)].append(pixels)
            crops[split] += result.crops
        hashes = {f"{a}-{s}": streams[(a, s)].finish() for a in PAIR_ARRAYS for s in SPLITS}
    except BaseException:
        for stream in streams.values():
            if not stream.raw.closed:
                stream.abort()
        raise
    if not any(crops.values()):
        raise BlindbenchError(f"pairs {config.name}: no pair gave a {config.crop}px crop ({problems[0]})")
    manifest = {
        "name": config.name,
        "kind": "pairs",
        "config": asdict(config),
        "pairs": asdict(pairs),
        "sources": entries,
        "arrays": {k: {"count": len(crops[k.split("-")[1]]), "sha256": v} for k, v in hashes.items()},
        "crops": crops,
        "problems": problems,
    }
    atomic_write_bytes(out_dir / "corpus.json", (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


class PairCorpus:
    """A built paired corpus, memory-mapped like `blindbench.corpus.Corpus`."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        path = self.folder / "corpus.json"
        if not path.is_file():
            raise BlindbenchError(f"paired corpus not built: {self.folder} (run `blindbench corpus pairs`)")
        try:
            self.manifest = json.loads(path.read_text())
            if self.manifest.get("kind") != "pairs":
                raise KeyError("not a paired corpus (build it with `blindbench corpus pairs`)")
            self.name, self.pairs = self.manifest["name"], PairConfig(**self.manifest["pairs"])
            self.crop = int(self.manifest["config"]["crop"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ConfigError) as exc:
            raise BlindbenchError(f"bad paired corpus manifest {path}: {exc}") from None
        self._arrays: dict[str, np.ndarray] = {}

    def count(self, split: str) -> int:
        return len(self.manifest["crops"].get(split, []))

    def array(self, name: str, split: str) -> np.ndarray:
        key = f"{name}-{split}"
        if key not in self._arrays:
            self._arrays[key] = load_crop_array(self.folder / f"{key}.npy", self.count(split))
        return self._arrays[key]

    def provenance(self, split: str, index: int) -> dict:
        pair, scale, x, y = self.manifest["crops"][split][index]
        return {"pair": pair, "scale": scale, "box": [x, y, self.crop, self.crop]}

    def __getstate__(self) -> dict:  # reopen memory maps in workers instead of pickling them
        return {**self.__dict__, "_arrays": {}}


def pair_sample(corpus: PairCorpus, split: str, crop_index: int) -> tuple[np.ndarray, Corruption, dict]:
    """Clean target O, the pair's `Corruption` (I, M, M̃ = M·255, N = I) and the JSON fields of one crop."""
    damaged = np.asarray(corpus.array("input", split)[crop_index])
    target = np.asarray(corpus.array("target", split)[crop_index])
    mask = np.asarray(corpus.array("mask", split)[crop_index])
    corruption = Corruption(damaged, mask, mask * np.uint8(255), damaged)
    meta = {
        "pattern": PAIR_PATTERN,
        "derived_mask": True,
        "params": {"pattern": PAIR_PATTERN, "mask": {"derived": "max_c |I - O| > t, then opening",
                                                    "threshold": corpus.pairs.threshold,
                                                    "opening": corpus.pairs.opening}},  # fmt: skip
        "provenance": {"corpus": corpus.name, **corpus.provenance(split, crop_index)},
    }
    return target, corruption, meta


def run_corpus_pairs(cfg: CorpusPairsConfig) -> None:
    if not (cfg.name and cfg.input and cfg.target):
        raise BlindbenchError("give --name, --input (damaged photos) and --target (their clean photos)")
    if cfg.name == "photos":
        raise BlindbenchError("--name photos is the embedded corpus: name your paired corpus, e.g. --name raindrop")
    config = CorpusConfig(name=cfg.name, crop=cfg.crop, mode=cfg.mode, test_every=cfg.test_every,
                          val_every=cfg.val_every, min_std=0.0, min_laplacian=0.0)  # fmt: skip
    folder = corpus_dir(cfg.name)
    with exclusive_folder(folder, "corpus pairs"):
        manifest = build_pair_corpus(cfg.input, cfg.target, config, PairConfig(cfg.threshold, cfg.opening),
                                     workers=cfg.workers, progress=cfg.progress)  # fmt: skip
    counts = ", ".join(f"{s} {len(manifest['crops'][s])}" for s in SPLITS)
    print(f"paired corpus {cfg.name}: {len(manifest['sources'])} pairs; crops: {counts}; mask threshold "
          f"{cfg.threshold}, opening {cfg.opening} → {folder}")
    for problem in manifest["problems"]:
        print(f"  skipped {problem}")


def is_pair_corpus(name: str) -> bool:
    path = corpus_dir(name) / "corpus.json"
    try:
        return json.loads(path.read_text()).get("kind") == "pairs"
    except (OSError, ValueError, AttributeError):
        return False


__all__: Sequence[str] = ("PairConfig", "derive_mask", "match_pairs", "build_pair_corpus", "PairCorpus",
                          "pair_sample", "CorpusPairsConfig", "run_corpus_pairs", "is_pair_corpus")  # fmt: skip

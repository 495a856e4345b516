"""Corpora: folders of clean and fill photographs cut into fixed-size crops, split by source photo.

A corpus is built once (`blindbench corpus build`) into ``<data>/corpora/<name>/``:

- ``{clean,fill}-{train,test}.npy``: uint8 crops, (N, S, S, 3), memory-mapped when read;
- ``corpus.json``: every source (package or root, file, sha256), every crop box and the sha256 of each array.

The embedded default, ``photos``, is cut from real photographs shipped in Debian packages and pip wheels
(see `EMBEDDED_SOURCES`); its manifest is committed as ``manifests/photos.corpus.json`` so a rebuild that
would give different crops is an error, not a silent change. A user's own folders (FFHQ, Places2, ...)
are corpora too (`build_folder_corpus`).

The split is by source photo, never by crop, so no test or validation crop shares a photograph with a training
crop. A set may pool several roles of one split (`CropPool`): the embedded training set draws both O and N from
clean and fill photos alike, so that no texture statistic tells clean pixels from fill.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from blindbench.errors import BlindbenchError, ImageReadError
from blindbench.imageio import atomic_write_bytes, list_images, read_image, sha256_file
from blindbench.paths import corpus_dir, manifests_dir

ROLES = ("clean", "fill")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Source:
    """One source photograph.

    Attributes:
        id: stable name, unique within the corpus (used for the split and in every sample's provenance).
        role: ``clean`` (becomes O) or ``fill`` (becomes N).
        origin: where it comes from: a Debian package, a pip distribution, or a user folder (``clean:``/``fill:``).
        path: absolute path on this machine.
    """

    id: str
    role: str
    origin: str
    path: str


# Debian packages that `make demo` / `make test` install; a missing file names its package.
_DEBIAN = {
    "mate-backgrounds": (
        "/usr/share/backgrounds/mate/nature",
        [
            "Aqua",
            "Blinds",
            "Dune",
            "FreshFlower",
            "Garden",
            "GreenMeadow",
            "LadyBird",
            "RainDrops",
            "Storm",
            "TwoWings",
            "Wood",
            "YellowFlower",
        ],
    ),
    "lomiri-wallpapers-16.04": (
        "/usr/share/backgrounds",
        [
            "Bridge_by_Sander_Klootwijk",
            "Dragonfly_by_Bolly",
            "Picture_0B_by_freespace",
            "Picture_1A_by_freespace",
            "Wine_by_Jakkub_Mede",
            "aitzgorri_by_Aitzol_Berasategi",
            "analogpattern_by_Peter_Nerlich",
            "free_by_Peter_Nerlich",
            "friends_by_Aitzol_Berasategi",
            "greentock_by_Peter_Nerlich",
            "life_by_Aitzol_Berasategi",
            "picosdeeuropa_by_Aitzol_Berasategi",
            "seeding_by_Clements_Engelhardt",
            "sunset_by_Aitzol_Berasategi",
        ],
    ),
    "lomiri-wallpapers-20.04": ("/usr/share/backgrounds", ["Kleiber_by_Lukas_Baubkus"]),
}
_PLASMA = [
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "Volna",
    "summer_1am",
]
_OPENCV_DATA = "/usr/share/doc/opencv-doc/examples/data"
_OPENCV_FILL = [
    "apple.jpg",
    "baboon.jpg",
    "basketball1.png",
    "building.jpg",
    "butterfly.jpg",
    "chicky_512.png",
    "ela_original.jpg",
    "fruits.jpg",
    "graf1.png",
    "home.jpg",
    "leuvenA.jpg",
    "messi5.jpg",
    "orange.jpg",
    "squirrel_cls.jpg",
    "smarties.png",
    "aero1.jpg",
    "aloeL.jpg",
    "box_in_scene.png",
    "rubberwhale1.png",
    "../hfs/data/000.jpg",
    "../hfs/data/001.jpg",
    "../hfs/data/002.jpg",
]
_PALAPELI = ["castle-maintenon", "cincinnati-bridge", "citrus-fruits", "european-honey-bee", "panther-chameleon-female"]
_WHEEL_FILL = [  # (pip distribution, module whose folder holds the file, file)
    ("scikit-image", "skimage.data", "astronaut.png"),
    ("scikit-image", "skimage.data", "chelsea.png"),
    ("scikit-image", "skimage.data", "coffee.png"),
    ("scikit-image", "skimage.data", "rocket.jpg"),
    ("scikit-image", "skimage.data", "motorcycle_left.png"),
    ("scikit-learn", "sklearn.datasets.images", "china.jpg"),
    ("scikit-learn", "sklearn.datasets.images", "flower.jpg"),
    ("matplotlib", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
]

DEBIAN_PACKAGES = (*_DEBIAN, "plasma-workspace-wallpapers", "opencv-doc", "palapeli-data")


def _largest_file(folder: str) -> str:
    files = sorted(Path(folder).glob("*.*"), key=lambda p: (-p.stat().st_size, p.name)) if Path(folder).is_dir() else []
    return str(files[0]) if files else str(Path(folder) / "<largest image>")


def _module_folder(module: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return f"<{module} not installed>"
    return list(spec.submodule_search_locations)[0]


def embedded_sources() -> list[Source]:
    """The 39 clean wallpapers and 35 fill photographs of the embedded ``photos`` corpus, sorted by id."""
    sources = []
    for package, (folder, names) in _DEBIAN.items():
        sources += [Source(f"{package}/{n}", "clean", f"debian:{package}", f"{folder}/{n}.jpg") for n in names]
    for name in _PLASMA:
        folder = f"/usr/share/wallpapers/{name}/contents/images"
        sources.append(
            Source(
                f"plasma-workspace-wallpapers/{name}",
                "clean",
                "debian:plasma-workspace-wallpapers",
                _largest_file(folder),
            )
        )
    for name in _OPENCV_FILL:
        path = os.path.normpath(f"{_OPENCV_DATA}/{name}")
        stem = Path(name).stem if not name.startswith("..") else "hfs-" + Path(name).stem
        sources.append(Source(f"opencv-doc/{stem}", "fill", "debian:opencv-doc", path))
    for name in _PALAPELI:
        sources.append(
            Source(
                f"palapeli-data/{name}", "fill", "debian:palapeli-data", f"/usr/share/palapeli/collection/{name}.jpg"
            )
        )
    for dist, module, name in _WHEEL_FILL:
        sources.append(Source(f"{dist}/{Path(name).stem}", "fill", f"pip:{dist}", f"{_module_folder(module)}/{name}"))
    return sorted(sources, key=lambda s: (s.role, s.id))


@dataclass(frozen=True)
class CorpusConfig:
    """How sources become crops. Defaults are those of the embedded ``photos`` corpus.

    Attributes:
        name: corpus name (folder under ``<data>/corpora``).
        crop: crop side in pixels.
        mode: ``tiles`` (non-overlapping crops at several scales, then a texture filter; for large scene photos)
            or ``center`` (shrink the short side to ``crop``, then the central crop; for aligned faces, FFHQ).
        scales: short sides the photo is shrunk to in ``tiles`` mode; a scale above the photo's own short side is
            replaced by the native size (never upscaled).
        min_std: texture filter: least grey-level standard deviation of a crop.
        min_laplacian: texture filter: least mean |Laplacian| of a crop (drops sky, bokeh, flat gradients).
        test_every: every ``test_every``-th source of each role (sorted by id, 1-based) is a test source
            (1: all sources are test sources, for a dataset's validation folder).
        val_every: of the remaining sources of each role, every ``val_every``-th is a validation source (0: no
            validation split). Test sources do not move, so adding a validation split leaves test crops as they are.
    """

    name: str = "photos"
    crop: int = 256
    mode: str = "tiles"
    scales: tuple[int, ...] = (384, 512, 768, 1024)
    min_std: float = 15.0
    min_laplacian: float = 2.0
    test_every: int = 5
    val_every: int = 8

    def __post_init__(self) -> None:
        if self.mode not in ("tiles", "center"):
            raise BlindbenchError(f"unknown corpus mode {self.mode!r}: use 'tiles' or 'center'")
        whole = {"crop": self.crop, "test_every": self.test_every, "val_every": self.val_every}
        numbers = {"min_std": self.min_std, "min_laplacian": self.min_laplacian}
        for key, value in [*whole.items(), *(("scales", v) for v in self.scales), *numbers.items()]:
            kinds = int if key in whole or key == "scales" else int | float
            if isinstance(value, bool) or not isinstance(value, kinds):
                kind = "an integer" if kinds is int else "a number"
                raise BlindbenchError(f"bad corpus config: {key} must be {kind}, got {value!r}")
        if self.crop < 16 or self.test_every < 1 or self.val_every < 0 or not self.scales:
            raise BlindbenchError(f"bad corpus config: crop={self.crop}, test_every={self.test_every}, "
                                  f"val_every={self.val_every}")


@dataclass
class CropRecord:
    """Where one crop came from: the source, the short side it was shrunk to and the box's top-left corner."""

    source: str
    scale: int
    x: int
    y: int


@dataclass
class SourceResult:
    source: Source
    sha256: str
    size: tuple[int, int] | None = None
    crops: list[CropRecord] = field(default_factory=list)
    pixels: np.ndarray | None = None  # (N, S, S, 3) uint8
    problem: str | None = None  # why the source gave no crops


def texture_ok(crop: np.ndarray, min_std: float, min_laplacian: float) -> bool:
    """Texture filter: keep crops with enough contrast and detail (grey std, mean |Laplacian|)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    if float(grey.std()) < min_std:
        return False
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean()) >= min_laplacian


def shrink(image: np.ndarray, short_side: int) -> np.ndarray:
    """Resize so the short side is ``short_side`` (area interpolation; the long side rounded)."""
    height, width = image.shape[:2]
    if min(height, width) == short_side:
        return image
    factor = short_side / min(height, width)
    size = (max(short_side, round(width * factor)), max(short_side, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def cut_crops(image: np.ndarray, source_id: str, config: CorpusConfig) -> tuple[list[CropRecord], list[np.ndarray]]:
    """All crops of one photo under ``config`` (a pure function of the decoded pixels)."""
    crop = config.crop
    short = min(image.shape[:2])
    records: list[CropRecord] = []
    pixels: list[np.ndarray] = []
    if short < crop:
        return records, pixels
    if config.mode == "center":
        scaled = shrink(image, crop)
        y, x = (scaled.shape[0] - crop) // 2, (scaled.shape[1] - crop) // 2
        return [CropRecord(source_id, crop, x, y)], [np.ascontiguousarray(scaled[y : y + crop, x : x + crop])]
    for scale in sorted({min(s, short) for s in config.scales}):
        scaled = shrink(image, scale)
        rows, cols = scaled.shape[0] // crop, scaled.shape[1] // crop
        y0, x0 = (scaled.shape[0] - rows * crop) // 2, (scaled.shape[1] - cols * crop) // 2  # centre the grid
        for r in range(rows):
            for c in range(cols):
                y, x = y0 + r * crop, x0 + c * crop
                tile = scaled[y : y + crop, x : x + crop]
                if texture_ok(tile, config.min_std, config.min_laplacian):
                    records.append(CropRecord(source_id, scale, x, y))
                    pixels.append(np.ascontiguousarray(tile))
    return records, pixels


def _process_source(source: Source, config: CorpusConfig) -> SourceResult:
    try:
        digest = sha256_file(source.path)
        image = read_image(source.path)
    except (ImageReadError, OSError) as exc:
        return SourceResult(source, "", problem=f"unreadable ({exc})")
    records, pixels = cut_crops(image, source.id, config)
    result = SourceResult(source, digest, (image.shape[1], image.shape[0]), records)
    if pixels:
        result.pixels = np.stack(pixels)
    elif min(image.shape[:2]) < config.crop:
        result.problem = f"smaller than the {config.crop}px crop ({image.shape[1]}x{image.shape[0]})"
    else:
        result.problem = "no crop passed the texture filter"
    return result


def split_of(index: int, test_every: int, val_every: int = 0) -> str:
    """Split of the ``index``-th source (0-based, sorted by id within its role)."""
    if (index + 1) % test_every == 0:
        return "test"
    rest = index - (index + 1) // test_every  # position among the sources that are not test sources
    return "val" if val_every and (rest + 1) % val_every == 0 else "train"


def check_sources_present(sources: Sequence[Source]) -> None:
    """Raise a one-line error naming the package to install if an embedded source file is missing."""
    for source in sources:
        if not Path(source.path).is_file():
            kind, _, package = source.origin.partition(":")
            how = f"apt-get install {package}" if kind == "debian" else f"pip install {package}"
            raise BlindbenchError(
                f"missing source photo {source.path} ({source.id}): install it with `{how}` (make demo does this)"
            )


class _NpyStream:
    """Write an (N, S, S, C) uint8 .npy whose N is known only at the end, without holding it in memory
    (``channels`` 0: (N, S, S), for masks)."""

    def __init__(self, path: Path, crop: int, channels: int = 3) -> None:
        self.path, self.crop, self.count = path, crop, 0
        self.item_shape = (crop, crop, channels) if channels else (crop, crop)
        self.raw_path = path.with_name(f".{path.name}.raw.tmp")
        self.raw = open(self.raw_path, "wb")  # noqa: SIM115 - closed in finish()
        self.digest = hashlib.sha256()

    def append(self, pixels: np.ndarray) -> None:
        data = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
        self.raw.write(data)
        self.digest.update(data)
        self.count += len(pixels)

    def finish(self) -> str:
        self.raw.close()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        header = {"descr": "|u1", "fortran_order": False, "shape": (self.count, *self.item_shape)}
        with open(tmp, "wb") as out, open(self.raw_path, "rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            while block := raw.read(1 << 24):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self.raw_path.unlink()
        return self.digest.hexdigest()

    def abort(self) -> None:
        self.raw.close()
        self.raw_path.unlink(missing_ok=True)


def build_corpus(
    sources: Sequence[Source],
    config: CorpusConfig,
    out_dir: Path | None = None,
    expected: dict | None = None,
    workers: int = -1,
    progress: bool = True,
) -> dict:
    """Cut every source into crops and write the corpus folder; return its manifest.

    Sources are processed in parallel (joblib) but written in id order, so the bytes do not depend on
    ``workers``. Memory holds a few sources' crops at a time, however large the corpus.

    Args:
        sources: photos to cut; ids must be unique.
        config: crop rules.
        out_dir: corpus folder (default ``<data>/corpora/<config.name>``).
        expected: a committed manifest to check against: a changed source file or a different crop list is an error.
        workers: joblib workers (-1: all cores).
        progress: show a progress bar.

    Returns:
        The manifest written to ``corpus.json``.
    """
    out_dir = Path(out_dir) if out_dir is not None else corpus_dir(config.name)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BlindbenchError(f"output folder not writable: {out_dir} ({exc.strerror})") from None
    ordered = sorted(sources, key=lambda s: (s.role, s.id))
    if len({s.id for s in ordered}) != len(ordered):
        raise BlindbenchError("corpus source ids are not unique")
    index_in_role = {s.id: i for role in ROLES for i, s in enumerate(x for x in ordered if x.role == role)}
    expected_sources = {s["id"]: s for s in expected["sources"]} if expected else {}

    streams = {(r, s): _NpyStream(out_dir / f"{r}-{s}.npy", config.crop) for r in ROLES for s in SPLITS}
    entries, crops, problems = [], {f"{r}-{s}": [] for r in ROLES for s in SPLITS}, []
    try:
        jobs = (delayed(_process_source)(s, config) for s in ordered)
        results = Parallel(n_jobs=workers, return_as="generator")(jobs)
        for result in tqdm(results, total=len(ordered), desc=f"corpus {config.name}", disable=not progress):
            source = result.source
            want = expected_sources.get(source.id)
            if want is not None and result.sha256 and result.sha256 != want["sha256"]:
                raise BlindbenchError(
                    f"source photo changed: {source.path} ({source.origin}) has sha256 "
                    f"{result.sha256[:12]}…, the corpus manifest expects {want['sha256'][:12]}…"
                )
            split = split_of(index_in_role[source.id], config.test_every, config.val_every)
            entries.append(
                {
                    "id": source.id,
                    "role": source.role,
                    "split": split,
                    "origin": source.origin,
                    "file": source.path,
                    "sha256": result.sha256,
                    "size": result.size,
                    "crops": len(result.crops),
                }
            )
            if result.problem:
                problems.append(f"{source.id}: {result.problem}")
            if result.pixels is not None:
                streams[(source.role, split)].append(result.pixels)
                crops[f"{source.role}-{split}"] += [[c.source, c.scale, c.x, c.y] for c in result.crops]
        hashes = {f"{r}-{s}": streams[(r, s)].finish() for r in ROLES for s in SPLITS}
    except BaseException:
        for stream in streams.values():
            if not stream.raw.closed:
                stream.abort()
        raise
    manifest = {
        "name": config.name,
        "config": asdict(config),
        "sources": entries,
        "arrays": {k: {"count": len(crops[k]), "sha256": hashes[k]} for k in crops},
        "crops": crops,
        "problems": problems,
    }
    if expected is not None:
        _compare_manifest(manifest, expected)
    atomic_write_bytes(out_dir / "corpus.json", (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def _compare_manifest(built: dict, expected: dict) -> None:
    for key, want in expected["arrays"].items():
        got = built["arrays"].get(key)
        if got is None or got["count"] != want["count"]:
            raise BlindbenchError(
                f"corpus {built['name']}: {key} has {got and got['count']} crops, the manifest expects {want['count']}"
            )
        if got["sha256"] != want["sha256"]:
            raise BlindbenchError(
                f"corpus {built['name']}: {key} crops differ from the committed manifest "
                "(a different image decoder or resize in this OpenCV/Pillow version?)"
            )


def committed_manifest_path(name: str) -> Path:
    return manifests_dir() / f"{name}.corpus.json"


def build_embedded_corpus(update_manifest: bool = False, workers: int = -1, progress: bool = True) -> dict:
    """Build the embedded ``photos`` corpus and check it against the committed manifest.

    Args:
        update_manifest: write the committed manifest instead of checking against it (maintainers only).
    """
    sources = embedded_sources()
    check_sources_present(sources)
    committed = committed_manifest_path("photos")
    expected = None
    if committed.is_file() and not update_manifest:
        expected = json.loads(committed.read_text())
    manifest = build_corpus(sources, CorpusConfig(), expected=expected, workers=workers, progress=progress)
    if update_manifest or not committed.is_file():
        atomic_write_bytes(committed, (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def folder_sources(clean_dir: str | os.PathLike[str], fill_dir: str | os.PathLike[str]) -> list[Source]:
    """Sources from a user's folders, searched recursively; ids are the paths relative to each folder."""
    sources = []
    for role, root in (("clean", Path(clean_dir)), ("fill", Path(fill_dir))):
        files = list_images(root)
        if not files:
            raise BlindbenchError(f"no images found under {root}")
        sources += [Source(f"{role}:{p.relative_to(root).as_posix()}", role, f"{role}:{root}", str(p)) for p in files]
    return sources


def is_built(name: str) -> bool:
    folder = corpus_dir(name)
    if not (folder / "corpus.json").is_file():
        return False
    try:
        arrays = json.loads((folder / "corpus.json").read_text()).get("arrays", {})
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False
    # a corpus built before the validation split existed lacks its arrays: rebuild it
    return all(f"{r}-{s}" in arrays and (folder / f"{r}-{s}.npy").is_file() for r in ROLES for s in SPLITS)


def load_crop_array(path: Path, count: int) -> np.ndarray:
    """A corpus array, memory-mapped, checked to hold the ``count`` crops its manifest says."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise BlindbenchError(f"corpus file unreadable: {path} ({exc})") from None
    if len(array) != count:
        raise BlindbenchError(f"corpus file {path} holds {len(array)} crops, its manifest says {count}: "
                              "rebuild the corpus")  # fmt: skip
    return array


class Corpus:
    """A built corpus, read lazily: crops are memory-mapped, so workers share pages instead of copies."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / "corpus.json"
        if not manifest_path.is_file():
            raise BlindbenchError(f"corpus not built: {self.folder} (run `blindbench corpus build`)")
        try:
            self.manifest = json.loads(manifest_path.read_text())
            self.name = self.manifest["name"]
            missing = [k for k, kind in (("config", dict), ("arrays", dict), ("crops", dict))
                       if not isinstance(self.manifest.get(k), kind)]  # fmt: skip
            if missing:
                raise KeyError(f"no {', '.join(missing)}")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise BlindbenchError(f"corrupt corpus manifest {manifest_path} ({exc}): rebuild it with "
                                  f"`blindbench corpus build`") from None  # fmt: skip
        self._arrays: dict[str, np.ndarray] = {}
        self._pools: dict[tuple, CropPool] = {}

    @classmethod
    def open(cls, name: str) -> Corpus:
        return cls(corpus_dir(name))

    def crops(self, role: str, split: str) -> np.ndarray:
        """(N, S, S, 3) uint8 crops of one role and split, memory-mapped."""
        key = f"{role}-{split}"
        if key not in self.manifest["arrays"]:
            raise BlindbenchError(f"corpus {self.name} has no {key!r} crops (roles {ROLES}, splits {SPLITS})")
        if key not in self._arrays:
            self._arrays[key] = load_crop_array(self.folder / f"{key}.npy", self.manifest["arrays"][key]["count"])
        return self._arrays[key]

    def pool(self, roles: Sequence[str], split: str) -> CropPool:
        """The crops of ``roles`` in ``split`` as one sequence, in the order the roles are given."""
        key = (tuple(roles), split)
        if key not in self._pools:
            self._pools[key] = CropPool(self, tuple(roles), split)
        return self._pools[key]

    def provenance(self, role: str, split: str, index: int) -> dict:
        """Where crop ``index`` came from (source id, scale, box)."""
        source, scale, x, y = self.manifest["crops"][f"{role}-{split}"][index]
        size = self.manifest["config"]["crop"]
        return {"source": source, "scale": scale, "box": [x, y, size, size]}

    def __getstate__(self) -> dict:  # do not pickle memory maps into workers; reopen there
        return {"folder": self.folder, "manifest": self.manifest, "name": self.name, "_arrays": {}, "_pools": {}}


class CropPool:
    """Crops of one or more roles of a split, indexed as one sequence (the first role's crops come first).

    With a single role it is exactly that role's array, so sets made before pools existed keep their bytes.
    """

    def __init__(self, corpus: Corpus, roles: tuple[str, ...], split: str) -> None:
        if not roles or len(set(roles)) != len(roles) or not set(roles) <= set(ROLES):
            raise BlindbenchError(f"bad crop pool roles {roles!r}: give distinct roles out of {ROLES}")
        self.corpus, self.roles, self.split = corpus, roles, split
        self.arrays = [corpus.crops(role, split) for role in roles]
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])
        records = [rec for role in roles for rec in corpus.manifest["crops"][f"{role}-{split}"]]
        self.source_names = sorted({rec[0] for rec in records})
        lookup = {name: i for i, name in enumerate(self.source_names)}
        self.source_ids = np.asarray([lookup[rec[0]] for rec in records], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"crop {index} out of range for a pool of {len(self)}")
        part = int(np.searchsorted(self.starts, index, side="right")) - 1
        return part, index - int(self.starts[part])

    def __getitem__(self, index: int) -> np.ndarray:
        part, local = self._locate(index)
        return self.arrays[part][local]

    def source(self, index: int) -> str:
        """Source photo id of crop ``index``."""
        return self.source_names[int(self.source_ids[index])]

    def provenance(self, index: int) -> dict:
        part, local = self._locate(index)
        record = self.corpus.provenance(self.roles[part], self.split, local)
        return record if len(self.roles) == 1 else {"role": self.roles[part], **record}

    def other_source(self, index: int, source: str) -> int:
        """``index`` if its crop is not from ``source``, else a crop from another photo (a pure function of both).

        The fill of a sample must come from a different photograph than its clean crop; in a pooled set the
        same photo can be in both pools. The replacement keeps ``index``'s relative position among the allowed
        crops, so draws stay uniform.
        """
        if self.source(index) != source:
            return index
        allowed = np.flatnonzero(self.source_ids != self.source_names.index(source))
        if len(allowed) == 0:
            raise BlindbenchError(f"crop pool {self.roles} / {self.split} holds only photo {source}: no other fill")
        return int(allowed[index * len(allowed) // len(self)])

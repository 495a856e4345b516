"""Writing benchmark sets as reproducible WebDataset shards, with a lock that pins their bytes.

Each shard ``<set>-%06d.tar`` holds, per sample key (no dots), the members ``KEY.input.png`` (I),
``KEY.target.png`` (O), ``KEY.mask.png`` (hard M, 0/255), ``KEY.soft_mask.png`` (M̃, 8-bit),
``KEY.fill.png`` (N) and ``KEY.json`` (pattern, replayable parameters, provenance). Tar headers have
fixed mtime, owner and mode, PNGs are encoded by OpenCV at a fixed level: the same manifest gives the
same bytes for any number of workers, on a rerun, and after an interrupted run.

A shard is written to a temporary name and renamed when complete; its sha256 goes to a ``.sha256``
sidecar after the rename. A rerun keeps every shard whose sidecar matches its bytes (resume) and
rewrites the rest. ``<set>.lock.json`` lists every shard's sha256 and count plus the library versions.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from blindbench import __version__
from blindbench.corpus import Corpus, CropPool, build_corpus, build_embedded_corpus, folder_sources, is_built
from blindbench.corruption import PATTERNS_WITH_IMAGE_FILL, Corruption, apply, sample_params
from blindbench.errors import BlindbenchError, ShardError
from blindbench.imageio import atomic_write_bytes, encode_png, sha256_file
from blindbench.locking import exclusive_folder
from blindbench.pairs import PairCorpus, is_pair_corpus, pair_sample
from blindbench.paths import corpus_dir, manifests_dir, set_dir
from blindbench.sets import SetSpec, content_digest

PNG_LEVEL = 1  # OpenCV's fast setting: lossless, and the generation floor measured in benchmarks/generate.py
class StaleShardError(ShardError):
    """An output folder holds shards generated from another version of the set."""


MEMBERS = ("fill.png", "input.png", "json", "mask.png", "soft_mask.png", "target.png")


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of a set seeded ``seed``: independent of workers and order."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def sample_key(spec: SetSpec, index: int) -> str:
    return f"{spec.name}_{index:06d}"


def clean_indices(spec: SetSpec, available: int, indices: range) -> list[int]:
    """Clean-crop index of each sample in ``indices`` (a function of the set seed alone)."""
    if available <= 0:
        raise BlindbenchError(f"set {spec.name}: the corpus has no {spec.clean_split} clean crops")
    if spec.clean_order == "permutation":
        order = np.random.default_rng(np.random.SeedSequence([spec.seed, 2**31])).permutation(available)
        return [int(order[i % available]) for i in indices]
    return [int(sample_rng(spec.seed, i).integers(available)) for i in indices]


def pick_recipe(spec: SetSpec, index: int):
    """Recipe of sample ``index``: cycled in order (balanced per pattern) or drawn by weight from its own stream."""
    if spec.recipe_order == "cycle":
        return spec.recipes[index % len(spec.recipes)]
    weights = np.asarray([r.weight for r in spec.recipes], dtype=np.float64)
    rng = sample_rng(spec.seed, index)  # a stream of its own, so adding a recipe does not shift the other draws
    return spec.recipes[int(rng.choice(len(weights), p=weights / weights.sum()))]


@dataclass
class Sample:
    """One corrupted sample before encoding: the clean crop, its corruption and its JSON metadata."""

    key: str
    target: np.ndarray
    corruption: Corruption
    meta: dict


def clean_pool(spec: SetSpec, corpus: Corpus) -> CropPool:
    """The crops that O is drawn from."""
    return corpus.pool(spec.clean_roles, spec.clean_split)


def corrupt_sample(spec: SetSpec, corpus: Corpus, index: int, clean_index: int, stream: int = 0) -> Sample:
    """Sample ``index`` of ``spec`` (``stream`` offsets the seed, e.g. by epoch, for on-the-fly training)."""
    cleans, fills = clean_pool(spec, corpus), corpus.pool(spec.fill_roles, spec.fill_split)
    clean = np.asarray(cleans[clean_index])
    recipe = pick_recipe(spec, index)
    params = sample_params(sample_rng(spec.seed + 1 + stream, index), recipe, spec.size, fill_count=len(fills))
    fill_image = None
    provenance = {"corpus": corpus.name, "clean": cleans.provenance(clean_index)}
    if params["pattern"] in PATTERNS_WITH_IMAGE_FILL:
        # N comes from another photograph than O (only possible to violate when the pools share a role)
        fill_index = fills.other_source(params["fill"]["index"], cleans.source(clean_index))
        params["fill"]["index"] = fill_index
        fill_image = np.asarray(fills[fill_index])
        provenance["fill"] = fills.provenance(fill_index)
    key = sample_key(spec, index)
    meta = {
        "key": key,
        "set": spec.name,
        "index": index,
        "pattern": params["recipe"],
        "params": params,
        "provenance": provenance,
    }
    return Sample(key, clean, apply(clean, fill_image, params), meta)


def encode_sample(sample: Sample) -> dict[str, bytes]:
    """The shard members of a sample as bytes, keyed by extension (sorted, as WebDataset writes them)."""
    corruption = sample.corruption
    return {
        "fill.png": encode_png(corruption.fill, PNG_LEVEL),
        "input.png": encode_png(corruption.input, PNG_LEVEL),
        "json": json.dumps(sample.meta, sort_keys=True, separators=(",", ":")).encode(),
        "mask.png": encode_png(corruption.mask * np.uint8(255), PNG_LEVEL),
        "soft_mask.png": encode_png(corruption.soft_mask, PNG_LEVEL),
        "target.png": encode_png(sample.target, PNG_LEVEL),
    }


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def shard_content(spec: SetSpec, corpus: Corpus) -> str:
    """What a shard's bytes follow from: the set's content digest and the corpus arrays' sha256 (see sidecars)."""
    arrays = {k: v["sha256"] for k, v in sorted(corpus.manifest["arrays"].items())}
    return hashlib.sha256(json.dumps([content_digest(spec), arrays]).encode()).hexdigest()


def _sidecar_text(digest: str, name: str, content: str) -> bytes:
    # sha256sum-compatible (`sha256sum -c` skips the comment line), plus what the bytes were made from
    return f"{digest}  {name}\n# set content {content}\n".encode()


def _sidecar_content(sidecar: Path) -> str:
    for line in sidecar.read_text(errors="replace").splitlines():
        if line.startswith("# set content "):
            return line.removeprefix("# set content ").strip()
    return ""


def open_corpus(spec: SetSpec) -> Corpus | PairCorpus:
    """The set's built corpus: crops to corrupt, or real pairs for a ``kind = "pairs"`` set."""
    return (PairCorpus if spec.kind == "pairs" else Corpus)(corpus_dir(spec.corpus.name))


def set_sample(spec: SetSpec, corpus: Corpus | PairCorpus, index: int, clean_index: int) -> Sample:
    """Sample ``index`` of the set: a synthetic corruption of crop ``clean_index``, or that real pair."""
    if spec.kind != "pairs":
        return corrupt_sample(spec, corpus, index, clean_index)
    target, corruption, fields = pair_sample(corpus, spec.clean_split, clean_index)
    key = sample_key(spec, index)
    return Sample(key, target, corruption, {"key": key, "set": spec.name, "index": index, **fields})


def source_count(spec: SetSpec, corpus: Corpus | PairCorpus) -> int:
    """How many clean crops (or pairs) the set's samples are drawn from."""
    return corpus.count(spec.clean_split) if spec.kind == "pairs" else len(clean_pool(spec, corpus))


def write_shard(spec: SetSpec, shard: int, out_dir: Path) -> dict:
    """Generate one shard under a temporary name, then rename it; return its lock entry.

    Runs inside a joblib worker: it opens the corpus itself (memory-mapped) and returns only hashes.
    """
    corpus = open_corpus(spec)
    indices = spec.shard_range(shard)
    final = out_dir / spec.shard_name(shard)
    tmp = out_dir / f".{final.name}.partial"
    try:
        with open(tmp, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                cleans = clean_indices(spec, source_count(spec, corpus), indices)
                for index, clean_index in zip(indices, cleans):
                    sample = set_sample(spec, corpus, index, clean_index)
                    for ext, data in encode_sample(sample).items():
                        _tar_member(tar, f"{sample.key}.{ext}", data)
            handle.flush()
            os.fsync(handle.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sidecar = _sidecar_text(digest, final.name, shard_content(spec, corpus))
    atomic_write_bytes(final.with_name(final.name + ".sha256"), sidecar)
    return {"file": final.name, "sha256": digest, "count": len(indices), "bytes": final.stat().st_size}


def _existing_entry(spec: SetSpec, shard: int, out_dir: Path, content: str) -> dict | None:
    """The lock entry of a complete shard from an earlier run, or None if it must be (re)written.

    Raises:
        ShardError: the shard was made from another version of the manifest or corpus (its sidecar says so).
    """
    final = out_dir / spec.shard_name(shard)
    sidecar = final.with_name(final.name + ".sha256")
    if not (final.is_file() and sidecar.is_file()):
        return None
    made_from = _sidecar_content(sidecar)
    if not made_from:  # a sidecar from before content digests: rewrite rather than trust
        return None
    if made_from != content:
        raise StaleShardError(f"{final} was made from another version of set {spec.name} (its manifest or corpus "
                              f"changed): pass --overwrite to regenerate the set, or choose another --out")
    recorded = "".join(sidecar.read_text(errors="replace").split()[:1])  # empty or damaged: rewrite the shard
    if sha256_file(final) != recorded:
        return None
    return {
        "file": final.name,
        "sha256": recorded,
        "count": len(spec.shard_range(shard)),
        "bytes": final.stat().st_size,
    }


def library_versions() -> dict[str, str]:
    import PIL

    return {
        "blindbench": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
    }


def ensure_corpus(spec: SetSpec, workers: int = -1, progress: bool = True) -> None:
    """Build the set's corpus if it is not built yet."""
    if spec.kind == "pairs":
        if not is_pair_corpus(spec.corpus.name):
            raise BlindbenchError(f"set {spec.name}: paired corpus {spec.corpus.name!r} is not built (run "
                                  f"`blindbench corpus pairs --name {spec.corpus.name} --input DIR --target DIR`)")
        return
    if is_built(spec.corpus.name):
        return
    print(f"set {spec.name}: building its corpus {spec.corpus.name!r} first (as `blindbench corpus build` does)",
          file=sys.stderr)  # an earlier step of the chain: say so rather than run it silently
    if spec.corpus.embedded:
        if spec.corpus.name != "photos":
            raise BlindbenchError(f"set {spec.name}: corpus {spec.corpus.name!r} is not built and names no folders")
        build_embedded_corpus(workers=workers, progress=progress)
    else:
        build_corpus(
            folder_sources(spec.corpus.clean, spec.corpus.fill), spec.corpus.config, workers=workers, progress=progress
        )


@dataclass
class GenerateReport:
    out_dir: Path
    lock: dict
    written: int
    kept: int


def generate_set(
    spec: SetSpec,
    out_dir: str | os.PathLike[str] | None = None,
    workers: int = -1,
    backend: str = "loky",
    progress: bool = True,
    overwrite: bool = False,
) -> GenerateReport:
    """Write all shards of ``spec`` and its lock; complete shards from an interrupted run are kept.

    Args:
        spec: the set.
        out_dir: output folder (default ``<data>/sets/<name>``).
        workers: joblib workers (-1: all cores); the bytes do not depend on it.
        backend: any joblib backend (``loky``, ``threading``, ``multiprocessing``, or ``dask``/``ray`` when
            installed and registered), so a cluster runs the same command.
        progress: show a progress bar.
        overwrite: regenerate shards made from another version of the manifest or corpus (else an error).

    Raises:
        StaleShardError: ``out_dir`` holds shards of another version of the set and ``overwrite`` is False.
        BlindbenchError: another ``generate`` holds ``out_dir``.
    """
    out_dir = Path(out_dir) if out_dir is not None else set_dir(spec.name)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BlindbenchError(f"output folder not writable: {out_dir} ({exc.strerror})") from None
    ensure_corpus(spec, workers=workers, progress=progress)
    corpus = open_corpus(spec)
    if corpus.manifest["config"]["crop"] != spec.size:
        raise BlindbenchError(
            f"set {spec.name} wants {spec.size}px images, corpus {corpus.name} has "
            f"{corpus.manifest['config']['crop']}px crops"
        )
    with exclusive_folder(out_dir, "generate"):
        return _generate_locked(spec, out_dir, corpus, workers, backend, progress, overwrite)


def _generate_locked(spec: SetSpec, out_dir: Path, corpus: Corpus, workers: int, backend: str, progress: bool,
                     overwrite: bool) -> GenerateReport:
    for stale in out_dir.glob(f".{spec.name}-*.partial"):  # left by a killed run
        stale.unlink()
    content = shard_content(spec, corpus)
    entries: dict[int, dict] = {}
    todo = []
    for shard in range(spec.shard_count):
        try:
            entry = _existing_entry(spec, shard, out_dir, content)
        except StaleShardError:
            if not overwrite:
                raise
            entry = None
        if entry is None:
            todo.append(shard)
        else:
            entries[shard] = entry
    kept = len(entries)
    if todo:
        jobs = (delayed(write_shard)(spec, shard, out_dir) for shard in todo)
        results = Parallel(n_jobs=workers, backend=backend, return_as="generator")(jobs)
        bar = tqdm(
            total=spec.count,
            initial=sum(e["count"] for e in entries.values()),
            unit="sample",
            desc=f"generate {spec.name}",
            disable=not progress,
        )
        with bar:
            for shard, entry in zip(todo, results):
                entries[shard] = entry
                bar.update(entry["count"])
    lock = {
        "set": spec.name,
        "manifest_sha256": spec.sha256,
        "content_sha256": content,
        "count": spec.count,
        "samples_per_shard": spec.samples_per_shard,
        "shards": [entries[s] for s in range(spec.shard_count)],
        "versions": library_versions(),
    }
    atomic_write_bytes(out_dir / f"{spec.name}.lock.json", (json.dumps(lock, indent=1) + "\n").encode())
    return GenerateReport(out_dir, lock, len(todo), kept)


def committed_lock_path(name: str) -> Path:
    return manifests_dir() / f"{name}.lock.json"


def find_lock(spec: SetSpec, out_dir: Path) -> Path:
    """The lock a set is checked against: the committed one when there is one, else the one beside the shards."""
    committed = committed_lock_path(spec.name)
    return committed if committed.is_file() else out_dir / f"{spec.name}.lock.json"


@dataclass
class VerifyReport:
    lock_path: Path
    problems: list[str]
    checked: int

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_set(
    spec: SetSpec, out_dir: str | os.PathLike[str] | None = None, lock_path: Path | None = None
) -> VerifyReport:
    """Check every shard of ``spec`` in ``out_dir`` against a lock (committed one first, else the generated one)."""
    out_dir = Path(out_dir) if out_dir is not None else set_dir(spec.name)
    if lock_path is None:
        lock_path = find_lock(spec, out_dir)
    if not lock_path.is_file():
        raise ShardError(f"no lock for set {spec.name}: {lock_path} (run `blindbench generate --set {spec.name}`)")
    try:
        lock = json.loads(lock_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShardError(f"lock file is not valid JSON: {lock_path} ({exc})") from None
    entries = lock.get("shards", []) if isinstance(lock, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("sha256"), str) for e in entries
    ):
        raise ShardError(f"not a blindbench lock (each shard needs a 'file' and a 'sha256'): {lock_path}")
    problems = []
    if lock.get("manifest_sha256") != spec.sha256:
        problems.append(f"lock {lock_path.name} was made from a different manifest than {spec.path}")
    if lock.get("content_sha256") and (is_pair_corpus if spec.kind == "pairs" else is_built)(spec.corpus.name):
        content = shard_content(spec, open_corpus(spec))
        if lock["content_sha256"] != content:
            problems.append(f"lock {lock_path.name} was made from another version of the set or its corpus")
    if lock.get("count") != spec.count or len(lock.get("shards", [])) != spec.shard_count:
        problems.append(
            f"lock {lock_path.name} lists {lock.get('count')} samples in {len(lock.get('shards', []))} "
            f"shards; the manifest says {spec.count} in {spec.shard_count}"
        )
    for entry in lock.get("shards", []):
        path = out_dir / entry["file"]
        if not path.is_file():
            problems.append(f"missing shard {path}")
            continue
        size = path.stat().st_size
        if size != entry.get("bytes", size):
            problems.append(f"shard {path} is {size} bytes, the lock says {entry['bytes']} (truncated or altered)")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"shard {path} does not match its lock sha256 (altered)")
    versions = library_versions()
    if problems and lock.get("versions") and lock["versions"] != versions:
        diff = {k: (lock["versions"].get(k), v) for k, v in versions.items() if lock["versions"].get(k) != v}
        problems.append(f"library versions differ from the lock's (lock, here): {diff}")
    return VerifyReport(lock_path, problems, len(lock.get("shards", [])))


def iter_shard_samples(path: str | os.PathLike[str]) -> Iterator[dict[str, bytes]]:
    """Read a shard's samples as ``{"__key__": key, ext: bytes}`` in file order; a broken tar is a `ShardError`."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"shard not found: {path}")
    sample: dict = {}
    try:
        with tarfile.open(path, mode="r") as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                if sample and sample["__key__"] != key:
                    yield sample
                    sample = {}
                sample["__key__"] = key
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                data = handle.read()
                if len(data) != member.size:
                    raise tarfile.ReadError("unexpected end of data")
                sample[ext] = data
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ShardError(f"truncated or corrupt shard {path}: {exc}") from None
    if sample:
        yield sample

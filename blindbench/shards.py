"""Writing benchmark sets as reproducible WebDataset shards, with a lock that pins their bytes.

Each shard ``<set>-%06d.tar`` holds, per sample key (no dots), the members ``KEY.input.png`` (I),
``KEY.target.png`` (O), ``KEY.mask.png`` (hard M, 0/255), ``KEY.soft_mask.png`` (M̃, 8-bit),
``KEY.fill.png`` (N) and ``KEY.json``. ``webdataset.TarWriter`` writes them with fixed mtime, owner and
mode, PNGs are encoded by OpenCV at a fixed level: the same manifest gives the same bytes for any number of
workers, on any joblib backend (a dask or ray cluster too), on a rerun, and after an interrupted run.

The JSON has one flat schema for every pattern, so tools that infer a table schema from a few samples
(Hugging Face ``datasets.load_dataset("webdataset", ...)``) read whole sets: ``key``, ``set`` and
``pattern`` (the recipe name) are strings, ``index`` an integer, and ``params`` (the replayable corruption
parameters, whose shape depends on the pattern) and ``provenance`` are JSON text; `read_meta` decodes them.

A shard is written to a temporary name and renamed when complete; its sha256 goes to a ``.sha256``
sidecar after the rename. A rerun keeps every shard whose sidecar matches its bytes (resume) and
rewrites the rest. ``<set>.lock.json`` lists every shard's sha256 and count plus the library versions
and the shard ``format`` (`SHARD_FORMAT`); shards of an older format are rewritten by the next ``generate``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import webdataset as wds
from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from tqdm.auto import tqdm

from blindbench import __version__
from blindbench.corpus import Corpus, build_corpus, build_embedded_corpus, folder_sources, is_built
from blindbench.errors import BlindbenchError, ShardError, unknown
from blindbench.imageio import atomic_write_bytes, encode_png, sha256_file
from blindbench.locking import exclusive_folder
from blindbench.pairs import is_pair_corpus
from blindbench.paths import data_root, manifests_dir, set_dir
from blindbench.sets import SetSpec, content_digest
from blindbench.synth import (  # noqa: F401 - re-exported: they were defined here before synth.py existed
    Sample,
    clean_indices,
    clean_pool,
    corrupt_sample,
    open_corpus,
    pick_recipe,
    sample_key,
    sample_rng,
    set_sample,
    source_count,
)

PNG_LEVEL = 1  # OpenCV's fast setting: lossless, and the generation floor measured in benchmarks/generate.py
# Version of the shard bytes' layout, in every lock and sidecar. 1: JSON nested by pattern; 2: flat JSON schema
# (params and provenance as JSON text), tar written by webdataset.TarWriter.
SHARD_FORMAT = 2
# joblib backends generate runs on: "dask" needs `pip install blindbench[dask]`, "ray" `blindbench[ray]`.
BACKENDS = ("loky", "threading", "multiprocessing", "dask", "ray")


class StaleShardError(ShardError):
    """An output folder holds shards generated from another version of the set."""


MEMBERS = ("fill.png", "input.png", "json", "mask.png", "soft_mask.png", "target.png")


def _compact_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def meta_json(meta: dict) -> bytes:
    """A sample's ``KEY.json``: its metadata with every nested value (a dict or list) as JSON text.

    The top level then has the same keys and types for every pattern (a table schema inferred from any one
    sample fits them all); `read_meta` is the inverse.
    """
    flat = {k: _compact_json(v) if isinstance(v, dict | list) else v for k, v in meta.items()}
    return _compact_json(flat).encode()


def read_meta(data: bytes | str) -> dict:
    """A ``KEY.json`` member decoded, with ``params`` and ``provenance`` back as dicts (as `sample_params` made)."""
    meta = json.loads(data)
    for key in ("params", "provenance"):
        if isinstance(meta.get(key), str):
            meta[key] = json.loads(meta[key])
    return meta


def encode_sample(sample: Sample) -> dict[str, bytes]:
    """The shard members of a sample as bytes, keyed by extension (sorted, as WebDataset writes them)."""
    corruption = sample.corruption
    return {
        "fill.png": encode_png(corruption.fill, PNG_LEVEL),
        "input.png": encode_png(corruption.input, PNG_LEVEL),
        "json": meta_json(sample.meta),
        "mask.png": encode_png(corruption.mask * np.uint8(255), PNG_LEVEL),
        "soft_mask.png": encode_png(corruption.soft_mask, PNG_LEVEL),
        "target.png": encode_png(sample.target, PNG_LEVEL),
    }


def tar_writer(handle) -> wds.TarWriter:
    """A WebDataset tar writer with fixed metadata (mtime 0, uid/gid 0, no owner names, mode 0444): the shard's
    bytes follow from its members alone. Members are written in sorted extension order, as `MEMBERS`."""
    return wds.TarWriter(handle, user="", group="", mode=0o444, mtime=0, encoder=False, compress=False)


def shard_content(spec: SetSpec, corpus: Corpus) -> str:
    """What a shard's bytes follow from: the set's content digest and the corpus arrays' sha256 (see sidecars)."""
    arrays = {k: v["sha256"] for k, v in sorted(corpus.manifest["arrays"].items())}
    return hashlib.sha256(json.dumps([content_digest(spec), arrays]).encode()).hexdigest()


def _sidecar_text(digest: str, name: str, content: str) -> bytes:
    # sha256sum-compatible (`sha256sum -c` skips the comment lines), plus what the bytes were made from
    return (f"{digest}  {name}\n# set content {content}\n# shard format {SHARD_FORMAT}\n"
            f"# libraries {_compact_json(library_versions())}\n").encode()


def _sidecar_field(text: str, name: str) -> str:
    """The value of a sidecar's ``# NAME value`` line ("" if it has none)."""
    for line in text.splitlines():
        if line.startswith(f"# {name} "):
            return line.removeprefix(f"# {name} ").strip()
    return ""


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
            with tar_writer(handle) as tar:
                cleans = clean_indices(spec, source_count(spec, corpus), indices)
                for index, clean_index in zip(indices, cleans):
                    sample = set_sample(spec, corpus, index, clean_index)
                    tar.write({"__key__": sample.key, **encode_sample(sample)})
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


@contextlib.contextmanager
def _data_root_at(root: str) -> Iterator[None]:
    """Resolve corpora under ``root`` meanwhile: a cluster worker does not share the caller's environment."""
    if data_root().resolve() == Path(root):
        yield
        return
    previous = os.environ.get("BLINDBENCH_DATA")
    os.environ["BLINDBENCH_DATA"] = root
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("BLINDBENCH_DATA", None)
        else:
            os.environ["BLINDBENCH_DATA"] = previous


def shard_job(spec: SetSpec, shard: int, out_dir: str, root: str) -> dict:
    """`write_shard` as a job for any worker, one on another machine too: every path comes absolute."""
    with _data_root_at(root):
        return write_shard(spec, shard, Path(out_dir))


def _existing_entry(spec: SetSpec, shard: int, out_dir: Path, content: str) -> dict | None:
    """The lock entry of a complete shard from an earlier run, or None if it must be (re)written.

    Raises:
        ShardError: the shard was made from another version of the manifest or corpus (its sidecar says so).
    """
    final = out_dir / spec.shard_name(shard)
    sidecar = final.with_name(final.name + ".sha256")
    if not (final.is_file() and sidecar.is_file()):
        return None
    text = sidecar.read_text(errors="replace")
    made_from = _sidecar_field(text, "set content")
    if not made_from:  # a sidecar from before content digests: rewrite rather than trust
        return None
    if made_from != content:
        raise StaleShardError(f"{final} was made from another version of set {spec.name} (its manifest or corpus "
                              f"changed): pass --overwrite to regenerate the set, or choose another --out")
    if _sidecar_field(text, "shard format") != str(SHARD_FORMAT):  # an older blindbench's layout: rewrite
        return None
    # the same set drawn and encoded by other library versions (OpenCV's putText and PNG, numpy's streams) may
    # differ in its bytes: keeping such a shard would mix versions in one set, so rewrite it
    if _sidecar_field(text, "libraries") != _compact_json(library_versions()):
        return None
    recorded = "".join(text.split()[:1])  # empty or damaged: rewrite the shard
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
        "webdataset": wds.__version__,
    }


def check_backend(backend: str, address: str = "") -> None:
    """One-line errors for an unknown backend, or a cluster address given to a backend that takes none."""
    if backend not in BACKENDS:
        raise unknown("backend", backend, BACKENDS)
    if address and backend not in ("dask", "ray"):
        raise BlindbenchError(f"a cluster address is for --backend dask (--scheduler) or ray (--address), "
                              f"not {backend}")


def _extra(backend: str, module: str) -> BlindbenchError:
    return BlindbenchError(f"--backend {backend} needs {module}: pip install 'blindbench[{backend}]'")


@contextlib.contextmanager
def engine(backend: str, workers: int = -1, address: str = "") -> Iterator[int]:
    """Run the joblib calls inside on ``backend``, with the cluster it needs; yields how many jobs run at once.

    ``dask``: a dask.distributed scheduler at ``address`` (``tcp://host:8786``), else the default client of
    this process, else a local cluster of ``workers`` processes for the duration. ``ray``: the cluster at
    ``address`` (``auto``, ``ray://host:10001``, or ``$RAY_ADDRESS``), else a local ray for the duration.
    joblib knows neither name as a string: dask is passed its client through `parallel_config`, and ray
    registers itself there.
    """
    check_backend(backend, address)
    if backend == "dask":
        try:
            from dask.distributed import Client, LocalCluster, get_client
        except ImportError:
            raise _extra("dask", "dask.distributed") from None
        with contextlib.ExitStack() as stack:
            if address:
                try:
                    client = stack.enter_context(Client(address, timeout="10s", set_as_default=False))
                except (OSError, TimeoutError) as exc:
                    raise BlindbenchError(f"cannot reach the dask scheduler at {address}: {exc}") from None
            else:
                try:
                    client = get_client()
                except ValueError:  # no client yet: a local cluster for this call
                    n = (os.cpu_count() or 1) if workers == -1 else workers
                    cluster = stack.enter_context(LocalCluster(n_workers=n, threads_per_worker=1,
                                                               dashboard_address=":0"))
                    client = stack.enter_context(Client(cluster, set_as_default=False))
            slots = sum(client.nthreads().values())
            with parallel_config(backend="dask", client=client):
                yield slots if workers == -1 else min(workers, slots)
    elif backend == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError:
            raise _extra("ray", "ray") from None
        register_ray()
        started = not ray.is_initialized()
        if started:
            local = not (address or os.environ.get("RAY_ADDRESS"))
            try:
                ray.init(address=address or None, num_cpus=None if not local or workers == -1 else workers,
                         include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError) as exc:
                raise BlindbenchError(f"cannot start or reach ray at {address or 'a local ray'}: {exc}") from None
        try:
            slots = int(ray.cluster_resources().get("CPU", 1))
            with parallel_config(backend="ray"):
                yield slots if workers == -1 else min(workers, slots)
        finally:
            if started:
                ray.shutdown()
    else:
        with parallel_config(backend=backend):
            yield effective_n_jobs(workers)


def run_jobs(jobs: list, workers: int, slots: int) -> Iterator[dict]:
    """The jobs' results in order, each as soon as it is done, on the backend `engine` set up.

    Backends that return only whole lists (multiprocessing, ray) run in waves of ``slots`` jobs, so a progress
    bar still advances while they work.
    """
    try:
        parallel = Parallel(n_jobs=workers, return_as="generator")
    except ValueError:  # "does not support return_as=generator"
        with Parallel(n_jobs=workers) as waves:
            for start in range(0, len(jobs), max(slots, 1)):
                yield from waves(jobs[start:start + max(slots, 1)])
        return
    yield from parallel(jobs)


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
    address: str = "",
    wait: bool = False,
) -> GenerateReport:
    """Write all shards of ``spec`` and its lock; complete shards from an interrupted run are kept.

    Args:
        spec: the set.
        out_dir: output folder (default ``<data>/sets/<name>``).
        workers: joblib workers (-1: all cores, or all of a cluster's); the bytes do not depend on it.
        backend: one of `BACKENDS`: ``loky``, ``threading``, ``multiprocessing``, ``dask`` or ``ray`` (their
            extras installed), so a cluster runs the same command. Cluster workers must see ``out_dir`` and the
            data folder at the same paths (a shared file system) and have blindbench installed.
        progress: show a progress bar.
        overwrite: regenerate shards made from another version of the manifest or corpus (else an error).
        address: the dask scheduler or ray cluster to run on (see `engine`); empty: a local one.
        wait: if another ``generate`` holds ``out_dir``, wait for it and keep what it wrote (else an error).

    Raises:
        StaleShardError: ``out_dir`` holds shards of another version of the set and ``overwrite`` is False.
        BlindbenchError: another ``generate`` holds ``out_dir``, an unknown backend, a missing extra, or a
            cluster that cannot be reached.
    """
    check_backend(backend, address)
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
    with exclusive_folder(out_dir, "generate", wait=wait):
        return _generate_locked(spec, out_dir, corpus, workers, backend, progress, overwrite, address)


def _generate_locked(spec: SetSpec, out_dir: Path, corpus: Corpus, workers: int, backend: str, progress: bool,
                     overwrite: bool, address: str) -> GenerateReport:
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
        job: Callable[..., dict] = delayed(shard_job)
        jobs = [job(spec, shard, str(out_dir.resolve()), str(data_root().resolve())) for shard in todo]
        bar = tqdm(
            total=spec.count,
            initial=sum(e["count"] for e in entries.values()),
            unit="sample",
            desc=f"generate {spec.name}",
            disable=not progress,
        )
        with bar, engine(backend, workers, address) as slots:
            for shard, entry in zip(todo, run_jobs(jobs, workers, slots)):
                entries[shard] = entry
                bar.update(entry["count"])
    lock = {
        "set": spec.name,
        "format": SHARD_FORMAT,
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
    if lock.get("format", 1) != SHARD_FORMAT:
        problems.append(f"lock {lock_path.name} is of shard format {lock.get('format', 1)}, this blindbench writes "
                        f"format {SHARD_FORMAT}: regenerate the set (`blindbench generate`) and its lock")
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

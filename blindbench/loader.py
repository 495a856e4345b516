"""Loading samples as tensors: WebDataset shards, or corpus crops corrupted on the fly inside the workers.

Both give dicts with ``input``, ``target`` (3, H, W) float32 in [-1, 1] (x / 127.5 − 1), ``mask`` (hard M)
and ``soft_mask`` (M̃), (1, H, W) float32 in [0, 1] with 1 = damaged, plus ``pattern`` and ``key`` strings;
batched, the tensors gain a leading B and the strings become lists.

Shard pipeline (small WebDataset stages): shard list → deterministic shard shuffle from (seed, epoch) →
split by node → split by worker → tar → samples → optional buffer shuffle seeded by (seed, epoch, rank,
worker) → decode → batch. Shards are shuffled *before* splitting, with the same seed on every rank, so
ranks agree on the order and each epoch gives every worker a different subset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from blindbench.corpus import Corpus
from blindbench.errors import BlindbenchError, ShardError
from blindbench.imageio import decode_png
from blindbench.paths import corpus_dir, set_dir
from blindbench.sets import SetSpec
from blindbench.synth import Sample, clean_indices, clean_pool, corrupt_sample


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) → float32 (3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def mask_to_tensor(mask: np.ndarray, scale: float) -> torch.Tensor:
    """uint8 (H, W) → float32 (1, H, W) in [0, 1] (``scale`` is 1 for 0/1 masks, 255 for 8-bit ones)."""
    return torch.from_numpy(np.ascontiguousarray(mask)).float().div_(scale).unsqueeze(0)


def shard_urls(spec: SetSpec, folder: str | os.PathLike[str] | None = None) -> list[str]:
    """Paths of the set's shards, checking that they exist."""
    folder = Path(folder) if folder is not None else set_dir(spec.name)
    urls = [str(folder / spec.shard_name(i)) for i in range(spec.shard_count)]
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise ShardError(f"missing shard {missing[0]} (run `blindbench generate --set {spec.name}`)")
    return urls


def worker_errors(batches: Iterator[dict]) -> Iterator[dict]:
    """Batches from a DataLoader, re-raising a worker's user-facing error with its own one-line message.

    torch re-raises a worker's exception as ``type(exc)(text)`` where the text is the whole worker traceback;
    for a bad input (a corrupt shard, an unbuilt corpus, an unreadable file) the user needs only its last line.
    Other exceptions are bugs and keep their traceback.
    """
    try:
        yield from batches
    except (BlindbenchError, OSError) as exc:
        text = str(exc)
        if not (text.startswith("Caught ") and "DataLoader worker" in text.partition("\n")[0]):
            raise
        last = text.rstrip().rpartition("\n")[2]  # "blindbench.errors.ShardError: the message"
        raise type(exc)(last.partition(": ")[2] or last) from None


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def shuffle_shards(seed: int, epoch: int):
    """Stage: permute the shard list by (seed, epoch), identically on every rank and worker."""

    def stage(src: Iterable[dict]) -> Iterator[dict]:
        items = list(src)
        order = np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(len(items))
        yield from (items[i] for i in order)

    return stage


def shuffle_samples(bufsize: int, seed: int, epoch: int):
    """Stage: buffer shuffle whose generator is seeded by (seed, epoch, rank, worker): reproducible runs."""

    def stage(src: Iterable[dict]) -> Iterator[dict]:
        rank, _ = _rank_world()
        worker, _ = _worker()
        rng = random.Random(hash((seed, epoch, rank, worker)))
        yield from wds.shuffle(bufsize, min(bufsize, 100), rng=rng)(src)  # the public stage, same draws

    return stage


def _raise_shard_error(exn: Exception) -> bool:
    raise ShardError(f"truncated or corrupt shard: {exn}") from None


def decode_sample(sample: dict) -> dict:
    """Decode one sample of raw shard members into tensors."""
    try:
        meta = json.loads(sample["json"])
        return {
            "input": image_to_tensor(decode_png(sample["input.png"])),
            "target": image_to_tensor(decode_png(sample["target.png"])),
            "mask": mask_to_tensor(decode_png(sample["mask.png"], grey=True), 255.0).round_(),
            "soft_mask": mask_to_tensor(decode_png(sample["soft_mask.png"], grey=True), 255.0),
            "pattern": meta["pattern"],
            "key": sample["__key__"],
        }
    except (KeyError, ValueError) as exc:
        raise ShardError(f"bad sample {sample.get('__key__')} in {sample.get('__url__')}: {exc}") from None


def collate(samples: Sequence[dict]) -> dict:
    """Stack tensors, list strings."""
    return {
        k: torch.stack([s[k] for s in samples]) if isinstance(samples[0][k], torch.Tensor) else [s[k] for s in samples]
        for k in samples[0]
    }


def shard_dataset(
    urls: Sequence[str],
    batch_size: int | None = None,
    seed: int | None = None,
    epoch: int = 0,
    shuffle_buffer: int = 0,
    partial: bool = True,
    split_nodes: bool = True,
) -> wds.DataPipeline:
    """A WebDataset pipeline over ``urls``.

    Args:
        urls: shard paths.
        batch_size: batch in the pipeline (None: single samples).
        seed: shuffle seed; None keeps the file order (evaluation).
        epoch: epoch number, mixed into the shuffles' seeds.
        shuffle_buffer: sample buffer shuffle size (0: none).
        partial: keep a last, smaller batch.
        split_nodes: deal the shards to the distributed ranks (``$RANK`` of ``$WORLD_SIZE`` under torchrun);
            False when one process must read them all, e.g. validation on rank 0 only.
    """
    stages: list = [wds.SimpleShardList(list(urls))]
    if seed is not None:
        stages.append(shuffle_shards(seed, epoch))
    if split_nodes:
        stages.append(wds.split_by_node)
    stages += [wds.split_by_worker, wds.tarfile_to_samples(handler=_raise_shard_error)]
    if seed is not None and shuffle_buffer > 0:
        stages.append(shuffle_samples(shuffle_buffer, seed, epoch))
    stages.append(wds.map(decode_sample))
    if batch_size is not None:
        stages.append(wds.batched(batch_size, collation_fn=collate, partial=partial))
    return wds.DataPipeline(*stages)


def sample_to_tensors(sample: Sample) -> dict:
    corruption = sample.corruption
    return {
        "input": image_to_tensor(corruption.input),
        "target": image_to_tensor(sample.target),
        "mask": mask_to_tensor(corruption.mask, 1.0),
        "soft_mask": mask_to_tensor(corruption.soft_mask, 255.0),
        "pattern": sample.meta["pattern"],
        "key": sample.key,
    }


class CorruptionStream(IterableDataset):
    """Training samples corrupted on the fly from corpus crops, inside the DataLoader workers.

    Sample ``i`` of epoch ``e`` is ``corrupt_sample(spec, i, stream=e)``: the same as shard sample ``i`` at
    epoch 0, fresh corruptions (new masks, fills, clean order) every later epoch. Samples are dealt to
    (rank, worker) pairs round-robin, so each appears once per epoch whatever the worker count.

    Args:
        spec: a set manifest giving corpus, splits, recipes and ``count`` (the epoch length).
        epoch: epoch number; call `set_epoch` between epochs.
    """

    def __init__(self, spec: SetSpec, epoch: int = 0) -> None:
        super().__init__()
        self.spec, self.epoch = spec, epoch
        self._corpus: Corpus | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.spec.count

    def __iter__(self) -> Iterator[dict]:
        if self._corpus is None:
            self._corpus = Corpus(corpus_dir(self.spec.corpus.name))
        rank, world = _rank_world()
        worker, workers = _worker()
        slot, slots = rank * workers + worker, world * workers
        indices = range(slot, self.spec.count, slots)
        available = len(clean_pool(self.spec, self._corpus))
        reseeded = dataclasses.replace(self.spec, seed=self.spec.seed + 7919 * self.epoch)
        for index, clean_index in zip(indices, clean_indices(reseeded, available, indices)):
            yield sample_to_tensors(corrupt_sample(self.spec, self._corpus, index, clean_index, stream=self.epoch))

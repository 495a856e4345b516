from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from blindbench.loader import CorruptionStream, shard_dataset, shard_urls


def test_batches_are_tensors_in_range(demo_dir: Path, demo_spec) -> None:
    batch = next(iter(shard_dataset(shard_urls(demo_spec, demo_dir), batch_size=8)))
    assert batch["input"].shape == (8, 3, 256, 256) and batch["target"].shape == (8, 3, 256, 256)
    assert batch["mask"].shape == (8, 1, 256, 256) and batch["soft_mask"].shape == (8, 1, 256, 256)
    assert batch["input"].min() >= -1 and batch["input"].max() <= 1
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    assert (batch["soft_mask"] >= batch["mask"]).all()
    assert len(batch["key"]) == 8 and batch["pattern"][0] == "real"


def _keys(urls, seed, epoch) -> list[str]:
    return [s["key"] for s in shard_dataset(urls, seed=seed, epoch=epoch, shuffle_buffer=10)]


def test_shuffle_is_deterministic_per_seed_and_epoch(demo_dir: Path, demo_spec) -> None:
    urls = shard_urls(demo_spec, demo_dir)
    ordered = [s["key"] for s in shard_dataset(urls)]
    assert ordered == sorted(ordered) and len(ordered) == demo_spec.count
    first = _keys(urls, seed=1, epoch=0)
    assert first == _keys(urls, seed=1, epoch=0)
    assert first != _keys(urls, seed=1, epoch=1) and sorted(first) == ordered


def test_workers_split_the_shards_without_overlap(demo_dir: Path, demo_spec) -> None:
    dataset = shard_dataset(shard_urls(demo_spec, demo_dir), batch_size=4)
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    keys = [k for batch in loader for k in batch["key"]]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == demo_spec.count


def test_on_the_fly_stream_matches_shards_at_epoch_zero(demo_dir: Path, demo_spec) -> None:
    from_shards = next(iter(shard_dataset(shard_urls(demo_spec, demo_dir))))
    stream = CorruptionStream(demo_spec)
    fresh = next(iter(stream))
    assert fresh["key"] == from_shards["key"]
    for name in ("input", "target", "mask", "soft_mask"):
        assert torch.equal(fresh[name], from_shards[name]), name
    stream.set_epoch(1)
    assert not torch.equal(next(iter(stream))["input"], fresh["input"])


def test_on_the_fly_stream_deals_each_index_once_across_workers(demo_spec, photos_corpus) -> None:
    loader = DataLoader(CorruptionStream(demo_spec), batch_size=None, num_workers=2)
    keys = [sample["key"] for sample in loader]
    assert sorted(keys) == sorted({f"photos-demo_{i:06d}" for i in range(demo_spec.count)})


def test_the_stream_does_not_import_the_shard_writer() -> None:
    """Data flows one way: synthesis feeds both the shard writer and the loader's stream; neither needs the other."""
    import subprocess
    import sys

    code = "import sys, blindbench.loader; print('blindbench.shards' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

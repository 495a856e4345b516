"""Shards load with Hugging Face ``datasets.load_dataset("webdataset", ...)``, with and without streaming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blindbench.loader import shard_urls
from blindbench.shards import iter_shard_samples, read_meta


@pytest.mark.parametrize("streaming", [False, True])
def test_demo_set_loads_with_hf_datasets(demo_dir: Path, demo_spec, tmp_path: Path, monkeypatch,
                                         streaming: bool) -> None:  # fmt: skip
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing under ~/.cache, no hub look-ups
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is not installed (dev extra)")
    urls = shard_urls(demo_spec, demo_dir)
    dataset = datasets.load_dataset("webdataset", data_files={"test": urls}, split="test", streaming=streaming,
                                    cache_dir=str(tmp_path / "cache"))  # fmt: skip
    rows = list(dataset)
    assert len(rows) == demo_spec.count
    assert {row["json"]["pattern"] for row in rows} == {r.name for r in demo_spec.recipes}
    raw = next(iter_shard_samples(urls[0]))
    first = rows[0]
    assert first["__key__"] == raw["__key__"] and first["input.png"].size == (demo_spec.size, demo_spec.size)
    assert json.loads(first["json"]["params"]) == read_meta(raw["json"])["params"]

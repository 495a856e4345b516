"""Synthesis: sample *i* of a set as ⟨I, O, M, N⟩ plus its JSON metadata, before any encoding.

Everything here is a pure function of the set manifest, the built corpus and the sample index (every random
draw from a generator seeded by (set seed, index)), so the shard writer (`blindbench.shards`) and the loader's
on-the-fly stream (`blindbench.loader.CorruptionStream`) produce the same samples without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blindbench.corpus import Corpus, CropPool
from blindbench.corruption import PATTERNS_WITH_IMAGE_FILL, Corruption, apply, sample_params
from blindbench.errors import BlindbenchError
from blindbench.pairs import PairCorpus, pair_sample
from blindbench.paths import corpus_dir
from blindbench.sets import SetSpec


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

"""Generation throughput: samples/s/core end to end against the PNG-encoding floor, measured in the same run.

The floor is the fastest lossless encode of the same five members alone (OpenCV PNG at its fast setting);
end to end adds mask drawing, soft mask, fill, blend, JSON and tar writing. Target: ≥ 50 samples/s/core,
i.e. within 1.5x of the floor. Run: ``python benchmarks/generate.py [--samples N] [--generate-count 4000]``
(needs the photos corpus: ``blindbench corpus build``).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import tempfile
import time

import cv2
import numpy as np
import torch
from common import cpu_description

from blindbench.corpus import Corpus, build_embedded_corpus, is_built
from blindbench.paths import corpus_dir
from blindbench.sets import load_set
from blindbench.shards import (
    PNG_LEVEL,
    clean_indices,
    clean_pool,
    corrupt_sample,
    encode_sample,
    generate_set,
    tar_writer,
)


def machine() -> str:
    return f"{cpu_description()}, OpenCV {cv2.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--set", default="photos-demo")
    parser.add_argument("--generate-count", type=int, default=0,
                        help="time `generate` of the set at this many samples instead of its own count (e.g. 4000)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if not is_built("photos"):
        build_embedded_corpus(progress=False)
    spec = load_set(args.set)
    corpus = Corpus(corpus_dir(spec.corpus.name))
    indices = range(args.samples)
    cleans = clean_indices(spec, len(clean_pool(spec, corpus)), indices)

    # Warm-up, then the samples themselves (kept for the floor measurement).
    corrupt_sample(spec, corpus, 0, cleans[0])
    start = time.perf_counter()
    buffer = io.BytesIO()
    samples = []
    with tar_writer(buffer) as tar:
        for index, clean_index in zip(indices, cleans):
            sample = corrupt_sample(spec, corpus, index % spec.count, clean_index)
            samples.append(sample)
            tar.write({"__key__": sample.key, **encode_sample(sample)})
    end_to_end = time.perf_counter() - start

    start = time.perf_counter()
    for sample in samples:
        c = sample.corruption
        for image in (c.input, sample.target, c.mask * np.uint8(255), c.soft_mask, c.fill):
            bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    floor = time.perf_counter() - start

    workers = os.cpu_count() or 1
    load = os.getloadavg()[0]
    spec_big = load_set(args.set)
    if args.generate_count:  # the same manifest at another size: crops cycle through the permutation
        spec_big = dataclasses.replace(spec_big, name=f"{spec_big.name}-n{args.generate_count}",
                                       count=args.generate_count)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_set(spec_big, tmp, workers=workers, progress=False)
        parallel = time.perf_counter() - start

    n = args.samples
    print(f"machine: {machine()}; load average before: {load:.2f}")
    print(f"set {spec.name}, {spec.size}x{spec.size}, {n} samples, one core unless stated\n")
    print("| measurement | seconds | samples/s/core | ms/sample |")
    print("|---|---:|---:|---:|")
    print(f"| floor: OpenCV PNG (level {PNG_LEVEL}) of the 5 members only | {floor:.3f} | {n / floor:.1f} | "
          f"{1000 * floor / n:.2f} |")
    print(f"| end to end (corrupt + encode + tar) | {end_to_end:.3f} | {n / end_to_end:.1f} | "
          f"{1000 * end_to_end / n:.2f} |")
    print(f"| `generate` {spec_big.count} samples, {workers} workers, incl. start-up and fsync | {parallel:.3f} | "
          f"{spec_big.count / parallel / workers:.1f} | {1000 * parallel * workers / spec_big.count:.2f} |")
    print(f"\nend-to-end / floor time ratio: {end_to_end / floor:.2f}x (target ≤ 1.5x; ≥ 50 samples/s/core)")


if __name__ == "__main__":
    main()

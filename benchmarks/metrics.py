"""PSNR + SSIM throughput: blindbench.metrics on CPU against scikit-image in the same run.

64 pairs of 256x256 crops of the photos bundled with scikit-image and scikit-learn, each degraded (JPEG,
blur, noise, a pasted hole). scikit-image runs image by image on the uint8 arrays with the pinned convention
(``peak_signal_noise_ratio(data_range=255)``, ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1)``); blindbench gets the float32 [0, 1] batch,
rounding included in its time. blindbench is timed three ways: as shipped (the compiled CPU kernels on
``torch.get_num_threads()`` threads), the same kernels on one thread, and the torch-ops path that GPUs use, run on
the CPU. All are timed ``--repeats`` times, interleaved; the table shows the best run and the median (the CPU may
be shared). Target: as shipped, ≥ 5x faster than scikit-image at equal values (max |diff| ≤ 1e-5). ``--busy``
runs the timings beside one busy-looping process (a shared machine). Run:
``python benchmarks/metrics.py [--pairs 64] [--size 256] [--repeats 5] [--busy]``."""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np
import skimage
import torch
from common import cpu_description
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.datasets import load_sample_images

import blindbench.metrics as metrics
from blindbench.metrics import psnr, ssim

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def machine() -> str:
    return (
        f"{cpu_description()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"scikit-image {skimage.__version__}"
    )


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def degrade(img: np.ndarray, index: int, rng: np.random.Generator) -> np.ndarray:
    kind = index % 4
    if kind == 0:
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="JPEG", quality=int(rng.integers(10, 60)))
        return np.array(Image.open(buffer).convert("RGB"))
    if kind == 1:
        return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.8, 2.5)))
    if kind == 2:
        return np.clip(img + rng.normal(0.0, rng.uniform(4, 20), img.shape), 0, 255).round().astype(np.uint8)
    out = img.copy()  # an inpainting-like hole: a box filled with a heavily blurred version of itself
    h, w = img.shape[:2]
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    y1, x1 = y0 + rng.integers(h // 8, h // 2), x0 + rng.integers(w // 8, w // 2)
    out[y0:y1, x0:x1] = cv2.GaussianBlur(img, (0, 0), 8.0)[y0:y1, x0:x1]
    return out


def make_pairs(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n (clean, degraded) uint8 crops of size x size x 3, cycling through the bundled photos."""
    photos = [getattr(data, name)() for name in PHOTOS] + list(load_sample_images().images)
    rng = np.random.default_rng(seed)
    clean, degraded = [], []
    for i in range(n):
        photo = photos[i % len(photos)]
        y = rng.integers(0, photo.shape[0] - size + 1)
        x = rng.integers(0, photo.shape[1] - size + 1)
        crop = np.ascontiguousarray(photo[y : y + size, x : x + size, :3])
        clean.append(crop)
        degraded.append(degrade(crop, i, rng))
    return np.stack(clean), np.stack(degraded)


def run_skimage(clean: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = [peak_signal_noise_ratio(c, d, data_range=255) for c, d in zip(clean, degraded)]
    s = [
        structural_similarity(
            d, c, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
        )
        for c, d in zip(clean, degraded)
    ]
    return np.array(p), np.array(s)


def timeit(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_blindbench(clean: torch.Tensor, degraded: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return psnr(degraded, clean).double().numpy(), ssim(degraded, clean).double().numpy()


def run_one_thread(clean: torch.Tensor, degraded: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_blindbench(clean, degraded)
    finally:
        torch.set_num_threads(threads)


def run_torch_ops(clean: torch.Tensor, degraded: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    cached = metrics._cpu_kernels
    metrics._cpu_kernels = lambda: None  # the path tensors on a GPU take
    try:
        return run_blindbench(clean, degraded)
    finally:
        metrics._cpu_kernels = cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--busy", action="store_true", help="time beside a competing busy-looping process")
    args = parser.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        report(args)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def report(args: argparse.Namespace) -> None:

    clean, degraded = make_pairs(args.pairs, args.size)
    # contiguous (N, 3, H, W) float32 in [0, 1], the layout of the loader and of model outputs
    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).float().div(255)  # noqa: E731
    clean_t, degraded_t = to_tensor(clean), to_tensor(degraded)
    print(f"Machine: {machine()}")
    print(f"Load average at start: {load_average()}")
    busy = ", beside one busy-looping process" if args.busy else ""
    print(f"{args.pairs} pairs of {args.size}x{args.size} RGB, {args.repeats} interleaved repeats{busy}\n")

    start = time.perf_counter()
    run_blindbench(clean_t[:2], degraded_t[:2])  # warm-up: loads (or first compiles) the kernels
    print(f"First call (kernel load or compile): {time.perf_counter() - start:.2f} s\n")
    run_torch_ops(clean_t[:2], degraded_t[:2])
    runs = {
        "skimage": ("scikit-image, loop over uint8 images", run_skimage, (clean, degraded)),
        "blindbench": (f"blindbench, compiled kernels, {torch.get_num_threads()} threads (as shipped)", run_blindbench,
                       (clean_t, degraded_t)),
        "one_thread": ("blindbench, compiled kernels, 1 thread", run_one_thread, (clean_t, degraded_t)),
        "torch_ops": ("blindbench, torch ops (the GPU path) on CPU", run_torch_ops, (clean_t, degraded_t)),
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in runs}
    results = {}
    for _ in range(args.repeats):
        for name, (_, fn, inputs) in runs.items():
            start = time.perf_counter()
            results[name] = fn(*inputs)
            times[name].append(time.perf_counter() - start)

    p_ref, s_ref = results["skimage"]
    diffs = {name: (np.abs(p - p_ref).max(), np.abs(s - s_ref).max()) for name, (p, s) in results.items()}
    print("| method | best s | median s | images/s (best) | scikit-image / method (best, median) | "
          "max abs diff PSNR / SSIM |")  # fmt: skip
    print("|---|---:|---:|---:|---|---|")
    for name, (label, _, _) in runs.items():
        best, median = min(times[name]), statistics.median(times[name])
        ratio = f"{min(times['skimage']) / best:.2f}x, {statistics.median(times['skimage']) / median:.2f}x"
        diff = "reference" if name == "skimage" else f"{diffs[name][0]:.1e} dB / {diffs[name][1]:.1e}"
        print(f"| {label} | {best:.3f} | {median:.3f} | {args.pairs / best:.1f} | {ratio} | {diff} |")
    ratio_best = min(times["skimage"]) / min(times["blindbench"])
    ratio_median = statistics.median(times["skimage"]) / statistics.median(times["blindbench"])
    print(
        f"\nSpeed ratio as shipped (scikit-image / blindbench): {ratio_best:.2f}x best, {ratio_median:.2f}x median "
        f"(target ≥ 5x)"
    )
    p64, s64 = run_blindbench(clean_t.double(), degraded_t.double())  # not timed: exactness with float64 output
    print(f"float64 in/out: max abs diff PSNR {np.abs(p64 - p_ref).max():.1e} dB, SSIM {np.abs(s64 - s_ref).max():.1e}")
    split = {name: min(timeit(lambda f=f: f(degraded_t, clean_t)) for _ in range(args.repeats)) for name, f in
             (("psnr", psnr), ("ssim", ssim))}  # fmt: skip
    print(f"blindbench split (best of {args.repeats}): ssim {split['ssim']:.3f} s, psnr {split['psnr']:.3f} s")
    print(f"SSIM range {s_ref.min():.4f}..{s_ref.max():.4f}, PSNR range {p_ref.min():.2f}..{p_ref.max():.2f} dB")
    print(f"Load average at end: {load_average()}")
    worst = max(max(d) for d in diffs.values())
    if worst > 1e-5:
        raise SystemExit(f"values disagree with scikit-image: max |diff| {worst:.2e} > 1e-5")


if __name__ == "__main__":
    main()

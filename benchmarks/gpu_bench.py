"""The device half of ``benchmarks/gpu.sh``: forward, training and metric tables, each written to ``$OUT`` as it ends.

Sections (``--sections``, all by default), each a markdown table file:

- ``forward.md``: the five paper models, ms per image at batch 1 and images/s at batch 64, in fp32, bf16 autocast,
  bf16 + channels-last, and bf16 + channels-last + ``torch.compile`` while the compile budget lasts;
- ``train.md``: training images/s of VCN's separate and joint stages (benchmarks/train.py's step), fp32 and bf16;
- ``metrics.md``: PSNR/SSIM (both conventions) through the torch path on the device against the numba path on
  the CPU, the largest difference (must be <= 1e-6).

``--dry-run`` runs all of it on the CPU at tiny sizes (tiny preset, 32², batch 2, no compile), the torch metric
path forced on CPU; it checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch

from blindbench.models import create_model

PAPER_MODELS = ("vcn", "ca", "gmc", "pc", "gc")
METRIC_TOLERANCE = 1e-6


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(f, device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after two warm-up calls."""
    f(), f()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        f()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def forward_table(args: argparse.Namespace, device: torch.device, out: Path) -> None:
    modes = ("fp32", "bf16", "bf16+cl", "bf16+cl+compile")
    lines = [f"forward, {args.preset} preset, {args.size}², median of {args.repeats}; batch 1: ms/image, batch "
             f"{args.big}: images/s", "", "| model | mode | ms @ 1 | img/s @ " + str(args.big) + " | compile s |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    compile_left = args.compile_budget
    for name in args.models.split(","):
        torch.manual_seed(0)
        base = create_model(name, args.preset).eval().to(device)
        for mode in modes:
            if mode.endswith("compile") and (compile_left <= 0 or args.dry_run):
                lines.append(f"| {name} | {mode} | skipped | {'dry run' if args.dry_run else 'budget'} | – |")
                continue
            cl = "cl" in mode
            model = base.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if "bf16" in mode
                        else contextlib.nullcontext())  # fmt: skip
            compile_s = 0.0
            if mode.endswith("compile"):
                start = time.perf_counter()
                model = torch.compile(model)
            cells = []
            for batch in (1, args.big):
                x = torch.rand(batch, 3, args.size, args.size, device=device) * 2 - 1
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), autocast:
                    if mode.endswith("compile"):
                        model(x)
                        _sync(device)
                        compile_s += time.perf_counter() - start
                        start = time.perf_counter()
                    t = _timed(lambda m=model, x=x: m(x), device, args.repeats)
                cells.append(f"{1000 * t:.2f}" if batch == 1 else f"{batch / t:.0f}")
            if mode.endswith("compile"):
                compile_left -= compile_s
            lines.append(f"| {name} | {mode} | {cells[0]} | {cells[1]} | {compile_s:.0f} |" if compile_s
                         else f"| {name} | {mode} | {cells[0]} | {cells[1]} | – |")  # fmt: skip
            print(lines[-1], flush=True)
        del base
        if device.type == "cuda":
            torch.cuda.empty_cache()
    (out / "forward.md").write_text("\n".join(lines) + "\n")


def train_table(args: argparse.Namespace, device: torch.device, out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train import measure  # benchmarks/train.py: one full training step on synthetic batches

    lines = [f"training images/s, vcn {args.preset} preset, {args.size}², batch {args.train_batch}, "
             f"{args.train_steps} timed steps after 1, {args.critic_steps} critic steps, no VGG terms", "",
             "| stage | fp32 img/s | bf16 img/s | bf16 / fp32 |", "|---|---:|---:|---:|"]  # fmt: skip
    for stage in ("separate", "joint"):
        rates = []
        for amp in (False, True):
            ns = argparse.Namespace(preset=args.preset, batch=args.train_batch, critic_steps=args.critic_steps,
                                    vgg19="", size=args.size, channels_last=False, no_amp=not amp,
                                    steps=args.train_steps, warmup=1)  # fmt: skip
            if device.type == "cpu" and amp:  # benchmarks/train.py autocasts on CUDA only
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    rates.append(measure("vcn", stage, device, ns))
            else:
                rates.append(measure("vcn", stage, device, ns))
        lines.append(f"| {stage} | {rates[0]:.1f} | {rates[1]:.1f} | {rates[1] / rates[0]:.2f}x |")
        print(lines[-1], flush=True)
    (out / "train.md").write_text("\n".join(lines) + "\n")


def metrics_table(args: argparse.Namespace, device: torch.device, out: Path) -> None:
    from blindbench import metrics

    g = torch.Generator().manual_seed(0)
    target = torch.rand(args.metric_images, 3, args.metric_size, args.metric_size, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    pred[0] = target[0]  # identical images: PSNR capped at 100, SSIM exactly 1 on both paths
    cpu_kernels = metrics._cpu_kernels() is not None
    lines = [f"metrics, {args.metric_images} images of {args.metric_size}²: torch path on {device.type} vs "
             f"{'numba' if cpu_kernels else 'torch (numba missing)'} path on CPU", "",
             "| metric | convention | max |Δ| | ok (<= 1e-6) |", "|---|---|---:|---|"]  # fmt: skip
    bad = []
    for fn in (metrics.psnr, metrics.ssim):
        for convention in ("rgb", "y"):
            cpu = fn(pred.double(), target.double(), convention)
            if device.type == "cpu":  # dry run: force the torch ops on the CPU
                saved, metrics._cpu_kernels = metrics._cpu_kernels, lambda: None
                try:
                    dev = fn(pred.double(), target.double(), convention)
                finally:
                    metrics._cpu_kernels = saved
            else:
                dev = fn(pred.double().to(device), target.double().to(device), convention).cpu()
            diff = (dev - cpu).abs().max().item()
            ok = "yes" if diff <= METRIC_TOLERANCE else "NO"
            lines.append(f"| {fn.__name__} | {convention} | {diff:.1e} | {ok} |")
            if diff > METRIC_TOLERANCE:
                bad.append(f"{fn.__name__}/{convention} {diff:.2e}")
    (out / "metrics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]), flush=True)
    if bad:
        sys.exit("GPU and CPU metrics differ: " + ", ".join(bad))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--sections", default="forward,train,metrics")
    parser.add_argument("--models", default=",".join(PAPER_MODELS))
    parser.add_argument("--compile-budget", type=float, default=150.0, help="seconds of torch.compile in all")
    args = parser.parse_args()
    dry = args.dry_run
    args.preset, args.size, args.big, args.repeats = ("tiny", 32, 2, 1) if dry else ("paper", 256, 64, 5)
    args.train_batch, args.train_steps, args.critic_steps = (2, 1, 1) if dry else (12, 5, 5)
    args.metric_images, args.metric_size = (3, 24) if dry else (64, 256)
    device = torch.device("cpu" if dry else "cuda")
    if not dry and not torch.cuda.is_available():
        sys.exit("gpu_bench.py: no CUDA device (use --dry-run on a CPU machine)")
    out = Path(os.environ.get("OUT", "data/gpu-out"))
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    sections = {"forward": forward_table, "train": train_table, "metrics": metrics_table}
    for section in args.sections.split(","):
        start = time.perf_counter()
        print(f"== {section}", flush=True)
        sections[section](args, device, out)
        print(f"== {section} done in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()

"""Model cost: parameters, GMACs and forward latency per 256² image at batch 1 and 8 (CPU; GPU when available).

On a GPU the forward runs in bf16 autocast with channels_last. The paper's VCN ran 41.64 ms per image on a
TITAN X; targets on an H100: VCN at batch 1 under 5 ms, at batch 64 over 2,000 images/s.
Run: ``python benchmarks/models.py [--models vcn,ca] [--batches 1,8] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch
from common import cpu_description

from blindbench.models import create_model, model_names, summarize
from blindbench.runtime import active_allocator


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{cpu_description()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def latency_ms(model: torch.nn.Module, batch: int, size: int, device: torch.device, repeats: int) -> float:
    """Best-of-``repeats`` wall time of one forward pass, per image, in ms (least disturbed by other load)."""
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), autocast:
        model(x)  # warm-up
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return 1000 * min(times) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(model_names()))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # the `blindbench` command runs under tcmalloc; to measure that, start this script with
    # LD_PRELOAD=libtcmalloc_minimal.so.4 (blindbench/runtime.py)
    print(f"allocator: {active_allocator()}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    batches = [int(b) for b in args.batches.split(",")]
    for device in devices:
        print(f"\ndevice: {machine(device)}")
        header = " | ".join(f"ms/image @ batch {b}" for b in batches)
        print(f"| model | parameters | GMAC @ {args.size}² | {header} |")
        print("|---|---:|---:|" + "---:|" * len(batches))
        for name in args.models.split(","):
            summary = summarize(name, "paper", args.size)
            model = create_model(name, "paper").eval().to(device)
            if device.type == "cuda":
                model = model.to(memory_format=torch.channels_last)
            cells = " | ".join(f"{latency_ms(model, b, args.size, device, args.repeats):.1f}" for b in batches)
            print(f"| {name} | {summary.params:,} | {summary.gmacs:.2f} | {cells} |", flush=True)
    print(f"\npython {platform.python_version()}")


if __name__ == "__main__":
    main()

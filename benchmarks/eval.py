"""``blindbench eval`` throughput (images/s) for VCN on photos-demo, against the ``input`` reference row.

Both runs go through the same ``run_eval`` (shard reading, decoding, PSNR/SSIM in both conventions, CSV); the
``input`` method skips the model and the mask metrics, so it is the floor of the pipeline and the ratio
floor / model says what the network and mask metrics cost. The VCN checkpoint holds untrained paper-preset
weights (speed does not depend on them). Needs photos-demo generated (``make demo`` or
``blindbench generate --set photos-demo``). Usage::

    python benchmarks/eval.py [--preset paper|tiny] [--batch 8] [--device auto] [--limit 48]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import cpu_description

from blindbench.checkpoint import save_checkpoint
from blindbench.evaluate import EvalConfig, run_eval
from blindbench.metrics import psnr, ssim
from blindbench.models import create_model
from blindbench.runtime import active_allocator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vcn")
    parser.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--limit", type=int, default=48)
    parser.add_argument("--set", default="photos-demo")
    args = parser.parse_args()
    # the `blindbench` command runs under tcmalloc; to measure that, start this script with
    # LD_PRELOAD=libtcmalloc_minimal.so.4 (blindbench/runtime.py)
    print(f"allocator: {active_allocator()}")
    print(f"machine: {cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    warm = torch.rand(1, 3, 16, 16)
    psnr(warm, warm), ssim(warm, warm), ssim(warm, warm, "y")  # load the compiled metric kernels before timing
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = create_model(args.model, args.preset)
        checkpoint = save_checkpoint({"model_name": args.model, "preset": args.preset, "step": 0,
                                      "model": model.state_dict()}, Path(tmp) / "untrained.pt")  # fmt: skip
        rows = []
        for method, ckpt, save in (("input", "", False), (args.model, str(checkpoint), False),
                                   (args.model, str(checkpoint), True)):  # fmt: skip
            out = Path(tmp) / f"{method}-{save}"
            cfg = EvalConfig(model=method, checkpoint=ckpt, set=args.set, out=str(out), batch=args.batch,
                             device=args.device, limit=args.limit, save_images=save, progress=False)  # fmt: skip
            report = run_eval(cfg)
            rows.append((f"{method}{' (+ --save-images)' if save else ''}", report.scored, report.images_per_second))
    floor = rows[0][2]
    print(f"\n| run ({args.set}, {args.preset} preset, batch {args.batch}) | images | images/s | floor / run |")
    print("|---|---:|---:|---:|")
    for name, count, rate in rows:
        print(f"| {name} | {count} | {rate:.2f} | {floor / rate:.1f}x |")


if __name__ == "__main__":
    main()

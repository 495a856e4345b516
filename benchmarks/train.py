"""Training throughput (images/s) per model: one full step of each stage on synthetic 256² batches.

Data loading is excluded (batches are random tensors already on the device), so the numbers measure the model,
losses, critics and optimizer. The reference, measured in the same run on the same batch, is the floor of any
training step: the generator's forward pass, an L1 loss, its backward pass and an Adam step. The ratio
floor / stage says how much the stage's extra work (mask BCE, critics, gradient penalties) costs, and
joint / separate is issue 16's goal (>= 0.5). The joint stage runs as the trainer does: with fresh critic batches
(``critic_batches = "fresh"``, the official recipe: a batch and a generator output per critic update) unless
``--critic-batches shared``. Usage::

    python benchmarks/train.py                         # every model, CPU (and CUDA when available)
    python benchmarks/train.py --models vcn gc --steps 2 --critic-steps 5 --vgg19 /path/vgg19.pth
    python benchmarks/train.py --models vcn --preset tiny --size 64 --critic-batches shared
"""

from __future__ import annotations

import argparse
import time

import torch

from blindbench.models import model_names
from blindbench.runtime import active_allocator
from blindbench.train import Runtime, TrainConfig, Trainer


def synthetic_batch(batch: int, size: int, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(batch, 1, size, size, generator=g) > 0.8).float()
    target = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    noise = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    out = {"input": target * (1 - mask) + noise * mask, "target": target, "mask": mask, "soft_mask": mask}
    return {k: v.to(device) for k, v in out.items()}


def measure(name: str, stage: str, device: torch.device, args: argparse.Namespace) -> float:
    """Images per second of ``args.steps`` timed training steps after ``args.warmup`` untimed ones."""
    cfg = TrainConfig(model=name, preset=args.preset, stage=stage, batch_separate=args.batch, batch_joint=args.batch,
                      perceptual=bool(args.vgg19), vgg19=args.vgg19, critic_steps=args.critic_steps,
                      image_size=args.size, device=device.type, channels_last=args.channels_last, tensorboard=False,
                      progress=False, val_set="", critic_batches=getattr(args, "critic_batches", "fresh"))
    amp = None
    if device.type == "cuda" and not args.no_amp:
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    trainer = Trainer(cfg, Runtime(device, amp_dtype=amp), run_dir=None)  # type: ignore[arg-type]
    trainer._make_optimizers(stage)
    batch = synthetic_batch(args.batch, args.size, device)
    extras = [synthetic_batch(args.batch, args.size, device, seed=1 + k)
              for k in range(trainer.batches_per_step(stage) - 1)]  # the fresh critic batches
    for _ in range(args.warmup):
        trainer.train_step(stage, batch, extras)
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(stage, batch, extras)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.batch * args.steps / (time.perf_counter() - tic)


def measure_floor(name: str, device: torch.device, args: argparse.Namespace) -> float:
    """Images per second of forward + L1 + backward + Adam on the generator alone (the reference)."""
    from blindbench.models import create_model

    torch.manual_seed(0)
    model = create_model(name, args.preset).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = synthetic_batch(args.batch, args.size, device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = model(batch["input"])
        (out.image - batch["target"]).abs().mean().backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.batch * args.steps / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=model_names())
    parser.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--critic-steps", type=int, default=5)
    parser.add_argument("--critic-batches", default="fresh", choices=("fresh", "shared"),
                        help="fresh (the trainer's default, official): one batch and generator pass per critic update")
    parser.add_argument("--stages", nargs="*", default=["separate", "joint"], choices=("separate", "joint"))
    parser.add_argument("--devices", nargs="*", default=None, help="cpu and/or cuda (default: cpu, cuda if present)")
    parser.add_argument("--vgg19", default="", help="torchvision vgg19 .pth: turns the perceptual terms on")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args()
    # the `blindbench` command runs under tcmalloc; to measure that, start this script with
    # LD_PRELOAD=libtcmalloc_minimal.so.4 (blindbench/runtime.py)
    print(f"allocator: {active_allocator()}")
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"training images/s, {args.preset} preset, {args.size}², batch {args.batch}, {args.steps} timed steps "
          f"after {args.warmup} warm-up, critic steps {args.critic_steps} ({args.critic_batches} batches), perceptual "
          f"{'on' if args.vgg19 else 'off'}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")
    from common import cpu_description

    print(f"machine: {cpu_description()}\n")
    both = len(args.stages) == 2
    header = ("| model | device | floor img/s | " + " | ".join(f"{s} img/s" for s in args.stages) + " | "
              + " | ".join(f"{s} / floor" for s in args.stages) + " |" + (" joint / separate |" if both else ""))
    print(header)
    print("|" + " --- |" * (3 + 2 * len(args.stages) + both))
    for device_name in devices:
        device = torch.device(device_name)
        for name in args.models:
            floor = measure_floor(name, device, args)
            rates = [measure(name, stage, device, args) for stage in args.stages]
            by_stage = dict(zip(args.stages, rates, strict=True))
            ratio = f" {by_stage['joint'] / by_stage['separate']:.2f}x |" if both else ""
            print(f"| {name} | {device_name} | {floor:.2f} | " + " | ".join(f"{r:.2f}" for r in rates) + " | "
                  + " | ".join(f"{r / floor:.2f}x" for r in rates) + " |" + ratio, flush=True)


if __name__ == "__main__":
    main()

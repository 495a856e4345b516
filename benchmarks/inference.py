"""CPU inference routes against the plain eager forward: ms per image and the ratio over eager, same run.

Contenders, each called on the same input in interleaved rounds (round r runs every contender once, so load
from other processes hits them alike; the ratio is the median over rounds of eager's time / the contender's):

- ``eager``: ``model(x)`` under ``torch.inference_mode`` (the speed of the public PyTorch reproductions);
- ``channels-last``: model and input in ``torch.channels_last``;
- ``jit-freeze``: ``torch.jit.trace`` of the channels-last model, ``torch.jit.freeze`` and
  ``optimize_for_inference`` (oneDNN conv + ELU/add fusions, prepacked weights);
- ``compile``: :func:`blindbench.fastpath.prepare_for_inference` (``torch.compile``, inductor CPU with frozen
  weights; needs a C++ compiler), what ``eval``/``inpaint`` run;
- ``compile-cl`` (``--routes ...,compile-cl``): the same on the channels-last model and input;
- ``compile-beta`` (``--fixed-beta B``, VCN only): the same with β fixed, so the SE modules drop out of the
  graph; compared with eager at the same β.

The one-time cost of each route (trace/freeze or compile, with the first call) is printed beside it. Scores
must not move: per image, the PSNR of each contender's output against the clean target must equal eager's
within 1e-4 dB (the run fails otherwise). Inputs are a smooth synthetic image with a noise-filled stroke, in
[-1, 1]; weights are the untrained paper preset (speed does not depend on them). Usage::

    python benchmarks/inference.py                                # five paper models, batch 1 and 8, 2 threads
    python benchmarks/inference.py --models vcn --batches 1 --fixed-beta 0.5
    python benchmarks/inference.py --quick                        # tiny preset, 64², seconds (the test)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable

import torch
from common import cpu_description

from blindbench.fastpath import compiler_available, prepare_for_inference
from blindbench.metrics import psnr
from blindbench.models import create_model
from blindbench.runtime import active_allocator

PAPER_MODELS = ("vcn", "ca", "gmc", "pc", "gc")
PSNR_TOLERANCE_DB = 1e-4
ROUTES = ("channels-last", "jit-freeze", "compile", "compile-beta")  # and compile-cl, when asked


def test_batch(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted input, clean target), both (B, 3, size, size) in [-1, 1]: smooth gradients, a noise stroke."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    phase = torch.rand(batch, 3, 1, 1, generator=g) * 6.28
    target = 0.8 * torch.sin(3 * xx + 2 * yy + phase)  # (B, 3, H, W)
    mask = ((yy - 0.3 * torch.sin(4 * xx)).abs() < 0.15).float()  # (H, W) a wavy stroke
    noise = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    return target * (1 - mask) + noise * mask, target


def contenders(model: torch.nn.Module, x: torch.Tensor, beta: float | None, only: set[str]) -> dict[str, Callable]:
    """name -> a builder returning ``f(x) -> image``; building includes the one-time work (trace, compile)."""
    x_cl = x.contiguous(memory_format=torch.channels_last)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def eager() -> Callable:
        return lambda t: model(t).image

    def channels_last() -> Callable:
        return lambda t: model_cl(t.contiguous(memory_format=torch.channels_last)).image

    def jit_freeze() -> Callable:
        with torch.no_grad():
            traced = torch.jit.trace(model_cl, x_cl, strict=False, check_trace=False)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        return lambda t: frozen(t.contiguous(memory_format=torch.channels_last))[1]

    def compiled() -> Callable:
        fast = prepare_for_inference(model)
        return lambda t: fast(t).image

    def compiled_cl() -> Callable:
        fast = prepare_for_inference(model_cl)
        return lambda t: fast(t.contiguous(memory_format=torch.channels_last)).image

    def compiled_beta() -> Callable:
        fast = prepare_for_inference(model)
        return lambda t: fast(t, beta=beta).image

    routes: dict[str, Callable] = {"eager": eager, "channels-last": channels_last, "jit-freeze": jit_freeze}
    if compiler_available():
        routes["compile"] = compiled
        routes["compile-cl"] = compiled_cl
        if beta is not None:
            routes["eager-beta"] = lambda: (lambda t: model(t, beta=beta).image)
            routes["compile-beta"] = compiled_beta
    keep = {"eager", *only, *(["eager-beta"] if "compile-beta" in only else [])}
    return {k: v for k, v in routes.items() if k in keep}


def measure(name: str, preset: str, batch: int, size: int, rounds: int, beta: float | None,
            only: set[str]) -> list[tuple]:
    """Rows (route, ms/image median, ratio over eager, one-time s, max |PSNR - eager's| dB, max |Δ output|)."""
    torch.manual_seed(0)
    model = create_model(name, preset).eval()
    x, target = test_batch(batch, size)
    routes, setup, refs = {}, {}, {}
    with torch.inference_mode():
        for route, build in contenders(model, x, beta if name.startswith("vcn") else None, only).items():
            start = time.perf_counter()
            f = build()
            out = f(x)  # the first call: compiles, or profiles the TorchScript graph
            if route == "jit-freeze":
                out = f(x)  # TorchScript's profiling executor optimises on the second call
            setup[route] = time.perf_counter() - start
            routes[route], refs[route] = f, out.float()
        times: dict[str, list[float]] = {route: [] for route in routes}
        for _ in range(rounds):
            for route, f in routes.items():
                start = time.perf_counter()
                f(x)
                times[route].append(time.perf_counter() - start)
    clean = (target + 1) / 2
    rows = []
    for route in routes:
        base = "eager-beta" if route.endswith("-beta") else "eager"
        scores = psnr(((refs[route] + 1) / 2).clamp(0, 1), clean).double()
        ref_scores = psnr(((refs[base] + 1) / 2).clamp(0, 1), clean).double()
        ratio = statistics.median(e / t for e, t in zip(times[base], times[route], strict=True))
        rows.append((route, 1000 * statistics.median(times[route]) / batch, ratio, setup[route],
                     (scores - ref_scores).abs().max().item(), (refs[route] - refs[base]).abs().max().item()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(PAPER_MODELS))
    parser.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fixed-beta", type=float, default=None, help="also time VCN with this β (SE dropped)")
    parser.add_argument("--routes", default=",".join(ROUTES), help="routes beside eager")
    parser.add_argument("--quick", action="store_true", help="tiny preset, 64², batch 1, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.preset, args.size, args.batches, args.rounds = "tiny", 64, "1", 2
    torch.set_num_threads(args.threads)
    # the `blindbench` command runs under tcmalloc; to measure that, start this script with
    # LD_PRELOAD=libtcmalloc_minimal.so.4 (blindbench/runtime.py)
    print(f"allocator: {active_allocator()}")
    print(f"machine: {cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"C++ compiler {'found' if compiler_available() else 'missing (no compile route)'}")
    print(f"{args.preset} preset, {args.size}², {args.rounds} interleaved rounds; ratio = median over rounds of "
          "eager / route\n")
    print("| model | batch | route | ms/image | × eager | one-time s | max ΔPSNR dB | max |Δ output| |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    failed = []
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            only = set(args.routes.split(","))
            rows = measure(name, args.preset, batch, args.size, args.rounds, args.fixed_beta, only)
            for route, ms, ratio, setup, dpsnr, dout in rows:
                once = "–" if route.startswith("eager") else f"{setup:.1f}"
                print(f"| {name} | {batch} | {route} | {ms:.1f} | {ratio:.2f}x | {once} | {dpsnr:.1e} | {dout:.1e} |",
                      flush=True)  # fmt: skip
                if dpsnr > PSNR_TOLERANCE_DB:
                    failed.append(f"{name} batch {batch} {route}: PSNR moved by {dpsnr:.2e} dB")
    if failed:
        sys.exit("scores changed: " + "; ".join(failed))


if __name__ == "__main__":
    main()

"""Multi-process training on CPU: two gloo ranks launched by torchrun, as a user would run it.

Each run is a real ``torchrun --standalone --nproc_per_node 2`` subprocess with a timeout, so a hang (ranks out
of step in a collective) fails the test instead of blocking the suite. Most runs go through this file's
``__main__`` block, a probe that calls ``blindbench.cli.main`` unchanged after wrapping a few functions to
*observe* each rank: the sample keys of every batch it trains on, whether each step was skipped, the critic
gradients before and after their cross-rank average, and a digest of its weights at the end, written to
``$BLINDBENCH_DDP_PROBE/rank<R>.json``. ``BLINDBENCH_DDP_NAN=<rank>:<step>`` makes that rank's reconstruction loss
NaN at that step (the only change the probe makes to training). The resume runs use the plain
``-m blindbench.cli`` entry point.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import launch_env, run_or_fail

TIMEOUT_S = 120

TINY = [
    "--model", "vcn", "--preset", "tiny", "--set", "photos-demo", "--no-perceptual", "--critic-steps", "1",
    "--image-size", "32", "--device", "cpu", "--workers", "0", "--shuffle-buffer", "8", "--val-set", "",
    "--sample-every", "0", "--checkpoint-every", "0", "--no-tensorboard", "--no-progress", "--log-every", "1",
]  # fmt: skip


def digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names and raw tensor bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def torchrun(args: list[str], data_root: Path, probe: Path | None = None, nan: str = "") -> str:
    """Run ``torchrun --standalone --nproc_per_node 2 <args>``; returns the output, fails on exit != 0 or hang."""
    extra = {"BLINDBENCH_DDP_PROBE": str(probe)} if probe is not None else {}
    if nan:
        extra["BLINDBENCH_DDP_NAN"] = nan
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return run_or_fail(cmd, launch_env(data_root, **extra), TIMEOUT_S)


def probed(args: list[str], data_root: Path, probe: Path, nan: str = "") -> list[dict]:
    """Run the probe under torchrun; returns the two ranks' records."""
    torchrun([__file__, "train", *args], data_root, probe, nan)
    return [json.loads((probe / f"rank{r}.json").read_text()) for r in range(2)]


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def assert_written_by_one_rank(run_dir: Path, steps: int) -> None:
    """config.toml, metrics.csv and one checkpoint; each metric of each step written once; the checkpoint loads."""
    from blindbench.checkpoint import load_model_from_checkpoint

    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "config.toml", "loss-curve.png", "metrics.csv"]
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["last.pt"]  # no temp file of a second writer
    text = (run_dir / "metrics.csv").read_text()
    assert text.count("step,stage,name,value") == 1
    rows = Counter((r["step"], r["name"]) for r in metric_rows(run_dir))
    assert max(rows.values()) == 1, [k for k, n in rows.items() if n > 1]
    model, meta = load_model_from_checkpoint(run_dir, "vcn")
    assert meta["step"] == steps and not model.training


# ------------------------------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def shards_run(demo_dir: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Shards, 3 separate steps of batch 8 then 1 joint step; rank 1's loss is NaN at step 2.

    photos-demo has 3 shards of 16 samples, so rank 0 reads 32 samples per epoch and rank 1 16: both make
    16 // 8 = 2 steps per epoch, and step 3 starts epoch 1.
    """
    tmp = tmp_path_factory.mktemp("ddp-shards")
    args = [*TINY, "--source", "shards", "--stage", "all", "--steps-separate", "3", "--steps-joint", "1",
            "--batch-separate", "8", "--batch-joint", "8", "--out", str(tmp / "run")]
    return tmp / "run", probed(args, data_root, tmp / "probe", nan="1:2")


STREAM = [*TINY, "--source", "stream", "--stage", "separate", "--batch-separate", "4", "--workers", "1",
          "--val-set", "photos-demo", "--val-every", "2", "--val-batches", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def stream_run(photos_corpus: dict, data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The on-the-fly stream with one DataLoader worker per rank: 2 steps of batch 4, validation at step 2."""
    tmp = tmp_path_factory.mktemp("ddp-stream")
    args = [*STREAM, "--steps-separate", "2", "--out", str(tmp / "run")]
    return tmp / "run", probed(args, data_root, tmp / "probe")


# ------------------------------------------------------------------------------------------------------ tests


def test_shards_run_writes_from_rank_zero_only(shards_run) -> None:
    run_dir, _ = shards_run
    assert_written_by_one_rank(run_dir, steps=4)
    names = {(r["stage"], r["name"]) for r in metric_rows(run_dir)}
    assert {("separate", "l1"), ("joint", "critic"), ("joint", "adv")} <= names


def test_ranks_end_with_identical_weights(shards_run) -> None:
    from blindbench.checkpoint import load_checkpoint

    run_dir, ranks = shards_run
    state = load_checkpoint(run_dir)
    saved = {"model": digest(state["model"]), **{k: digest(v) for k, v in state["critics"].items()}}
    assert ranks[0]["digest"] == ranks[1]["digest"] == saved


def test_critic_gradients_are_averaged_over_ranks(shards_run) -> None:
    _, ranks = shards_run  # the critics are outside DDP: their gradients are averaged by hand
    calls = [r["critic_grads"] for r in ranks]
    assert len(calls[0]) == len(calls[1]) == 1  # one critic step in the one joint step
    (local0, mean0), (local1, mean1) = calls[0][0], calls[1][0]
    assert local0 != local1 and mean0 == mean1
    assert mean0 == pytest.approx((local0 + local1) / 2, rel=1e-5)


def test_shard_ranks_read_disjoint_samples_in_equal_batches(shards_run) -> None:
    _, ranks = shards_run
    for r in ranks:
        # (position in the stage, epoch): the joint stage's epochs count from 1000; its one step reads a batch for
        # the generator and a fresh one for its critic update
        assert [(b["position"], b["epoch"]) for b in r["batches"]] == [(0, 0), (1, 0), (2, 1), (0, 1000), (1, 1000)]
        assert all(len(b["keys"]) == 8 for b in r["batches"])
    for epoch in (0, 1, 1000):
        seen = [{k for b in r["batches"] if b["epoch"] == epoch for k in b["keys"]} for r in ranks]
        assert seen[0] and seen[1] and not seen[0] & seen[1], epoch
    epoch0 = [[k for b in r["batches"] if b["epoch"] == 0 for k in b["keys"]] for r in ranks]
    assert len(set(epoch0[0] + epoch0[1])) == 32  # no sample twice within an epoch


def test_non_finite_loss_on_one_rank_skips_the_step_on_both(shards_run) -> None:
    run_dir, ranks = shards_run  # NaN on rank 1 only, at step 2: both ranks skip it, then train in step
    for r in ranks:
        assert r["skipped"] == [False, True, False, False]
    rows = {(r["step"], r["name"]) for r in metric_rows(run_dir)}
    assert ("2", "skipped") in rows and ("2", "loss") not in rows  # logged by rank 0, whose own loss was finite
    assert ("3", "loss") in rows


def test_stream_ranks_deal_indices_round_robin(stream_run) -> None:
    run_dir, ranks = stream_run
    assert_written_by_one_rank(run_dir, steps=2)
    assert ranks[0]["digest"] == ranks[1]["digest"]
    for rank, r in enumerate(ranks):
        indices = [int(k.rsplit("_", 1)[1]) for b in r["batches"] for k in b["keys"]]
        assert len(r["batches"]) == 2 and len(indices) == 8
        assert all(i % 2 == rank for i in indices) and len(set(indices)) == 8
    assert ("2", "val_psnr") in {(r["step"], r["name"]) for r in metric_rows(run_dir)}


def test_resume_under_ddp_is_bit_exact(stream_run, data_root: Path, tmp_path: Path) -> None:
    from blindbench.checkpoint import load_checkpoint

    run_dir, _ = stream_run
    cli = ["-m", "blindbench.cli", "train", *STREAM, "--steps-separate", "3"]
    torchrun([*cli, "--resume", str(run_dir)], data_root)
    torchrun([*cli, "--out", str(tmp_path / "full")], data_root)
    assert_written_by_one_rank(run_dir, steps=3)
    assert [int(r["step"]) for r in metric_rows(run_dir) if r["name"] == "loss"] == [1, 2, 3]
    resumed, full = load_checkpoint(run_dir), load_checkpoint(tmp_path / "full")
    assert digest(resumed["model"]) == digest(full["model"])


def test_rank_zero_validation_reads_every_shard(demo_dir: Path, monkeypatch) -> None:
    from blindbench import train
    from blindbench.models import create_model

    monkeypatch.setenv("RANK", "0")  # what rank 0 of 2 sees; webdataset's split_by_node reads these
    monkeypatch.setenv("WORLD_SIZE", "2")
    model = create_model("vcn", "tiny")
    seen = []
    forward = model.forward
    def blind_counted(image, mask=None):
        if mask is None:  # validation also runs each batch guided by the true mask
            seen.append(image.shape[0])
        return forward(image, mask=mask)

    monkeypatch.setattr(model, "forward", blind_counted)
    cfg = train.TrainConfig(model="vcn", preset="tiny", set="photos-demo", val_set="photos-demo", val_batches=99,
                            val_batch=16, image_size=32, device="cpu", workers=0, perceptual=False)
    values = train.validate(cfg, model, train.Runtime(torch.device("cpu")))
    assert sum(seen) == 48 and {"val_psnr", "val_ssim", "val_bce", "val_psnr_true_mask"} <= set(values)


# ------------------------------------------------------------------------------------------------------ probe


def _probe_main() -> int:
    """Run ``blindbench.cli.main`` on this rank, recording what it trained on (see the module docstring)."""
    from blindbench import cli, train

    rank = int(os.environ["RANK"])
    out = Path(os.environ["BLINDBENCH_DDP_PROBE"])
    nan_rank, _, nan_step = os.environ.get("BLINDBENCH_DDP_NAN", "-1:0").partition(":")
    record: dict = {"batches": [], "skipped": [], "critic_grads": []}

    batches = train.BatchSource.batches

    def recorded_batches(self, start: int = 0):
        for position, batch in enumerate(batches(self, start), start):
            epoch = self.epoch_offset + position // self.steps_per_epoch
            record["batches"].append({"position": position, "epoch": epoch, "keys": list(batch["key"])})
            yield batch

    train_step = train.Trainer.train_step

    def recorded_step(self, stage, batch, critic_batches=None):
        logs, out = train_step(self, stage, batch, critic_batches)
        record["skipped"].append("skipped" in logs)
        return logs, out

    losses = train.reconstruction_losses
    calls = {"n": 0}

    def maybe_nan(*args, **kwargs):
        terms = losses(*args, **kwargs)
        calls["n"] += 1
        if rank == int(nan_rank) and calls["n"] == int(nan_step):
            terms["l1"] = terms["l1"] * float("nan")
        return terms

    average = train._average_gradients

    def recorded_average(params, world, ok=None):
        local = sum(float(p.grad.double().sum()) for p in params if p.grad is not None)
        ok = average(params, world, ok)
        record["critic_grads"].append([local, sum(float(p.grad.double().sum()) for p in params if p.grad is not None)])
        return ok

    run = train.Trainer.run

    def recorded_run(self, position=None):
        run(self, position)
        record["digest"] = {"model": digest(self.raw_model.state_dict())}
        if self.critics is not None:
            record["digest"].update({k: digest(m.state_dict()) for k, m in self.critics.modules().items()})

    train.BatchSource.batches = recorded_batches
    train.Trainer.train_step = recorded_step
    train.reconstruction_losses = maybe_nan
    train.Trainer.run = recorded_run
    train._average_gradients = recorded_average
    code = cli.main(sys.argv[1:])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    return code


if __name__ == "__main__":
    sys.exit(_probe_main())

"""Real paired damage: `corpus pairs` → a `kind = "pairs"` set → shards → eval and `train --init`, end to end.

The pairs are made here: real photos of the embedded corpus under semi-transparent drops or a watermark.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from blindbench.cli import main
from blindbench.errors import BlindbenchError, ConfigError
from blindbench.pairs import PairConfig, PairCorpus, derive_mask
from blindbench.paths import corpus_dir, set_dir
from blindbench.sets import load_set, parse_set
from blindbench.shards import iter_shard_samples, read_meta

SIDE = 64


def _overlay(photo: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A damaged copy of ``photo`` and where the damage is: drops (brightened, blurred discs) or a watermark."""
    rng = np.random.default_rng(index)
    alpha = np.zeros(photo.shape[:2], np.float32)
    if index % 3 == 2:  # a watermark: white text at 60 % opacity
        text = np.zeros(photo.shape[:2], np.uint8)
        cv2.putText(text, "(c) bb", (2, 45), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 255, 6)
        alpha = text.astype(np.float32) * (0.6 / 255)
        overlay = np.full_like(photo, 255)
    else:  # raindrops: a bright, blurred view of the photo seen through each disc
        for _ in range(6):
            centre = tuple(int(v) for v in rng.integers(8, SIDE + 8, size=2))
            cv2.circle(alpha, centre, int(rng.integers(4, 9)), 0.8, -1)
        overlay = np.clip(cv2.GaussianBlur(photo, (0, 0), 3).astype(np.float32) * 1.3 + 40, 0, 255).astype(np.uint8)
    a = alpha[..., None]
    damaged = np.rint(photo * (1 - a) + overlay * a).astype(np.uint8)
    return damaged, (alpha > 0).astype(np.uint8)


@pytest.fixture(scope="module")
def pair_folders(photos_corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    from blindbench.corpus import Corpus

    crops = Corpus.open("photos").crops("clean", "test")
    root = tmp_path_factory.mktemp("pairs")
    drawn = {}
    for index in range(8):
        photo = cv2.resize(np.asarray(crops[index * 7]), (SIDE + 16, SIDE + 16), interpolation=cv2.INTER_AREA)
        damaged, mask = _overlay(photo, index)
        name = f"scene{index:02d}"
        (root / "damaged" / "sub").mkdir(parents=True, exist_ok=True)
        (root / "clean" / "sub").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "clean" / "sub" / f"{name}.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        suffix = ".bmp" if index == 0 else ".png"  # matched by name, whatever the suffix
        cv2.imwrite(str(root / "damaged" / "sub" / f"{name}{suffix}"), cv2.cvtColor(damaged, cv2.COLOR_RGB2BGR))
        drawn[f"sub/{name}"] = mask
    return root / "damaged", root / "clean", drawn


@pytest.fixture(scope="module")
def drops_corpus(pair_folders) -> PairCorpus:
    damaged, clean, _ = pair_folders
    argv = ["corpus", "pairs", "--name", "drops", "--input", str(damaged), "--target", str(clean), "--crop",
            str(SIDE), "--test-every", "2", "--workers", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return PairCorpus(corpus_dir("drops"))


def _pairs_manifest(folder: Path, name: str, split: str, count: int) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\nkind = "pairs"\nseed = 3\ncount = {count}\nsize = {SIDE}\n'
                    f'samples_per_shard = 3\n[corpus]\nname = "drops"\n[clean]\nsplit = "{split}"\n')  # fmt: skip
    return path


def test_derive_mask_thresholds_the_largest_channel_difference_then_opens() -> None:
    clean = np.full((12, 12, 3), 100, np.uint8)
    damaged = clean.copy()
    damaged[2:7, 2:7, 1] = 130  # a 5x5 patch, +30 in green only
    damaged[10, 10] = 200  # one speck: gone after a 3x3 opening
    mask = derive_mask(damaged, clean, threshold=20, opening=3)
    assert mask[2:7, 2:7].all() and mask.sum() == 25
    assert derive_mask(damaged, clean, threshold=20, opening=1)[10, 10] == 1
    assert derive_mask(damaged, clean, threshold=30, opening=1)[2:7, 2:7].sum() == 0  # > t, not >= t
    with pytest.raises(ConfigError, match=r"threshold must be an integer in \[0, 254\]"):
        PairConfig(threshold=300)


def test_corpus_pairs_derives_the_mask_of_real_overlays(drops_corpus: PairCorpus, pair_folders) -> None:
    _, _, drawn = pair_folders
    manifest = drops_corpus.manifest
    assert manifest["kind"] == "pairs" and manifest["pairs"] == {"threshold": 20, "opening": 3}
    assert [s["split"] for s in manifest["sources"]] == ["train", "test"] * 4  # every 2nd pair by name
    assert drops_corpus.count("test") == 4 and drops_corpus.count("train") == 4
    # center mode: the 80px photo shrunk to 64 then cropped; the drawn mask the same way, then compared (a white
    # watermark over a bright sky changes little, so the worst pair is below the mean)
    ious = []
    for split in ("train", "test"):
        for index in range(drops_corpus.count(split)):
            pair = drops_corpus.provenance(split, index)["pair"]
            truth = cv2.resize(drawn[pair] * 255, (SIDE, SIDE), interpolation=cv2.INTER_AREA) > 127
            derived = drops_corpus.array("mask", split)[index] > 0
            ious.append((derived & truth).sum() / max((derived | truth).sum(), 1))
            assert ious[-1] > 0.6, (pair, ious[-1])
    assert np.mean(ious) > 0.85, ious


def test_a_pairs_set_writes_shards_with_the_derived_mask(drops_corpus: PairCorpus, tmp_path: Path) -> None:
    path = _pairs_manifest(tmp_path, "drops-test", "test", 4)
    assert main(["generate", "--set", str(path), "--workers", "1"]) == 0
    assert main(["verify", "--set", str(path)]) == 0
    shards = sorted(set_dir("drops-test").glob("*.tar"))
    assert len(shards) == 2
    samples = [s for shard in shards for s in iter_shard_samples(shard)]
    assert len(samples) == 4
    seen = set()
    for sample in samples:
        meta = read_meta(sample["json"])
        assert meta["derived_mask"] is True and meta["pattern"] == "paired"
        assert meta["params"]["mask"]["threshold"] == 20 and meta["params"]["mask"]["opening"] == 3
        index = [i for i in range(4) if drops_corpus.provenance("test", i)["pair"] == meta["provenance"]["pair"]]
        assert len(index) == 1
        seen.add(index[0])
        mask = cv2.imdecode(np.frombuffer(sample["mask.png"], np.uint8), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(mask // 255, drops_corpus.array("mask", "test")[index[0]])
        damaged = cv2.cvtColor(cv2.imdecode(np.frombuffer(sample["input.png"], np.uint8), 1), cv2.COLOR_BGR2RGB)
        assert np.array_equal(damaged, drops_corpus.array("input", "test")[index[0]])
    assert seen == {0, 1, 2, 3}  # a permutation of the split's pairs


def test_eval_and_train_init_on_a_pairs_set(drops_corpus: PairCorpus, tiny_vcn_run: Path, tmp_path: Path) -> None:
    test_set, train_set = _pairs_manifest(tmp_path, "drops-eval", "test", 4), _pairs_manifest(tmp_path, "drops-ft",
                                                                                              "train", 4)
    for path in (test_set, train_set):
        assert main(["generate", "--set", str(path), "--workers", "1"]) == 0
    out = tmp_path / "eval"
    argv = ["eval", "--model", "vcn", "--checkpoint", str(tiny_vcn_run), "--set", str(test_set), "--out", str(out),
            "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    with (out / "samples.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {r["pattern"] for r in rows} == {"paired"}
    # the paper's raindrop adaptation: fine-tune from existing weights on a few pairs, with a new optimiser
    run = tmp_path / "finetune"
    argv = ["train", "--model", "vcn", "--preset", "tiny", "--set", str(train_set), "--source", "shards",
            "--init", str(tiny_vcn_run), "--stage", "separate", "--steps-separate", "2", "--batch-separate", "2",
            "--workers", "0", "--val-set", "", "--no-perceptual", "--device", "cpu", "--out", str(run),
            "--no-progress", "--no-tensorboard"]  # fmt: skip
    assert main(argv) == 0
    before = torch.load(tiny_vcn_run / "checkpoints" / "last.pt", weights_only=False)["model"]
    after = torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_pairs_bad_inputs_are_one_line(pair_folders, drops_corpus: PairCorpus, tmp_path: Path, capsys) -> None:
    damaged, clean, _ = pair_folders
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    cv2.imwrite(str(lonely / "alone.png"), np.zeros((70, 70, 3), np.uint8))
    cases = [
        (["--input", str(lonely), "--target", str(clean)], "has no partner named 'alone'"),
        (["--input", str(damaged)], r"give --name, --input \(damaged photos\) and --target"),
    ]
    odd = tmp_path / "odd"
    (odd / "sub").mkdir(parents=True)
    for path in sorted((clean / "sub").glob("*.png")):
        cv2.imwrite(str(odd / "sub" / path.name), np.zeros((50, 90, 3), np.uint8))
    cases.append((["--input", str(odd), "--target", str(clean)], r"is 90x50 but .* is 80x80"))
    for extra, pattern in cases:
        assert main(["corpus", "pairs", "--name", "bad", "--workers", "1", "--no-progress", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and pytest.importorskip("re").search(pattern, err), err
    base = {"name": "p", "kind": "pairs", "seed": 1, "count": 2, "corpus": {"name": "drops"}}
    with pytest.raises(ConfigError, match="no \\[\\[recipes\\]\\] or \\[fill\\]"):
        parse_set({**base, "recipes": [{"pattern": "real"}]})
    with pytest.raises(ConfigError, match="unknown set kind 'pair'"):
        parse_set({**base, "kind": "pair"})
    with pytest.raises(BlindbenchError, match="paired corpus 'nothing' is not built"):
        from blindbench.shards import generate_set

        generate_set(parse_set({**base, "corpus": {"name": "nothing"}}), workers=1, progress=False)
    from blindbench.train import BatchSource, TrainConfig, setup_runtime

    path = _pairs_manifest(tmp_path, "drops-stream", "train", 2)
    cfg = TrainConfig(set=str(path), source="stream", device="cpu", workers=0, perceptual=False)
    with pytest.raises(ConfigError, match="holds real pairs, which cannot be made on the fly"):
        BatchSource(cfg, 2, setup_runtime(cfg))
    assert load_set(str(path)).patterns == ("paired",)

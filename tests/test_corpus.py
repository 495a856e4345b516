from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from blindbench.corpus import (
    Corpus,
    CorpusConfig,
    Source,
    build_corpus,
    check_sources_present,
    committed_manifest_path,
    cut_crops,
    folder_sources,
)
from blindbench.errors import BlindbenchError, ImageReadError
from blindbench.imageio import read_image, read_image_rgba


def test_embedded_corpus_matches_committed_manifest(photos_corpus: dict) -> None:
    committed = json.loads(committed_manifest_path("photos").read_text())
    assert photos_corpus["arrays"] == committed["arrays"]
    assert len([s for s in photos_corpus["sources"] if s["role"] == "clean"]) == 39
    assert len([s for s in photos_corpus["sources"] if s["role"] == "fill"]) == 35
    assert all(info["count"] > 0 for info in photos_corpus["arrays"].values())


def test_split_is_by_source_never_by_crop(photos_corpus: dict) -> None:
    split_of = {s["id"]: s["split"] for s in photos_corpus["sources"]}
    for key, crops in photos_corpus["crops"].items():
        role, split = key.split("-")
        assert {split_of[c[0]] for c in crops} <= {split}
    for role in ("clean", "fill"):
        train = {c[0] for c in photos_corpus["crops"][f"{role}-train"]}
        val = {c[0] for c in photos_corpus["crops"][f"{role}-val"]}
        test = {c[0] for c in photos_corpus["crops"][f"{role}-test"]}
        assert train and val and test and not train & test and not train & val and not val & test


def test_validation_split_leaves_test_sources_in_place() -> None:
    from blindbench.corpus import split_of

    without = [split_of(i, 5) for i in range(40)]
    with_val = [split_of(i, 5, 8) for i in range(40)]
    assert [i for i, s in enumerate(without) if s == "test"] == [i for i, s in enumerate(with_val) if s == "test"]
    assert with_val.count("val") == 4 and "val" not in without  # every 8th of the 32 non-test sources


def test_crop_pool_spans_roles_and_never_gives_the_same_photo(photos_corpus: dict, data_root: Path) -> None:
    corpus = Corpus.open("photos")
    single = corpus.pool(("clean",), "train")
    assert len(single) == len(corpus.crops("clean", "train"))
    assert np.array_equal(single[3], corpus.crops("clean", "train")[3])
    assert single.provenance(3) == corpus.provenance("clean", "train", 3)  # unchanged records for one role
    pool = corpus.pool(("clean", "fill"), "train")
    n_clean = len(corpus.crops("clean", "train"))
    assert len(pool) == n_clean + len(corpus.crops("fill", "train"))
    assert np.array_equal(pool[n_clean + 2], corpus.crops("fill", "train")[2])
    assert pool.provenance(n_clean + 2) == {"role": "fill", **corpus.provenance("fill", "train", 2)}
    for index in range(0, len(pool), 7):
        source = pool.source(index)
        other = pool.other_source(index, source)
        assert pool.source(other) != source
        assert pool.other_source(index, "no-such-photo") == index


def test_pooled_set_draws_fill_from_another_photo(photos_corpus: dict, data_root: Path) -> None:
    from blindbench.corpus import Corpus as _Corpus
    from blindbench.sets import load_set
    from blindbench.synth import clean_indices, clean_pool, corrupt_sample

    spec = load_set("photos-train")
    assert spec.clean_roles == spec.fill_roles == ("clean", "fill")
    corpus = _Corpus.open("photos")
    roles = set()
    for index, clean_index in zip(range(200), clean_indices(spec, len(clean_pool(spec, corpus)), range(200))):
        meta = corrupt_sample(spec, corpus, index, clean_index).meta
        roles.add(meta["provenance"]["clean"]["role"])
        assert meta["provenance"]["fill"]["source"] != meta["provenance"]["clean"]["source"]
    assert roles == {"clean", "fill"}  # both kinds of photo serve as clean images


def test_crops_are_never_upscaled_and_small_sources_are_reported(photos_corpus: dict) -> None:
    sizes = {s["id"]: s["size"] for s in photos_corpus["sources"]}
    for crops in photos_corpus["crops"].values():
        for source, scale, _, _ in crops:
            assert scale <= min(sizes[source])
    assert any("hfs-000" in p and "smaller than" in p for p in photos_corpus["problems"])


def test_corpus_arrays_match_manifest_provenance(photos_corpus: dict, data_root: Path) -> None:
    corpus = Corpus.open("photos")
    crops = corpus.crops("clean", "test")
    assert crops.shape == (photos_corpus["arrays"]["clean-test"]["count"], 256, 256, 3)
    info = corpus.provenance("clean", "test", 0)
    assert info["box"][2:] == [256, 256] and info["source"].startswith(("mate", "lomiri", "plasma"))


def test_cut_crops_texture_filter_drops_flat_regions() -> None:
    flat = np.full((600, 900, 3), 120, np.uint8)
    records, pixels = cut_crops(flat, "flat", CorpusConfig())
    assert records == [] and pixels == []
    textured = np.random.default_rng(0).integers(0, 256, (600, 900, 3), dtype=np.uint8)
    records, pixels = cut_crops(textured, "noise", CorpusConfig(scales=(512,)))
    assert len(records) == 2 * 3 and all(p.shape == (256, 256, 3) for p in pixels)  # 512x768 → 2x3 tiles


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8), (width, height))
    return np.clip(base.astype(int) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


def test_read_image_handles_exif_grey_rgba_and_16bit(tmp_path: Path) -> None:
    stored = _photo(40, 80, 1)  # stored 80 wide, 40 high; orientation 6 means "rotate 90° clockwise to display"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "rotated.jpg").shape == (80, 40, 3)

    Image.fromarray(stored[..., 0]).save(tmp_path / "grey.png")
    grey = read_image(tmp_path / "grey.png")
    assert grey.shape == (40, 80, 3) and np.array_equal(grey[..., 0], grey[..., 2])

    rgba = np.dstack([stored, np.full((40, 80), 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    rgb, alpha = read_image_rgba(tmp_path / "alpha.png")
    assert np.array_equal(rgb, stored) and alpha is not None and int(alpha[0, 0]) == 77

    deep = np.zeros((4, 4, 3), np.uint16)
    deep[0, 0] = 257 * 100 + 128  # 100.498 → 100 (rounded, and not 100 by truncation of the high byte alone)
    deep[0, 1] = 257 * 100 + 129  # 100.502 → 101
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    got = read_image(tmp_path / "deep.png")
    assert got.dtype == np.uint8 and int(got[0, 0, 0]) == 100 and int(got[0, 1, 0]) == 101


def test_read_image_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="image not found: .*nope.png"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="cannot read image .*bad.jpg"):
        read_image(tmp_path / "bad.jpg")


def _user_folders(root: Path) -> tuple[Path, Path]:
    clean, fill = root / "clean", root / "fill"
    (clean / "nested").mkdir(parents=True)
    fill.mkdir()
    for i in range(4):
        Image.fromarray(_photo(96, 128, i)).save(clean / f"img{i}.png")
    Image.fromarray(_photo(100, 90, 9)[..., 0]).save(clean / "nested" / "grey.png")
    (clean / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    Image.fromarray(_photo(32, 32, 5)).save(clean / "tiny.png")
    for i in range(3):
        Image.fromarray(_photo(80, 80, 20 + i)).save(fill / f"f{i}.jpg")
    return clean, fill


def test_folder_corpus_counts_unreadable_and_small_files(tmp_path: Path) -> None:
    clean, fill = _user_folders(tmp_path)
    config = CorpusConfig(name="mine", crop=64, mode="center", test_every=2)
    manifest = build_corpus(folder_sources(clean, fill), config, out_dir=tmp_path / "out", workers=1, progress=False)
    problems = " ".join(manifest["problems"])
    assert "broken.jpg: unreadable" in problems and "tiny.png: smaller than the 64px crop" in problems
    assert len(manifest["problems"]) == 2
    counts = {k: v["count"] for k, v in manifest["arrays"].items()}
    assert counts["clean-train"] + counts["clean-test"] == 5  # 4 colour + 1 grey from the nested folder
    assert counts["fill-train"] + counts["fill-test"] == 3
    assert np.load(tmp_path / "out" / "clean-test.npy").shape[1:] == (64, 64, 3)


def test_folder_corpus_bytes_do_not_depend_on_workers(tmp_path: Path) -> None:
    clean, fill = _user_folders(tmp_path)
    config = CorpusConfig(name="mine", crop=64, mode="tiles", scales=(64, 96), min_std=0, min_laplacian=0)
    one = build_corpus(folder_sources(clean, fill), config, out_dir=tmp_path / "a", workers=1, progress=False)
    two = build_corpus(folder_sources(clean, fill), config, out_dir=tmp_path / "b", workers=2, progress=False)
    assert one["arrays"] == two["arrays"]


def test_missing_source_names_the_package_to_install() -> None:
    source = Source("mate-backgrounds/Nope", "clean", "debian:mate-backgrounds", "/nonexistent/Nope.jpg")
    with pytest.raises(BlindbenchError, match="apt-get install mate-backgrounds"):
        check_sources_present([source])


def test_changed_source_file_is_an_error(tmp_path: Path) -> None:
    clean, fill = _user_folders(tmp_path)
    config = CorpusConfig(name="mine", crop=64, mode="center")
    sources = folder_sources(clean, fill)
    manifest = build_corpus(sources, config, out_dir=tmp_path / "a", workers=1, progress=False)
    Image.fromarray(_photo(96, 128, 99)).save(clean / "img0.png")  # the file changes after the manifest was made
    with pytest.raises(BlindbenchError, match="source photo changed: .*img0.png"):
        build_corpus(sources, config, out_dir=tmp_path / "b", expected=manifest, workers=1, progress=False)


def test_empty_or_missing_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BlindbenchError, match="image folder not found"):
        folder_sources(tmp_path / "missing", tmp_path / "empty")
    with pytest.raises(BlindbenchError, match="no images found under"):
        folder_sources(tmp_path / "empty", tmp_path / "empty")


def test_bad_corpus_config_values_and_corrupt_manifest_are_one_line_errors(tmp_path):
    with pytest.raises(BlindbenchError, match="test_every must be an integer, got '5'"):
        CorpusConfig(test_every="5")
    with pytest.raises(BlindbenchError, match="scales must be an integer, got 512.5"):
        CorpusConfig(scales=(512.5,))
    with pytest.raises(BlindbenchError, match="min_std must be a number, got 'high'"):
        CorpusConfig(min_std="high")
    (tmp_path / "corpus.json").write_text('{"name": "photos", "crops"')  # cut off mid-write
    with pytest.raises(BlindbenchError, match="corrupt corpus manifest .*corpus build"):
        Corpus(tmp_path)


def test_corpus_json_missing_keys_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "corpus.json").write_text('{"name": "photos", "arrays": []}')
    with pytest.raises(BlindbenchError, match=r"corrupt corpus manifest .*no config, arrays, crops"):
        Corpus(tmp_path)

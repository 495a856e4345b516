from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

import blindbench.shards as shards
from blindbench.errors import BlindbenchError, ShardError
from blindbench.imageio import sha256_file
from blindbench.loader import shard_dataset
from blindbench.shards import committed_lock_path, generate_set, verify_set


def _hashes(folder: Path, spec) -> list[str]:
    return [sha256_file(folder / spec.shard_name(i)) for i in range(spec.shard_count)]


def test_committed_demo_lock_verifies(demo_dir: Path, demo_spec) -> None:
    report = verify_set(demo_spec, demo_dir)
    assert report.lock_path == committed_lock_path("photos-demo")
    assert report.ok, report.problems
    assert report.checked == demo_spec.shard_count


def test_same_bytes_for_one_worker_and_on_rerun(demo_dir: Path, demo_spec, tmp_path: Path) -> None:
    single = generate_set(demo_spec, tmp_path / "one", workers=1, progress=False)
    assert _hashes(tmp_path / "one", demo_spec) == _hashes(demo_dir, demo_spec)
    rerun = generate_set(demo_spec, tmp_path / "one", workers=1, progress=False)
    assert (rerun.written, rerun.kept) == (0, demo_spec.shard_count)
    assert rerun.lock["shards"] == single.lock["shards"]


def test_resume_rewrites_only_missing_or_bad_shards(demo_dir: Path, demo_spec, tmp_path: Path) -> None:
    folder = tmp_path / "resume"
    shutil.copytree(demo_dir, folder)
    (folder / demo_spec.shard_name(1)).unlink()
    (folder / f".{demo_spec.shard_name(2)}.partial").write_bytes(b"half a shard")
    with open(folder / demo_spec.shard_name(0), "r+b") as handle:  # bytes no longer match the sidecar
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    report = generate_set(demo_spec, folder, workers=1, progress=False)
    assert (report.written, report.kept) == (2, 1)
    assert not list(folder.glob(".*partial"))
    assert _hashes(folder, demo_spec) == _hashes(demo_dir, demo_spec)


def test_killed_run_leaves_nothing_half_written(demo_spec, photos_corpus, tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = shards.encode_sample

    def dying(sample):
        calls["n"] += 1
        if calls["n"] > demo_spec.samples_per_shard + 3:  # die inside the second shard
            raise KeyboardInterrupt
        return real(sample)

    monkeypatch.setattr(shards, "encode_sample", dying)
    folder = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        generate_set(demo_spec, folder, workers=1, progress=False)
    left = sorted(p.name for p in folder.iterdir() if p.name != ".blindbench.lock")  # left unlocked by a kill
    assert left == [demo_spec.shard_name(0), demo_spec.shard_name(0) + ".sha256"]
    monkeypatch.setattr(shards, "encode_sample", real)
    report = generate_set(demo_spec, folder, workers=1, progress=False)
    assert (report.written, report.kept) == (demo_spec.shard_count - 1, 1)
    assert verify_set(demo_spec, folder).ok


def test_altered_and_truncated_shards_are_reported(demo_dir: Path, demo_spec, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(demo_dir, folder)
    first, second = folder / demo_spec.shard_name(0), folder / demo_spec.shard_name(1)
    data = bytearray(first.read_bytes())
    data[5000] ^= 0xFF
    first.write_bytes(bytes(data))
    second.write_bytes(second.read_bytes()[:100_000])
    report = verify_set(demo_spec, folder)
    assert not report.ok
    assert any("000000.tar does not match its lock sha256 (altered)" in p for p in report.problems)
    assert any("000001.tar is 100000 bytes" in p and "truncated" in p for p in report.problems)
    with pytest.raises(ShardError, match="truncated or corrupt shard"):
        list(shard_dataset([str(second)]))


def test_lock_from_another_manifest_is_reported(demo_dir: Path, demo_spec) -> None:
    other = dataclasses.replace(demo_spec, seed=demo_spec.seed + 1, sha256="0" * 64)
    report = verify_set(other, demo_dir)
    assert any("different manifest" in p for p in report.problems)


def test_missing_lock_and_unwritable_output_are_errors(demo_spec, tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="no lock for set"):
        verify_set(demo_spec, tmp_path, lock_path=tmp_path / "none.lock.json")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BlindbenchError, match="output folder not writable: .*file/sub"):
        generate_set(demo_spec, blocker / "sub", workers=1, progress=False)


def test_malformed_lock_and_empty_sidecar(demo_dir: Path, demo_spec, tmp_path: Path) -> None:
    for content in ('[1, 2]', '{"shards": [{"sha256": "00"}]}', '{"shards": "x"}'):
        lock = tmp_path / "bad.lock.json"
        lock.write_text(content)
        with pytest.raises(ShardError, match="not a blindbench lock"):
            verify_set(demo_spec, demo_dir, lock_path=lock)
    folder = tmp_path / "sidecar"
    shutil.copytree(demo_dir, folder)
    sidecar = folder / f"{demo_spec.shard_name(0)}.sha256"
    sidecar.write_text("")
    assert shards._existing_entry(demo_spec, 0, folder, "x") is None  # rewritten, not an IndexError
    assert generate_set(demo_spec, folder, workers=1, progress=False).written == 1
    assert _hashes(folder, demo_spec) == _hashes(demo_dir, demo_spec)


def test_shards_of_an_edited_manifest_are_refused_or_regenerated(demo_dir: Path, demo_spec, tmp_path: Path) -> None:
    """Editing the seed and regenerating into the same folder must not keep (and re-lock) the old shards."""
    from blindbench.shards import StaleShardError

    folder = tmp_path / "edited"
    shutil.copytree(demo_dir, folder)
    edited = dataclasses.replace(demo_spec, seed=demo_spec.seed + 1, sha256="edited")
    with pytest.raises(StaleShardError, match="made from another version of set photos-demo.*--overwrite"):
        generate_set(edited, folder, workers=1, progress=False)
    report = generate_set(edited, folder, workers=1, progress=False, overwrite=True)
    assert (report.written, report.kept) == (demo_spec.shard_count, 0)
    assert _hashes(folder, demo_spec) != _hashes(demo_dir, demo_spec)
    lock = json.loads((folder / "photos-demo.lock.json").read_text())
    assert verify_set(edited, folder, lock_path=folder / "photos-demo.lock.json").ok
    assert lock["content_sha256"] != json.loads((demo_dir / "photos-demo.lock.json").read_text())["content_sha256"]
    assert generate_set(demo_spec, folder, workers=1, progress=False, overwrite=True).written == demo_spec.shard_count
    assert _hashes(folder, demo_spec) == _hashes(demo_dir, demo_spec)  # back to the committed bytes


def test_a_second_generate_into_the_same_folder_is_refused(demo_dir: Path, demo_spec, tmp_path: Path) -> None:
    from blindbench.errors import BlindbenchError
    from blindbench.locking import exclusive_folder

    folder = tmp_path / "busy"
    with exclusive_folder(folder, "generate"), pytest.raises(BlindbenchError, match="in use by another blindbench"):
        generate_set(demo_spec, folder, workers=1, progress=False)
    assert not list(folder.glob("*.tar"))


def test_a_waiting_generate_keeps_what_the_holder_wrote(demo_dir: Path, demo_spec, tmp_path: Path) -> None:
    # two trainings that both find their validation set missing: the second waits instead of dying
    import threading

    from blindbench.locking import exclusive_folder

    folder = tmp_path / "shared"
    holding, release = threading.Event(), threading.Event()

    def other_generate() -> None:
        with exclusive_folder(folder, "generate"):
            holding.set()
            release.wait(10)
            for path in demo_dir.iterdir():
                if path.is_file() and not path.name.startswith("."):
                    shutil.copy(path, folder / path.name)

    other = threading.Thread(target=other_generate)
    other.start()
    holding.wait(10)
    threading.Timer(0.3, release.set).start()
    report = generate_set(demo_spec, folder, workers=1, progress=False, wait=True)
    other.join()
    assert (report.written, report.kept) == (0, demo_spec.shard_count)
    assert _hashes(folder, demo_spec) == _hashes(demo_dir, demo_spec)


def test_folder_lock_is_removed_and_reusable(tmp_path: Path) -> None:
    from blindbench.locking import LOCK_NAME, exclusive_folder

    for _ in range(2):
        with exclusive_folder(tmp_path / "f", "generate"):
            assert (tmp_path / "f" / LOCK_NAME).read_text().strip().isdigit()
        assert not (tmp_path / "f" / LOCK_NAME).exists()
    (tmp_path / "f" / LOCK_NAME).write_text("999999\n")  # left by a killed run: not locked, taken over
    with exclusive_folder(tmp_path / "f", "generate"):
        pass


def test_sheet_of_a_shard_with_a_corrupt_png_is_one_line(demo_dir: Path, demo_spec, tmp_path: Path, capsys) -> None:
    import io
    import tarfile

    from blindbench.cli import main

    folder = tmp_path / "corrupt"
    shutil.copytree(demo_dir, folder)
    shard = folder / demo_spec.shard_name(0)
    members = []
    with tarfile.open(shard) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read()
            members.append((member, b"\x89PNG broken" if member.name.endswith("input.png") else data))
    with tarfile.open(shard, "w") as tar:
        for member, data in members:
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    assert main(["sheet", "--set", "photos-demo", "--out", str(folder), "--png", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad sample photos-demo_000000" in err[0]


def test_sample_json_has_one_flat_schema_for_every_pattern(demo_dir: Path, demo_spec, photos_corpus) -> None:
    """Schema inference from a few samples (HF datasets) needs the same keys and value types in every sample."""
    from blindbench.corpus import Corpus
    from blindbench.shards import iter_shard_samples, read_meta
    from blindbench.synth import clean_indices, clean_pool, corrupt_sample

    corpus = Corpus.open("photos")
    cleans = clean_indices(demo_spec, len(clean_pool(demo_spec, corpus)), range(demo_spec.count))
    schemas, patterns = set(), set()
    for shard in range(demo_spec.shard_count):
        for raw in iter_shard_samples(demo_dir / demo_spec.shard_name(shard)):
            flat = json.loads(raw["json"])
            schemas.add(tuple((k, type(v).__name__) for k, v in sorted(flat.items())))
            meta = read_meta(raw["json"])
            patterns.add(meta["pattern"])
            expected = corrupt_sample(demo_spec, corpus, meta["index"], cleans[meta["index"]]).meta
            assert meta == expected  # read_meta gives back the replayable parameters as generated
    assert len(patterns) == len(demo_spec.recipes)
    assert schemas == {(("index", "int"), ("key", "str"), ("params", "str"), ("pattern", "str"),
                        ("provenance", "str"), ("set", "str"))}  # fmt: skip


def test_lock_and_sidecars_carry_the_shard_format(demo_dir: Path, demo_spec, tmp_path: Path) -> None:
    """Shards of an older format (sidecars without the format line) are rewritten; an older lock is reported."""
    lock = json.loads(committed_lock_path("photos-demo").read_text())
    assert lock["format"] == shards.SHARD_FORMAT == 2
    folder = tmp_path / "old-format"
    shutil.copytree(demo_dir, folder)
    for sidecar in folder.glob("*.sha256"):
        lines = sidecar.read_text().splitlines(keepends=True)
        sidecar.write_text("".join(line for line in lines if not line.startswith("# shard format")))
    report = generate_set(demo_spec, folder, workers=1, progress=False)
    assert (report.written, report.kept) == (demo_spec.shard_count, 0)
    assert _hashes(folder, demo_spec) == _hashes(demo_dir, demo_spec)
    old = {k: v for k, v in lock.items() if k != "format"}
    (tmp_path / "old.lock.json").write_text(json.dumps(old))
    problems = verify_set(demo_spec, demo_dir, lock_path=tmp_path / "old.lock.json").problems
    assert any("shard format 1, this blindbench writes format 2" in p for p in problems), problems


def test_shards_made_by_other_library_versions_are_rewritten(demo_dir: Path, demo_spec, tmp_path: Path) -> None:
    """OpenCV 5.1 draws `text` otherwise than 5.0: a resumed generate must not keep another version's shards."""
    folder = tmp_path / "other-versions"
    shutil.copytree(demo_dir, folder)
    sidecar = folder / f"{demo_spec.shard_name(1)}.sha256"
    recorded = shards.library_versions()
    assert f"# libraries {json.dumps(recorded, sort_keys=True, separators=(',', ':'))}" in sidecar.read_text()
    other = json.dumps({**recorded, "opencv": "0.0.1"}, sort_keys=True, separators=(",", ":"))
    sidecar.write_text(re.sub(r"# libraries .*", f"# libraries {other}", sidecar.read_text()))
    report = generate_set(demo_spec, folder, workers=1, progress=False)
    assert (report.written, report.kept) == (1, demo_spec.shard_count - 1)
    assert "0.0.1" not in sidecar.read_text()
    assert _hashes(folder, demo_spec) == _hashes(demo_dir, demo_spec)


def test_installed_libraries_are_those_of_the_committed_lock() -> None:
    """The lock's bytes hold only with the libraries it was made with; pyproject pins OpenCV to that series."""
    made_with = json.loads(committed_lock_path("photos-demo").read_text())["versions"]
    installed = shards.library_versions()
    assert installed["opencv"].split(".")[:2] == made_with["opencv"].split(".")[:2], (made_with, installed)


def test_webdataset_tar_writer_gives_the_hand_written_tar_bytes(demo_dir: Path, demo_spec) -> None:
    """The shard writer is webdataset's TarWriter with fixed metadata; it equals the stdlib writer it replaced."""
    import io
    import tarfile

    from blindbench.shards import iter_shard_samples, tar_writer

    shard = demo_dir / demo_spec.shard_name(0)
    samples = list(iter_shard_samples(shard))
    by_hand = io.BytesIO()
    with tarfile.open(fileobj=by_hand, mode="w", format=tarfile.USTAR_FORMAT) as tar:  # the writer before
        for sample in samples:
            for ext in shards.MEMBERS:
                info = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
                info.size, info.mtime, info.mode, info.uid, info.gid = len(sample[ext]), 0, 0o444, 0, 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(sample[ext]))
    library = io.BytesIO()
    with tar_writer(library) as tar:
        for sample in samples:
            tar.write(sample)
    assert library.getvalue() == by_hand.getvalue() == shard.read_bytes()


def test_public_shuffle_stage_draws_as_the_private_one(demo_dir: Path, demo_spec) -> None:
    """The loader's buffer shuffle uses webdataset's public `shuffle(..., rng=)`: the order `_shuffle` gave."""
    import random

    import numpy as np
    import webdataset as wds

    from blindbench.loader import shard_urls

    urls = shard_urls(demo_spec, demo_dir)
    order = np.random.default_rng(np.random.SeedSequence([1, 0])).permutation(len(urls))  # the shard shuffle
    keys = [s["__key__"] for i in order for s in shards.iter_shard_samples(urls[i])]
    private = list(wds.filters._shuffle(iter(keys), 10, 10, random.Random(hash((1, 0, 0, 0)))))
    loaded = [s["key"] for s in shard_dataset(urls, seed=1, epoch=0, shuffle_buffer=10)]  # rank 0, worker 0
    assert loaded == private and sorted(loaded) == sorted(keys) and loaded != keys

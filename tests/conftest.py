"""Session fixtures: one temporary data root, the embedded corpus built once, photos-demo generated once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="device for the tests that take the `device` fixture "
                     "(e.g. cuda on a GPU machine: the model contract then runs there too)")


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest):
    """The torch device the device-aware tests run on (``pytest --device cuda``); CPU by default."""
    import torch

    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda but no GPU here")
    return torch.device(name)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point BLINDBENCH_DATA at a session temp folder so no test writes into the repository."""
    root = tmp_path_factory.mktemp("data")
    previous = os.environ.get("BLINDBENCH_DATA")
    os.environ["BLINDBENCH_DATA"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("BLINDBENCH_DATA", None)
    else:
        os.environ["BLINDBENCH_DATA"] = previous


@pytest.fixture(scope="session")
def photos_corpus(data_root: Path) -> dict:
    """The embedded photos corpus, built and checked against manifests/photos.corpus.json."""
    from blindbench.corpus import build_embedded_corpus

    return build_embedded_corpus(workers=2, progress=False)


@pytest.fixture(scope="session")
def demo_spec():
    from blindbench.sets import load_set

    return load_set("photos-demo")


@pytest.fixture(scope="session")
def demo_dir(photos_corpus: dict, demo_spec, data_root: Path) -> Path:
    """photos-demo generated with 2 workers into the session data root."""
    from blindbench.shards import generate_set

    return generate_set(demo_spec, workers=2, progress=False).out_dir


@pytest.fixture(scope="session")
def tiny_vcn_run(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny VCN trained for 2 steps on photos-demo at 32²: a real checkpoint for eval and inpaint tests."""
    from blindbench.train import TrainConfig, run_train

    out = tmp_path_factory.mktemp("tiny-vcn-run")
    cfg = TrainConfig(
        model="vcn", preset="tiny", set="photos-demo", source="shards", stage="all", steps_separate=1,
        steps_joint=1, batch_separate=2, batch_joint=2, perceptual=False, critic_steps=1, image_size=32,
        device="cpu", workers=0, shuffle_buffer=8, val_set="", sample_every=0, checkpoint_every=0,
        tensorboard=False, progress=False, out=str(out),
    )  # fmt: skip
    return run_train(cfg)

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vcn.vgg import ENV_VAR, VGG19Features, load_vgg19

# torchvision vgg19().features conv indices up to conv4_2
TORCHVISION_KEYS = {f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 16, 19, 21) for p in ("weight", "bias")}


def _full_state_dict() -> dict[str, torch.Tensor]:
    """A random state dict with torchvision naming, plus keys beyond relu4_2 that must be ignored."""
    torch.manual_seed(0)
    state = dict(VGG19Features().state_dict())
    state["features.23.weight"] = torch.zeros(512, 512, 3, 3)  # deeper conv of a full vgg19
    state["classifier.0.weight"] = torch.zeros(8, 4)
    state["classifier.0.bias"] = torch.zeros(8)
    return state


def test_state_dict_names_match_torchvision() -> None:
    assert set(VGG19Features().state_dict()) == TORCHVISION_KEYS


def test_load_and_feature_shapes(tmp_path: Path) -> None:
    state = _full_state_dict()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    vgg = load_vgg19(path)
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())
    torch.testing.assert_close(vgg.features[21].weight, state["features.21.weight"])
    feats = vgg(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert feats.relu3_2.shape == (2, 256, 16, 16)
    assert feats.relu4_2.shape == (2, 512, 8, 8)
    assert (feats.relu3_2 >= 0).all() and (feats.relu4_2 >= 0).all()


def test_load_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "weights.pth"
    torch.save(_full_state_dict(), path)
    monkeypatch.setenv(ENV_VAR, str(path))
    assert isinstance(load_vgg19(), VGG19Features)


def test_missing_file_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"nope\.pth.*BLINDBENCH_VGG19"):
        load_vgg19(missing)
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match="BLINDBENCH_VGG19"):
        load_vgg19()


def test_not_a_state_dict(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_vgg19(garbage)
    a_list = tmp_path / "list.pth"
    torch.save([1, 2, 3], a_list)
    with pytest.raises(ValueError, match="state dict"):
        load_vgg19(a_list)
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(ValueError, match="missing"):
        load_vgg19(partial)


def test_wrong_shape(tmp_path: Path) -> None:
    state = _full_state_dict()
    state["features.10.weight"] = torch.zeros(256, 128, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"features\.10\.weight has shape"):
        load_vgg19(path)

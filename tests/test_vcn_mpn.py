from __future__ import annotations

import pytest
import torch

from vcn.blocks import ResBlock
from vcn.mpn import MPN


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_mpn_param_count_matches_official_tf() -> None:
    with torch.device("meta"):
        mpn = MPN(width=32)
    assert n_params(mpn) == 1_261_825
    assert mpn.out_channels_features == 128


def test_resblock_always_has_projection_shortcut() -> None:
    # 3x3, 128 -> 128: two convs (147,584 each) + 1x1 shortcut (16,512) = official 311,680
    assert n_params(ResBlock(128, 128, 3, dilation=2)) == 311_680


def test_mpn_shapes_tiny() -> None:
    torch.manual_seed(0)
    mpn = MPN(width=8)
    logits, features = mpn(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert logits.shape == (2, 1, 64, 64)
    assert features.shape == (2, mpn.out_channels_features, 16, 16)
    assert torch.isfinite(logits).all() and torch.isfinite(features).all()


def test_mpn_without_features() -> None:
    mpn = MPN(width=8, with_features=False)
    logits, features = mpn(torch.zeros(1, 3, 32, 32))
    assert logits.shape == (1, 1, 32, 32) and features is None
    assert n_params(MPN(32)) - n_params(MPN(32, with_features=False)) == 311_680


def test_mpn_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        MPN(width=8)(torch.zeros(1, 3, 30, 32))

"""Weights and optimizer states saved before the baselines' dead MPN fusion block was dropped still load."""

from __future__ import annotations

import torch

from baselines.blind import BlindInpainter
from baselines.ca import CAGenerator
from blindbench.checkpoint import load_weights, retire_optimizer_state, retired_keys
from blindbench.models import count_parameters, create_model
from vcn.mpn import MPN


def _old_ca_tiny() -> BlindInpainter:
    """CA at the tiny preset as it was built before: the MPN with its fusion block, which no loss reached."""
    return BlindInpainter(MPN(8, with_features=True), CAGenerator(cnum=8))


def test_baselines_build_no_dead_parameters() -> None:
    for name in ("ca", "gmc", "pc", "gc"):
        model = create_model(name, preset="tiny")
        assert model.mpn.enc4 is None
        assert not any(k.startswith("mpn.enc4.") for k in model.state_dict())


def test_old_weights_and_adam_state_load_into_the_model_without_the_block() -> None:
    torch.manual_seed(0)
    old = _old_ca_tiny()
    image, target = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    opt = torch.optim.Adam(old.parameters(), lr=1e-3)
    for _ in range(2):
        out = old(image)
        loss = (out.image - target).abs().mean() + out.mask_logits.sigmoid().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    old.eval()
    weights, opt_state = old.state_dict(), opt.state_dict()

    new = create_model("ca", preset="tiny").eval()
    dead = retired_keys(new, weights)
    assert dead and all(k.startswith("mpn.enc4.") for k in dead)
    assert count_parameters(old) - count_parameters(new) == sum(weights[k].numel() for k in dead)
    load_weights(new, weights, "old weights")
    with torch.no_grad():
        assert torch.equal(new(image).image, old(image).image)  # the block never changed an output

    new_opt = torch.optim.Adam(new.parameters(), lr=1e-3)
    new_opt.load_state_dict(retire_optimizer_state(opt_state, weights, new))
    old_moments = {n: opt.state[p]["exp_avg"] for n, p in old.named_parameters() if p in opt.state}
    assert not any(n.startswith("mpn.enc4.") for n in old_moments)  # dead: Adam never saw a gradient there
    for n, p in new.named_parameters():
        assert torch.equal(new_opt.state[p]["exp_avg"], old_moments[n]), n
    new.train()
    out = new(image)
    (out.image - target).abs().mean().backward()
    new_opt.step()  # moments of the right shapes: the step runs


def test_a_state_that_does_not_match_is_left_for_the_optimizer_to_report() -> None:
    new = create_model("ca", preset="tiny")
    weights = _old_ca_tiny().state_dict()
    bogus = {"state": {}, "param_groups": [{"params": [0, 1, 2]}]}
    assert retire_optimizer_state(bogus, weights, new) is bogus
    assert retire_optimizer_state(bogus, new.state_dict(), new) is bogus  # nothing retired


def test_exported_weights_leave_retired_parameters_out(tmp_path) -> None:
    from blindbench.checkpoint import save_checkpoint, weights_digest
    from blindbench.zoo import export_weights

    old = _old_ca_tiny()
    weights = old.state_dict()
    ckpt = save_checkpoint({"model_name": "ca", "preset": "tiny", "step": 3, "model": weights,
                            "model_sha256": weights_digest(weights)}, tmp_path / "old.pt")  # fmt: skip
    export_weights(ckpt, tmp_path / "w.pt")
    blob = torch.load(tmp_path / "w.pt", weights_only=False)
    assert not any(k.startswith("mpn.enc4.") for k in blob["model"])
    assert set(blob["model"]) == set(create_model("ca", preset="tiny").state_dict())


def test_published_baselines_hold_live_parameters_only() -> None:
    from blindbench.zoo import available, entry_dir, read_card

    checked = 0
    for corpus, model in available():
        if model not in ("ca", "gmc", "pc", "gc") or not read_card(corpus, model)["finished"]:
            continue  # an unfinished entry is re-exported when it is published finished
        blob = torch.load(entry_dir(corpus, model) / "weights.pt", weights_only=False)
        assert not any(k.startswith("mpn.enc4.") for k in blob["model"]), (corpus, model)
        assert read_card(corpus, model)["parameters"] == sum(v.numel() for v in blob["model"].values())
        checked += 1
    assert checked >= 2  # pc and gc at least

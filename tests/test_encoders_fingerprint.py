"""The model fingerprint (the key of every stored corpus embedding) follows the weights.

Fused AdamW updates parameters in place without bumping their version counters; a fingerprint
memoised on those counters stayed at the base model's value after training, and the evaluation
after training then searched the base model's corpus embeddings with the trained query encoder.
"""

from __future__ import annotations

import torch

from hardneg.core.encoders import model_fingerprint


def step(model: torch.nn.Module, **optimizer: bool) -> None:
    loss = model(torch.ones(2, 4)).square().sum()
    loss.backward()
    torch.optim.AdamW(model.parameters(), lr=0.1, **optimizer).step()


def test_fused_adamw_leaves_version_counters_alone() -> None:
    """The torch behaviour that broke the memoised fingerprint (a canary for torch upgrades)."""
    model = torch.nn.Linear(4, 3)
    before = [p._version for p in model.parameters()]
    step(model, fused=True)
    assert [p._version for p in model.parameters()] == before


def test_fingerprint_changes_after_every_kind_of_optimizer_step() -> None:
    for optimizer in ({"foreach": False}, {"foreach": True}, {"fused": True}):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        base = model_fingerprint(model)
        assert model_fingerprint(model) == base  # stable while nothing changes
        step(model, **optimizer)
        assert model_fingerprint(model) != base, optimizer


def test_equal_weights_share_a_fingerprint_and_any_change_is_seen() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b.weight.data[0, 0] += 1e-6  # through .data: no version bump on the parameter either
    assert model_fingerprint(a) != model_fingerprint(b)

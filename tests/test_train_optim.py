"""LAMB against its formula, and the linear warmup schedule."""

from __future__ import annotations

import pytest
import torch

from hardneg.trainers.optim import Lamb, linear_warmup, parameter_groups


def test_lamb_step_matches_the_formula() -> None:
    weight = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # norm 5
    weight.grad = torch.tensor([0.5, -1.0])
    Lamb([weight], lr=0.1, weight_decay=0.0, eps=0.0).step()
    # first step: m_hat = g, v_hat = g^2, update = sign(g) = (1, -1), trust = 5 / sqrt(2)
    trust = 5 / 2**0.5
    assert weight.detach().tolist() == pytest.approx([3 - 0.1 * trust, 4 + 0.1 * trust])


def test_linear_warmup_rises_then_decays_to_zero() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = linear_warmup(optimizer, warmup=3, total=7)
    rates = []
    for _ in range(7):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25])


def test_no_weight_decay_on_biases_and_layer_norms() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    named = [(f"encoder.{n}".replace("1.", "LayerNorm."), p) for n, p in model.named_parameters()]
    decay, no_decay = parameter_groups(named, 0.01)
    assert len(decay["params"]) == 1 and decay["weight_decay"] == 0.01
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


def test_adamw_makes_the_same_updates_as_the_reference_loop() -> None:
    from hardneg.trainers.config import TrainingArguments
    from hardneg.trainers.optim import build_optimizer

    torch.manual_seed(0)
    built_model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4))
    plain_model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4))
    plain_model.load_state_dict(built_model.state_dict())
    args = TrainingArguments(learning_rate=1e-2, weight_decay=0.1)
    built = build_optimizer(built_model.named_parameters(), args)
    plain = torch.optim.AdamW(
        parameter_groups(plain_model.named_parameters(), 0.1), lr=1e-2, eps=1e-8, foreach=False
    )
    inputs = torch.randn(5, 8)
    for _ in range(3):
        for model, optimizer in ((built_model, built), (plain_model, plain)):
            model(inputs).pow(2).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(built_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

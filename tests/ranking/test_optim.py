"""funnel.ranking.training.optim: the shared AdamW recipe, its warm-up/decay schedule and the faster head group."""
from __future__ import annotations

import pytest
import torch

from funnel.ranking.training.optim import adamw_linear, update


def test_schedule_warms_up_then_decays_and_the_head_group_keeps_its_own_rate():
    body, head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
    params = list(body.parameters()) + list(head.parameters())
    opt, sched = adamw_linear(params, 1e-4, 20, fast_params=list(head.parameters()), fast_lr=1e-3)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    rates = []
    for _ in range(20):
        rates.append([g["lr"] for g in opt.param_groups])
        update(head(body(torch.randn(3, 4))).pow(2).mean(), params, opt, sched)
    assert rates[0] == pytest.approx([0.5e-4, 0.5e-3])  # warm-up: 2 steps (10% of 20)
    assert rates[1] == rates[2] == pytest.approx([1e-4, 1e-3])  # peak
    assert all(a[0] > b[0] and a[1] > b[1] for a, b in zip(rates[2:], rates[3:]))  # then linear decay to 0
    assert rates[-1][0] == pytest.approx(1e-4 / 18)
    assert all(h / b == pytest.approx(10) for b, h in rates)


def test_without_fast_params_there_is_one_group():
    lin = torch.nn.Linear(2, 1)
    opt, _ = adamw_linear(list(lin.parameters()), 3e-5, 10)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == pytest.approx(3e-5)

"""Google's optimizer and schedule: the update rule, step for step, against a plain rendering."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from bertctl.train.optim import GoogleAdamW, linear_warmup_decay, param_groups, steps_for  # noqa: E402


def google_reference(params, grads_per_step, lr, wd, b1=0.9, b2=0.999, eps=1e-6):
    """Google's AdamWeightDecayOptimizer written out: no bias correction, decoupled decay."""
    params = [p.clone().double() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for grads in grads_per_step:
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = g.double()
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            update = m[i] / (v[i].sqrt() + eps) + wd * p
            params[i] = p - lr * update
    return params


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_fused_google_adamw_equals_googles_update(wd):
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(7, 5, generator=gen), torch.randn(11, generator=gen)]
    grads = [[torch.randn_like(p) * 3 for p in start] for _ in range(25)]
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = GoogleAdamW(params, lr=1e-3, weight_decay=wd)
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = g.clone()
        opt.step()
    expected = google_reference(start, grads, lr=1e-3, wd=wd)
    for got, want in zip(params, expected, strict=True):
        torch.testing.assert_close(got.detach().double(), want, rtol=1e-5, atol=1e-6)
    # Google's own values stay in the group between steps (the schedule sets lr there)
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["eps"] == 1e-6


def test_no_bias_correction_makes_early_steps_larger_than_adamw():
    p1, p2 = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    google, adamw = (
        GoogleAdamW([p1], lr=0.1, weight_decay=0.0),
        torch.optim.AdamW([p2], lr=0.1, eps=1e-6, weight_decay=0.0),
    )
    p1.grad = p2.grad = torch.ones(3)
    google.step()
    adamw.step()
    # first step: Google moves by lr * 0.1 / sqrt(0.001) = 3.16 * lr, AdamW by lr
    assert p1[0].item() == pytest.approx(-0.1 * 0.1 / 0.001**0.5, rel=1e-4)
    assert p2[0].item() == pytest.approx(-0.1, rel=1e-4)


def test_state_dict_round_trip_keeps_the_step_count():
    p = torch.nn.Parameter(torch.ones(4))
    opt = GoogleAdamW([p], lr=0.01)
    for _ in range(3):
        p.grad = torch.ones(4)
        opt.step()
    again = GoogleAdamW([torch.nn.Parameter(torch.ones(4))], lr=0.01)
    again.load_state_dict(opt.state_dict())
    assert again.param_groups[0]["google_step"] == 3


def test_schedule_and_step_count_are_googles():
    assert steps_for(3668, 32, 3.0) == 343  # MRPC in Google's README
    assert linear_warmup_decay(0, 343, 34) == 0.0
    assert linear_warmup_decay(17, 343, 34) == 0.5
    assert linear_warmup_decay(34, 343, 34) == pytest.approx(1 - 34 / 343)


def test_layernorm_and_bias_never_decay():
    layer = torch.nn.Sequential()
    layer.add_module("dense", torch.nn.Linear(4, 4))
    layer.add_module("LayerNorm", torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(layer, 0.01)
    assert len(decay["params"]) == 1 and decay["params"][0] is layer.dense.weight
    assert {id(p) for p in no_decay["params"]} == {
        id(layer.dense.bias),
        id(layer.LayerNorm.weight),
        id(layer.LayerNorm.bias),
    }

"""Google's optimizer and learning-rate schedule (optimization.py of google-research/bert).

Google's AdamWeightDecayOptimizer differs from torch.optim.AdamW in one way that matters for
fine-tuning: it applies no bias correction to the moment estimates, so early updates are larger
than AdamW's. Weight decay is decoupled (added to the update, scaled by the learning rate) and
skips LayerNorm and bias parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

# Google excludes parameters whose name contains any of these (AdamWeightDecayOptimizer).
NO_DECAY = ("LayerNorm", "layer_norm", "bias")


def linear_warmup_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the peak learning rate at `step` (0-based): linear warmup, then linear decay.

    Google: lr = peak * (1 - step/total) (polynomial decay, power 1, to 0), and during the first
    warmup steps lr = peak * step/warmup.

    >>> [round(linear_warmup_decay(s, 10, 2), 2) for s in (0, 1, 2, 5, 9)]
    [0.0, 0.5, 0.8, 0.5, 0.1]
    """
    if warmup_steps and step < warmup_steps:
        return step / warmup_steps
    return max(0.0, 1.0 - step / max(1, total_steps))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights that decay, and LayerNorm/bias parameters that do not."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if any(part in name for part in NO_DECAY) else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class GoogleAdamW(torch.optim.AdamW):
    """Adam with decoupled weight decay and no bias correction, exactly as Google's BERT.

    Google: update = m / (sqrt(v) + eps) + wd * p;  p -= lr * update.

    torch's AdamW computes the same moments but divides them by the bias corrections
    c1 = 1 - b1^t and c2 = 1 - b2^t. Handing it, for step t,

        lr' = lr * c1 / sqrt(c2),   eps' = eps / sqrt(c2),   wd' = wd * sqrt(c2) / c1

    makes its update lr' * (m/c1) / (sqrt(v/c2) + eps') + lr' * wd' * p equal Google's term
    for term, so Google's exact update runs in torch's fused kernel (about 10 times faster on
    CPU than a multi-tensor loop). The group keeps Google's own values between steps, so the
    schedule sets `lr` as usual and checkpoints hold Google's settings.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        fused: bool = True,
    ) -> None:
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused
        )
        for group in self.param_groups:
            group.setdefault("google_step", 0)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        google = []
        for group in self.param_groups:
            google.append((group["lr"], group["eps"], group["weight_decay"]))
            group["google_step"] += 1
            beta1, beta2 = group["betas"]
            c1 = 1 - beta1 ** group["google_step"]
            c2 = (1 - beta2 ** group["google_step"]) ** 0.5
            group["lr"] = group["lr"] * c1 / c2
            group["eps"] = group["eps"] / c2
            group["weight_decay"] = group["weight_decay"] * c2 / c1
        try:
            return super().step(closure)
        finally:
            for group, (lr, eps, wd) in zip(self.param_groups, google, strict=True):
                group["lr"], group["eps"], group["weight_decay"] = lr, eps, wd


def make_optimizer(
    model: torch.nn.Module, kind: str, lr: float, weight_decay: float, device: torch.device
) -> torch.optim.Optimizer:
    """`google` (default: Google's exact update) or `adamw` (torch's); both in torch's fused
    kernel, which runs on CUDA and on CPU."""
    groups = param_groups(model, weight_decay)
    if kind == "google":
        return GoogleAdamW(groups, lr=lr, eps=1e-6)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-6, fused=True)


def steps_for(examples: int, batch_size: int, epochs: float) -> int:
    """Google's step count: int(examples / batch * epochs) (MRPC, 3668, 32, 3 -> 343)."""
    return int(examples / batch_size * epochs)


def warmup_for(total_steps: int, proportion: float) -> int:
    """Google's warmup: int(total * proportion)."""
    return int(total_steps * proportion)


class LAMB(torch.optim.Optimizer):
    """LAMB: Adam's direction, scaled per tensor by a trust ratio, for large batches.

    Written from the update rule of You et al. 2019, "Large Batch Optimization for Deep
    Learning: Training BERT in 76 minutes" (Algorithm 2), for each tensor x at step t:

        m = b1*m + (1-b1)*g          v = b2*v + (1-b2)*g*g
        m_hat = m / (1 - b1^t)       v_hat = v / (1 - b2^t)        (bias correction, as the paper)
        u = m_hat / (sqrt(v_hat) + eps) + weight_decay * x
        ratio = ||x|| / ||u||        (1 when either norm is 0)
        x -= lr * ratio * u

    So each tensor moves by about `lr` times its own norm per step, whatever the gradient's
    scale: what lets the paper raise the batch to 32k without the lr blowing up. A group with
    `adapt=False` (bertctl's LayerNorm and bias group, which also skips weight decay: a bias
    starts at zero, so its norm is no scale to move by) takes the plain Adam step (ratio 1).
    The learning rates that suit LAMB are much larger than Adam's (the paper: about 1e-3 to
    1e-2 for batches of 512 to 32k).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        adapt: bool = True,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "adapt": adapt,
            "step": 0,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            group["step"] += 1
            t = group["step"]
            grads = [p.grad for p in params]
            for p in params:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            m = [self.state[p]["exp_avg"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]
            beta1, beta2 = group["betas"]
            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            # u = (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + wd * x
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, (1 - beta2**t) ** 0.5)
            torch._foreach_add_(denom, group["eps"])
            update = torch._foreach_div(m, denom)
            torch._foreach_div_(update, 1 - beta1**t)
            if group["weight_decay"]:
                torch._foreach_add_(update, params, alpha=group["weight_decay"])
            if group["adapt"]:
                weight_norms = torch._foreach_norm(params)
                update_norms = torch._foreach_norm(update)
                for u, w_norm, u_norm in zip(update, weight_norms, update_norms, strict=True):
                    ratio = torch.where(
                        (w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm)
                    )
                    u.mul_(ratio)
            torch._foreach_add_(params, update, alpha=-group["lr"])
        return loss


def make_pretraining_optimizer(
    model: torch.nn.Module, kind: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """`google` (Google's AdamW without bias correction, as run_pretraining.py) or `lamb`
    (LayerNorm and bias parameters: no weight decay and no trust ratio)."""
    decay, no_decay = param_groups(model, weight_decay)
    if kind == "lamb":
        return LAMB([{**decay, "adapt": True}, {**no_decay, "adapt": False}], lr=lr, eps=1e-6)
    return GoogleAdamW([decay, no_decay], lr=lr, eps=1e-6)

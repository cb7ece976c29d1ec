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


class GoogleAdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay and no bias correction, exactly as Google's BERT.

    update = m / (sqrt(v) + eps) + weight_decay * param;  param -= lr * update
    Uses torch's multi-tensor (`_foreach`) kernels, so one step is a handful of kernel launches
    per parameter group rather than several per tensor.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            m = [self.state[p]["exp_avg"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]
            beta1, beta2 = group["betas"]
            torch._foreach_lerp_(m, grads, 1 - beta1)  # m = b1*m + (1-b1)*g
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_add_(denom, group["eps"])
            update = torch._foreach_div(m, denom)
            if group["weight_decay"]:
                torch._foreach_add_(update, params, alpha=group["weight_decay"])
            torch._foreach_add_(params, update, alpha=-group["lr"])
        return loss


def make_optimizer(
    model: torch.nn.Module, kind: str, lr: float, weight_decay: float, device: torch.device
) -> torch.optim.Optimizer:
    """`google` (default: Google's exact update) or `adamw` (torch's, fused on CUDA)."""
    groups = param_groups(model, weight_decay)
    if kind == "google":
        return GoogleAdamW(groups, lr=lr, eps=1e-6)
    fused = device.type == "cuda"
    return torch.optim.AdamW(
        groups, lr=lr, betas=(0.9, 0.999), eps=1e-6, fused=fused, foreach=not fused
    )


def steps_for(examples: int, batch_size: int, epochs: float) -> int:
    """Google's step count: int(examples / batch * epochs) (MRPC, 3668, 32, 3 -> 343)."""
    return int(examples / batch_size * epochs)


def warmup_for(total_steps: int, proportion: float) -> int:
    """Google's warmup: int(total * proportion)."""
    return int(total_steps * proportion)

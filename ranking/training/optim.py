"""The one optimisation recipe of every trainer (dual encoder, cross-encoder, pruning recovery):
AdamW with weight decay 0.01, a linear warm-up over the first 10% of the steps then a linear decay
to 0, gradients clipped to norm 1. One place, so the three cannot drift apart."""
from __future__ import annotations


def adamw_linear(params, lr: float, total_steps: int, *, weight_decay: float = 0.01, warmup_frac: float = 0.1,
                 fast_params=(), fast_lr: float = 0.0):
    """(optimizer, scheduler) for `total_steps` updates of `params`.

    `fast_params` (e.g. a freshly initialised head) train at `fast_lr` instead, on the same schedule.
    """
    import torch

    fast = {id(p) for p in fast_params}
    groups = [{"params": [p for p in params if id(p) not in fast], "lr": lr}]
    if fast:
        groups.append({"params": [p for p in params if id(p) in fast], "lr": fast_lr or lr})
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    warmup = max(1, int(total_steps * warmup_frac))
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to 0
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(total_steps - warmup, 1))))
    return opt, sched


def update(loss, params, opt, sched, scaler=None, clip: float = 1.0) -> float:
    """One step: backward (through the fp16 `scaler` when given), clip, step, schedule, zero the
    gradients. Returns the loss as a float."""
    import torch

    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    else:
        loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())

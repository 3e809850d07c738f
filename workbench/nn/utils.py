"""Utilities shared by the SSL methods: momentum (EMA) encoders and schedules (pure torch).

- [0]: BYOL, 2020, https://arxiv.org/abs/2006.07733
- [1]: MoCo, 2020, https://arxiv.org/abs/1911.05722
- [2]: SGDR (cosine schedule), 2017, https://arxiv.org/abs/1608.03983
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


@torch.no_grad()
def update_momentum(model: nn.Module, model_ema: nn.Module, m: float) -> None:
    """Move ``model_ema`` towards ``model`` in place: ``ema = m * ema + (1 - m) * model``.

    The momentum (teacher / key) encoder of BYOL [0], MoCo [1] and DINO. Parameters are averaged;
    buffers (BatchNorm running statistics) are copied.

    Args:
        model: The online (student) module.
        model_ema: The momentum copy, with the same parameters and buffers (e.g. from
            ``copy_frozen(model)``).
        m: Momentum in [0, 1]; 1 keeps ``model_ema`` unchanged, 0 copies ``model``.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"Momentum m must be in [0, 1], got {m}")
    params, ema_params = list(model.parameters()), list(model_ema.parameters())
    buffers, ema_buffers = list(model.buffers()), list(model_ema.buffers())
    if len(params) != len(ema_params) or len(buffers) != len(ema_buffers):
        raise ValueError(
            f"model and model_ema differ: {len(params)} vs {len(ema_params)} parameters, "
            f"{len(buffers)} vs {len(ema_buffers)} buffers"
        )
    for i, (p, p_ema) in enumerate(zip(params, ema_params)):
        if p.shape != p_ema.shape:
            raise ValueError(
                f"Parameter {i} has shape {tuple(p.shape)} in model, {tuple(p_ema.shape)} in "
                "model_ema"
            )
        p_ema.lerp_(p.detach().to(p_ema.dtype), 1.0 - m)  # ema + (1 - m) * (p - ema)
    for b, b_ema in zip(buffers, ema_buffers):
        b_ema.copy_(b)


def deactivate_requires_grad(module: nn.Module) -> None:
    """Set ``requires_grad = False`` on every parameter of ``module`` (in place)."""
    for param in module.parameters():
        param.requires_grad = False


def copy_frozen(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters do not require gradients (a momentum encoder)."""
    frozen = copy.deepcopy(module)
    deactivate_requires_grad(frozen)
    return frozen


def cosine_schedule(
    step: int, max_steps: int, start_value: float, end_value: float, period: int | None = None
) -> float:
    """Cosine interpolation from ``start_value`` at step 0 to ``end_value`` at ``max_steps`` [2].

    Used for the EMA momentum of BYOL and DINO (0.996 -> 1) and for weight decay schedules.
    Steps past ``max_steps`` return ``end_value``. With ``period``, the value oscillates instead:
    ``start_value`` at multiples of ``period``, ``end_value`` half-way between.

    Args:
        step: Current step (>= 0).
        max_steps: Total number of steps (>= 1).
        start_value: Value at step 0.
        end_value: Value at ``max_steps``.
        period: Optional length of one full cosine cycle, in steps (>= 1).

    Returns:
        The scheduled value.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if period is not None:
        if period < 1:
            raise ValueError(f"period must be >= 1 or None, got {period}")
        progress = 2.0 * step / period
    else:
        progress = min(step, max_steps) / max_steps
    return end_value - (end_value - start_value) * (math.cos(math.pi * progress) + 1) / 2


def linear_warmup_cosine(
    step: int, warmup_steps: int, max_steps: int, base: float, final: float = 0.0
) -> float:
    """Learning rate with linear warm-up to ``base``, then cosine decay to ``final`` [2].

    The warm-up reaches ``base`` at step ``warmup_steps - 1`` (step 0 already gets
    ``base / warmup_steps``, so no step is wasted at lr 0); the cosine decay runs from
    ``warmup_steps`` to ``max_steps``, after which the value stays at ``final``.

    Args:
        step: Current optimiser step (>= 0).
        warmup_steps: Length of the warm-up, in steps (>= 0, <= max_steps).
        max_steps: Total number of steps (>= 1).
        base: Peak value (the learning rate after warm-up).
        final: Value at and after ``max_steps``.

    Returns:
        The scheduled value.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if not 0 <= warmup_steps <= max_steps:
        raise ValueError(f"warmup_steps must be in [0, max_steps={max_steps}], got {warmup_steps}")
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if step >= max_steps:
        return final
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    return final + (base - final) * (1 + math.cos(math.pi * progress)) / 2


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")

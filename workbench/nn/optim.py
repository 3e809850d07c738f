"""LARS: SGD with layer-wise adaptive rate scaling, the optimizer of Barlow Twins and VICReg.

- [0]: LARS, 2017, https://arxiv.org/abs/1708.03888
- [1]: Barlow Twins, 2021, https://arxiv.org/abs/2103.03230 (reference code's LARS)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose per-tensor step is rescaled to ``eta * ||w|| / ||g + wd * w||``.

    The trust ratio makes each layer's update a fixed fraction of its weights, whatever the scale
    of the loss: Barlow Twins' and VICReg's losses are sums over thousands of dimensions (about
    2,000 at the start), which throw plain SGD around at the learning rates that suit the
    others. Param groups with ``lars_adapt=False`` (biases and normalisation layers, as in the
    reference code) take plain momentum-SGD steps; they should carry no weight decay.

    Args:
        params: Parameters or param groups.
        lr: Learning rate.
        momentum: Momentum factor.
        weight_decay: L2 penalty added to the gradient before the trust ratio.
        eta: Trust coefficient.
        lars_adapt: Default for the groups: apply the trust ratio.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        lars_adapt: bool = True,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(
                f"LARS needs lr, momentum, weight_decay >= 0 and eta > 0; got lr={lr}, "
                f"momentum={momentum}, weight_decay={weight_decay}, eta={eta}"
            )
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta,
                    "lars_adapt": lars_adapt}  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad.add(p, alpha=group["weight_decay"])
                if group["lars_adapt"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d_p)
                    one = torch.ones_like(w_norm)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, one
                    )
                    d_p = d_p.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(d_p).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d_p)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss

"""Process-group helpers for losses that look beyond the local batch (pure torch).

Every helper is the identity (or 1 / 0) when ``torch.distributed`` is not initialised, so a loss
written with them runs unchanged in a notebook, on one GPU, and under DDP.

Gradients: ``gather`` and ``all_reduce_sum`` are autograd-aware. Their backward sums the incoming
gradients over processes, so each process gets ``world_size`` times the gradient of the global
loss for its own samples; DDP's gradient averaging then yields exactly the gradient of the loss
computed on the concatenated batch in one process (tested in ``tests/test_nn_utils.py``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """Rank of this process in the default group (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


class GatherLayer(torch.autograd.Function):
    """``all_gather`` that keeps the gradient to every process's input.

    ``torch.distributed.all_gather`` cuts the graph; this function returns one tensor per process
    and, in backward, sums the gradients of all processes and hands each process the slice of its
    own input, as in SimCLR's and VICReg's reference code.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> tuple[Tensor, ...]:  # noqa: D102
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> Tensor:  # noqa: D102
        all_grads = torch.stack(grads)  # (W, *x.shape)
        dist.all_reduce(all_grads)
        return all_grads[dist.get_rank()]


def gather(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all processes along dim 0, keeping gradients.

    Args:
        x: Local tensor (B, ...); the same shape on every process.

    Returns:
        (world_size * B, ...) with this process's rows at ``rank() * B``; ``x`` itself when not
        distributed.
    """
    if world_size() == 1:
        return x
    return torch.cat(GatherLayer.apply(x), dim=0)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum ``x`` over processes, keeping gradients (``x`` itself when not distributed).

    Args:
        x: Tensor of any shape; the same shape on every process.

    Returns:
        The element-wise sum over processes, a new tensor of the same shape.
    """
    if world_size() == 1:
        return x
    out: Tensor = _AllReduceSum.apply(x)
    return out


@torch.no_grad()
def all_reduce_mean_(x: Tensor) -> Tensor:
    """Average ``x`` over processes in place, without gradient; returns ``x``."""
    n = world_size()
    if n > 1:
        dist.all_reduce(x)
        x.div_(n)
    return x


@torch.no_grad()
def broadcast_(x: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``x`` in place with its value on process ``src``; returns ``x``."""
    if world_size() > 1:
        dist.broadcast(x, src)
    return x

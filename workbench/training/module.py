"""The Lightning shell: optimizer, schedule, batched augmentation; the maths lives in the method."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn

from workbench.augment.batched import BatchedViews
from workbench.augment.transforms import torch_threads
from workbench.methods.base import Method
from workbench.nn.optim import LARS


def lr_lambda(step: int, warmup_steps: int, max_steps: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    t = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation parameters (standard SSL practice)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# LARS settings for short runs on small data (solo-learn's CIFAR recipe for Barlow Twins and
# VICReg): trust coefficient 0.02 (the papers' 0.001 suits 1,000 ImageNet epochs at batch 2,048),
# biases and normalisation layers at plain SGD steps of this fraction of the rate (the Barlow
# Twins reference code: 0.0048 / 0.2).
LARS_ETA = 0.02
LARS_BIAS_LR_RATIO = 0.024


def build_optimizer(
    method: Method, lr: float, module: nn.Module | None = None
) -> torch.optim.Optimizer:
    """The method's optimizer at peak rate ``lr``: SGD (momentum 0.9), LARS or AdamW.

    Biases and normalisation parameters get no weight decay (and, under LARS, no trust ratio).

    Args:
        method: Chooses the optimizer and weight decay.
        lr: Peak learning rate.
        module: Whose parameters to optimise (default: ``method``).
    """
    groups = param_groups(module if module is not None else method, method.weight_decay())
    name = method.resolved_optimizer()
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "lars":
        groups[1].update(lars_adapt=False, lr=lr * LARS_BIAS_LR_RATIO)
        return LARS(groups, lr=lr, momentum=0.9, eta=LARS_ETA)
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


def cosine_between(step: int, max_steps: int, start: float, end: float) -> float:
    """Cosine from ``start`` at step 0 to ``end`` at ``max_steps`` (DINO's weight decay)."""
    t = min(1.0, step / max(1, max_steps))
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * t))


class SSLModule(L.LightningModule):
    """Wraps a :class:`Method`: batched device augmentation, optimiser, LR schedule, hooks.

    A non-finite loss never costs a host-device sync here: its flag stays on the device
    (``finite``), its gradients are zeroed before the optimiser step (on every rank: DDP has
    averaged them already), and the monitor reads the flag back at its cadence and fails the run.

    Args:
        method: The SSL method (backbone + heads + loss).
        lr: Peak learning rate.
        max_steps: Total optimiser steps (for the cosine schedules).
        warmup_steps: Linear warm-up steps.
        augment: A BatchedViews module (cached-tensor path) or None (views come ready-made).
        channels_last: Use the channels-last memory format for conv nets.
        weight_decay_end: End of a cosine weight-decay schedule (None: constant).
    """

    def __init__(
        self,
        method: Method,
        *,
        lr: float,
        max_steps: int,
        warmup_steps: int,
        augment: BatchedViews | None,
        channels_last: bool = False,
        weight_decay_end: float | None = None,
    ) -> None:
        super().__init__()
        self.method = method
        self.lr = lr
        self.max_steps = max(1, max_steps)
        self.warmup_steps = warmup_steps
        self.augment = augment
        self.channels_last = channels_last
        self.weight_decay_end = weight_decay_end
        self.last_output: Any = None  # StepOutput of the last batch, for the monitor callback
        self.finite: torch.Tensor | None = None  # on-device flag: the last loss was finite
        if channels_last:
            self.method.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Cached path: turn the uint8 batch into views on the device, outside autocast."""
        if self.augment is not None and isinstance(batch, torch.Tensor):
            if batch.device.type == "cpu":
                # Many small element-wise ops: intra-op threads only fight each other (and the
                # other processes) here; measured 0.036 s vs 1.75 s per batch of 128 at 32 px
                # on a busy 2-core machine (benchmarks/train_throughput.py probe).
                with torch_threads(1):
                    batch = self.augment(batch)
            else:
                batch = self.augment(batch)
        if self.channels_last:
            batch = [v.contiguous(memory_format=torch.channels_last) for v in batch]
        return batch

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> Any:
        """One SSL step; a non-finite loss keeps its flag on the device (see the class doc)."""
        out = self.method.training_step_loss(
            batch, epoch=self.current_epoch, step=self.global_step, max_steps=self.max_steps
        )
        self.last_output = out
        self.finite = torch.isfinite(out.loss.detach())
        return out.loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero a non-finite step's gradients; schedule the weight decay; method hook.

        The method may edit gradients (DINO's frozen last layer); the trainer clips after this.
        """
        if self.finite is not None:
            bad = ~self.finite
            for p in self.method.parameters():
                if p.grad is not None:
                    p.grad.masked_fill_(bad, 0.0)
        if self.weight_decay_end is not None:  # group 0 is the decayed one (param_groups)
            optimizer.param_groups[0]["weight_decay"] = cosine_between(
                self.global_step, self.max_steps, self.method.weight_decay(), self.weight_decay_end
            )
        self.method.before_optimizer_step(epoch=self.current_epoch)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Momentum-encoder updates after the optimiser step."""
        self.method.after_optimizer_step(step=self.global_step, max_steps=self.max_steps)

    def on_train_epoch_start(self) -> None:
        """Per-epoch method state and augmentation draws (seeded by seed, epoch and rank)."""
        if self.augment is not None:
            self.augment.set_epoch(self.current_epoch, self.global_rank)
        self.method.on_epoch_start(self.current_epoch)

    def configure_optimizers(self) -> Any:
        """The method's optimizer with warm-up + cosine, stepped every batch."""
        opt = build_optimizer(self.method, self.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, self.warmup_steps, self.max_steps)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

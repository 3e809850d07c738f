"""DINO: self-distillation with no labels, multi-crop, centring and sharpening.

- [0]: DINO, 2021, https://arxiv.org/abs/2104.14294
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workbench.method_cards import CARDS
from workbench.methods.base import (
    Method,
    MethodConfig,
    StepOutput,
)
from workbench.nn.heads import DINOProjectionHead
from workbench.nn.losses import DINOLoss
from workbench.nn.utils import copy_frozen


@dataclass
class DINOConfig(MethodConfig):
    """DINO settings (paper values; head output reduced for small datasets)."""

    hidden_dim: int = 2048  # head MLP hidden width (paper: 2048)
    bottleneck_dim: int = 256  # L2-normalised bottleneck (paper: 256)
    output_dim: int = 2048  # prototypes (paper: 65536 for ImageNet)
    n_global: int = 2  # the first views are global crops, seen by the teacher (paper: 2)
    momentum: float = 0.996  # teacher EMA start, cosine to 1.0 (paper: 0.996)
    warmup_teacher_temp: float = 0.04  # teacher temperature at epoch 0 (paper: 0.04)
    teacher_temp: float = 0.04  # teacher temperature after warm-up (paper: 0.04-0.07)
    warmup_teacher_temp_epochs: int | None = None  # None: min(30, epochs // 2) (paper: 30)
    student_temp: float = 0.1  # student temperature (paper: 0.1)
    center_momentum: float = 0.9  # EMA of the teacher-output centre (paper: 0.9)
    freeze_last_layer: int = 1  # epochs with the last head layer frozen (paper: 1)
    norm_last_layer: bool = True  # weight-normalised prototypes (paper: True for stability)
    grad_clip_norm: float | None = 3.0  # global gradient-norm clipping (paper: 3.0)
    weight_decay_end: float | None = None  # cosine end of the weight decay; None: 10x the start
    # (paper: 0.04 -> 0.4)


class DINO(Method):
    """DINO [0] with multi-crop: globals through teacher and student, locals through the student."""

    name = "dino"
    Config = DINOConfig
    config: DINOConfig
    base_lr = {**Method.base_lr, "sgd": 0.06, "adamw": 5e-4}
    default_weight_decay = {**Method.default_weight_decay, "sgd": 5e-4, "adamw": 0.04}
    info = CARDS["dino"]

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: DINOConfig, **kw: Any
    ) -> None:
        super().__init__(backbone, feature_dim, config, **kw)
        self.projection_head = DINOProjectionHead(
            feature_dim,
            config.hidden_dim,
            config.bottleneck_dim,
            config.output_dim,
            freeze_last_layer=config.freeze_last_layer,
            norm_last_layer=config.norm_last_layer,
        )
        self.teacher_backbone = copy_frozen(self.backbone)
        self.teacher_head = copy_frozen(self.projection_head)
        warm = config.warmup_teacher_temp_epochs
        if warm is None:
            warm = min(30, self.max_epochs // 2)
        self.criterion = DINOLoss(
            output_dim=config.output_dim,
            warmup_teacher_temp=config.warmup_teacher_temp,
            teacher_temp=config.teacher_temp,
            warmup_teacher_temp_epochs=warm,
            student_temp=config.student_temp,
            center_momentum=config.center_momentum,
        )
        self._momentum = config.momentum

    @classmethod
    def weight_decay_end_for(cls, config: MethodConfig, optimizer: str) -> float | None:
        """The paper's cosine weight decay: from the start value to 10x it (0.04 -> 0.4)."""
        end = getattr(config, "weight_decay_end", None)
        return 10 * cls.weight_decay_for(config, optimizer) if end is None else float(end)

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """Cross-entropy between teacher (globals) and student (all views) outputs."""
        n_global = self.config.n_global
        globals_, locals_ = views[:n_global], views[n_global:]
        with torch.no_grad():
            t = self.teacher_head(self.teacher_backbone(torch.cat(globals_)).flatten(1))
        h_global = self.forward(torch.cat(globals_))
        student = [self.projection_head(h_global)]
        if locals_:  # local crops share a size: one batched pass
            student.append(self.projection_head(self.forward(torch.cat(locals_))))
        s = torch.cat(student)
        b = views[0].shape[0]
        loss = self.criterion(list(t.chunk(len(globals_))), list(s.chunk(len(views))), epoch=epoch)
        extras: dict[str, float | torch.Tensor] = {
            "momentum": self._momentum,
            "teacher_temp": float(self.criterion.teacher_temperature(epoch)),
            "teacher_entropy_max": math.log(self.config.output_dim),
            **self.criterion.last_signals,  # tensors: averaged per epoch by the monitor
        }
        return StepOutput(loss, h_global[:b].detach(), s[:b].detach(), extras)

    def before_optimizer_step(self, *, epoch: int) -> None:
        """Freeze the prototypes' gradients during the first epoch(s) (paper, for stability)."""
        self.projection_head.cancel_last_layer_gradients(epoch)

    def after_optimizer_step(self, *, step: int, max_steps: int) -> None:
        """EMA update of the teacher."""
        pairs = [(self.backbone, self.teacher_backbone), (self.projection_head, self.teacher_head)]
        self._momentum = self.ema_update(
            pairs, self.config.momentum, step=step, max_steps=max_steps
        )

"""BYOL: predict a momentum target network's projection of the other view; no negatives.

- [0]: BYOL, 2020, https://arxiv.org/abs/2006.07733
"""

from __future__ import annotations

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
from workbench.nn.heads import BYOLPredictionHead, BYOLProjectionHead
from workbench.nn.losses import negative_cosine_similarity
from workbench.nn.utils import copy_frozen


@dataclass
class BYOLConfig(MethodConfig):
    """BYOL settings."""

    hidden_dim: int = 1024  # projector/predictor hidden width (paper: 4096)
    output_dim: int = 256  # projection dimension (paper: 256)
    momentum: float = 0.99  # target EMA start, cosine to 1.0 (paper: 0.996)
    predictor: bool = True  # False removes the predictor: the run can collapse (paper, Table 5)


class BYOL(Method):
    """BYOL [0] with the symmetric loss."""

    name = "byol"
    Config = BYOLConfig
    config: BYOLConfig
    info = CARDS["byol"]

    # Half the shared SGD base rate: on digits (30 epochs, 3 seeds) kNN no longer peaks around
    # epoch 6 and declines (benchmarks/results/barlow_study.md, "BYOL's rate and crops").
    base_lr = {**Method.base_lr, "sgd": 0.06}

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: BYOLConfig, **kw: Any
    ) -> None:
        super().__init__(backbone, feature_dim, config, **kw)
        self.projection_head = BYOLProjectionHead(feature_dim, config.hidden_dim, config.output_dim)
        self.prediction_head: nn.Module = (
            BYOLPredictionHead(config.output_dim, config.hidden_dim, config.output_dim)
            if config.predictor
            else nn.Identity()
        )
        self.backbone_momentum = copy_frozen(self.backbone)
        self.projection_head_momentum = copy_frozen(self.projection_head)
        self._momentum = config.momentum

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.projection_head_momentum(self.backbone_momentum(x).flatten(1))

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """Symmetric BYOL loss on two views."""
        x0, x1 = views[:2]
        h = self.forward(torch.cat([x0, x1]))
        z = self.projection_head(h)
        # The predictor sees one view at a time, as SimSiam's (there it gained 3.8 kNN points).
        p0, p1 = (self.prediction_head(zi) for zi in z.chunk(2))
        t0, t1 = self._target(x0), self._target(x1)
        loss = 0.5 * (negative_cosine_similarity(p0, t1) + negative_cosine_similarity(p1, t0))
        b = x0.shape[0]
        return StepOutput(loss, h[:b].detach(), z[:b].detach(), {"momentum": self._momentum})

    def after_optimizer_step(self, *, step: int, max_steps: int) -> None:
        """EMA update of the target network."""
        pairs = [(self.backbone, self.backbone_momentum),
                 (self.projection_head, self.projection_head_momentum)]  # fmt: skip
        self._momentum = self.ema_update(
            pairs, self.config.momentum, step=step, max_steps=max_steps
        )

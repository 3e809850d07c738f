"""Barlow Twins: make the cross-correlation of two views' embeddings the identity.

- [0]: Barlow Twins, 2021, https://arxiv.org/abs/2103.03230
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workbench.method_cards import CARDS
from workbench.methods.base import Method, MethodConfig, StepOutput
from workbench.nn.heads import BarlowTwinsProjectionHead
from workbench.nn.losses import BarlowTwinsLoss


@dataclass
class BarlowTwinsConfig(MethodConfig):
    """Barlow Twins settings."""

    hidden_dim: int = 2048  # projector hidden width (paper: 8192)
    output_dim: int = 2048  # projector output (paper: 8192; larger is better)
    lambda_param: float = 5e-3  # weight of the off-diagonal (redundancy) term (paper: 5e-3)
    gather_distributed: bool = True  # cross-correlation over the global batch under DDP


class BarlowTwins(Method):
    """Barlow Twins [0]."""

    name = "barlowtwins"
    Config = BarlowTwinsConfig
    config: BarlowTwinsConfig
    conv_optimizer = "lars"  # as in the paper; plain SGD stalls on a loss summed over D dims
    info = CARDS["barlowtwins"]

    # A third of the shared LARS rate: with it (and the small-image crops of SMALL_IMAGE_CHANGES)
    # 30-epoch digits kNN climbs past random init instead of falling below it (barlow_study.md).
    base_lr = {**Method.base_lr, "lars": 0.1}

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: BarlowTwinsConfig, **kw: Any
    ) -> None:
        super().__init__(backbone, feature_dim, config, **kw)
        self.projection_head = BarlowTwinsProjectionHead(
            feature_dim, config.hidden_dim, config.output_dim
        )
        self.criterion = BarlowTwinsLoss(
            config.lambda_param, gather_distributed=config.gather_distributed
        )

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """Barlow Twins loss on two views."""
        x0, x1 = views[:2]
        h = self.forward(torch.cat([x0, x1]))
        z0, z1 = self.projection_head(h).chunk(2)
        loss = self.criterion(z0, z1)
        return StepOutput(loss, h[: x0.shape[0]].detach(), z0.detach())

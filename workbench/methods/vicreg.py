"""VICReg: variance, invariance and covariance terms keep embeddings informative.

- [0]: VICReg, 2022, https://arxiv.org/abs/2105.04906
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workbench.method_cards import CARDS
from workbench.methods.base import Method, MethodConfig, StepOutput
from workbench.nn.heads import VICRegProjectionHead
from workbench.nn.losses import VICRegLoss


@dataclass
class VICRegConfig(MethodConfig):
    """VICReg settings."""

    hidden_dim: int = 2048  # expander hidden width (paper: 8192)
    output_dim: int = 2048  # expander output (paper: 8192)
    lambda_param: float = 25.0  # invariance weight (paper: 25)
    mu_param: float = 25.0  # variance weight (paper: 25)
    nu_param: float = 1.0  # covariance weight (paper: 1)
    gather_distributed: bool = True  # variance/covariance over the global batch under DDP


class VICReg(Method):
    """VICReg [0]."""

    name = "vicreg"
    Config = VICRegConfig
    config: VICRegConfig
    conv_optimizer = "lars"  # as in the paper; plain SGD stalls on a loss summed over D dims
    info = CARDS["vicreg"]

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: VICRegConfig, **kw: Any
    ) -> None:
        super().__init__(backbone, feature_dim, config, **kw)
        self.projection_head = VICRegProjectionHead(
            feature_dim, config.hidden_dim, config.output_dim
        )
        self.criterion = VICRegLoss(
            config.lambda_param,
            config.mu_param,
            config.nu_param,
            gather_distributed=config.gather_distributed,
        )

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """VICReg loss on two views."""
        x0, x1 = views[:2]
        h = self.forward(torch.cat([x0, x1]))
        z0, z1 = self.projection_head(h).chunk(2)
        loss = self.criterion(z0, z1)
        return StepOutput(loss, h[: x0.shape[0]].detach(), z0.detach())

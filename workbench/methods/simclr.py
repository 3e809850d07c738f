"""SimCLR: contrast two views of each image against the rest of the batch.

- [0]: SimCLR, 2020, https://arxiv.org/abs/2002.05709
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workbench.method_cards import CARDS
from workbench.methods.base import Method, MethodConfig, StepOutput
from workbench.nn.heads import SimCLRProjectionHead
from workbench.nn.losses import NTXentLoss


@dataclass
class SimCLRConfig(MethodConfig):
    """SimCLR settings; head sizes follow Lightly's small-image benchmarks."""

    hidden_dim: int = 512  # projection MLP hidden width (paper: 2048 for ResNet-50)
    output_dim: int = 128  # projection output (paper: 128)
    # NT-Xent temperature. The paper's Table 5 finds 0.1 best at 100 epochs (0.5 only after long
    # training); short runs learn much faster with 0.1: digits, 30 epochs, kNN 0.92 vs 0.84 with
    # 0.5 (benchmarks/simclr_study.md).
    temperature: float = 0.1
    gather_distributed: bool = True  # negatives from every GPU under DDP


class SimCLR(Method):
    """SimCLR with an MLP projection head and the NT-Xent loss [0]."""

    name = "simclr"
    Config = SimCLRConfig
    config: SimCLRConfig
    info = CARDS["simclr"]

    # At temperature 0.1 the loss's gradients are 5x those at 0.5: half the shared SGD base rate
    # is steadier (digits, 30 epochs, 3 seeds: kNN 0.925 +- 0.014 vs 0.908 +- 0.013).
    base_lr = {**Method.base_lr, "sgd": 0.06, "adamw": 1e-3}

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: SimCLRConfig, **kw: Any
    ) -> None:
        super().__init__(backbone, feature_dim, config, **kw)
        self.projection_head = SimCLRProjectionHead(
            feature_dim, config.hidden_dim, config.output_dim
        )
        self.criterion = NTXentLoss(
            config.temperature, gather_distributed=config.gather_distributed
        )

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """Loss on two views."""
        x = torch.cat(views[:2])  # (2B, 3, H, W): one pass keeps BatchNorm statistics shared
        h = self.forward(x)
        z = self.projection_head(h)
        z0, z1 = z.chunk(2)
        loss = self.criterion(z0, z1)
        b = views[0].shape[0]
        return StepOutput(loss, h[:b].detach(), z0.detach())

"""SimSiam: BYOL without the momentum encoder; the predictor and stop-gradient prevent collapse.

- [0]: SimSiam, 2020, https://arxiv.org/abs/2011.10566
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.method_cards import CARDS
from workbench.methods.base import Method, MethodConfig, StepOutput
from workbench.nn.heads import SimSiamPredictionHead, SimSiamProjectionHead
from workbench.nn.losses import negative_cosine_similarity


@dataclass
class SimSiamConfig(MethodConfig):
    """SimSiam settings."""

    proj_hidden_dim: int = 512  # projector hidden width (paper: 2048)
    output_dim: int = 512  # projection dimension (paper: 2048)
    pred_hidden_dim: int = 128  # predictor bottleneck (paper: 512 = output_dim / 4)
    predictor: bool = True  # False removes the predictor: the run collapses (paper, Table 1)
    stop_gradient: bool = True  # False lets gradients reach the targets: collapse (Fig. 2)


class SimSiam(Method):
    """SimSiam [0]. ``predictor=False`` or ``stop_gradient=False`` make it collapse."""

    name = "simsiam"
    Config = SimSiamConfig
    config: SimSiamConfig
    base_lr = {**Method.base_lr, "sgd": 0.1, "adamw": 1e-3}
    default_weight_decay = {**Method.default_weight_decay, "sgd": 1e-4, "adamw": 0.05}
    info = CARDS["simsiam"]

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: SimSiamConfig, **kw: Any
    ) -> None:
        super().__init__(backbone, feature_dim, config, **kw)
        self.projection_head = SimSiamProjectionHead(
            feature_dim, config.proj_hidden_dim, config.output_dim
        )
        self.prediction_head: nn.Module = (
            SimSiamPredictionHead(config.output_dim, config.pred_hidden_dim, config.output_dim)
            if config.predictor
            else nn.Identity()
        )

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """Symmetric negative cosine similarity with stop-gradient on the targets."""
        x0, x1 = views[:2]
        h = self.forward(torch.cat([x0, x1]))
        z = self.projection_head(h)
        z0, z1 = z.chunk(2)
        # The predictor sees one view at a time (its BatchNorm normalises each view's batch on
        # its own), as in the paper's code and Lightly's examples.
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        if self.config.stop_gradient:
            loss = 0.5 * (negative_cosine_similarity(p0, z1) + negative_cosine_similarity(p1, z0))
        else:  # the paper's ablation: the trivial constant solution is then reachable
            loss = -0.5 * (F.cosine_similarity(p0, z1).mean() + F.cosine_similarity(p1, z0).mean())
        b = x0.shape[0]
        return StepOutput(loss, h[:b].detach(), z0.detach())

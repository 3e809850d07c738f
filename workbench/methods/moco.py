"""MoCo v2: contrast queries against a queue of keys from a momentum encoder.

- [0]: MoCo, 2019, https://arxiv.org/abs/1911.05722
- [1]: MoCo v2, 2020, https://arxiv.org/abs/2003.04297
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
from workbench.nn import distributed as wdist
from workbench.nn.heads import MoCoProjectionHead
from workbench.nn.losses import NTXentLoss
from workbench.nn.utils import copy_frozen

KEY_BN_SPLITS = 2  # one process: BatchNorm groups of the shuffled key batch (split BN)


@dataclass
class MoCoConfig(MethodConfig):
    """MoCo v2 settings."""

    hidden_dim: int = 512  # projection MLP hidden width (paper: 2048)
    output_dim: int = 128  # key/query dimension (paper: 128)
    temperature: float = 0.2  # InfoNCE temperature (MoCo v2: 0.2)
    queue_size: int | None = None  # None: min(65536, a quarter of the dataset), >= one batch
    momentum: float = 0.9  # EMA start, cosine to 1.0 (paper: 0.999 fixed; 0.99 lags on short runs)


class MoCo(Method):
    """MoCo v2 [1]: momentum key encoder, memory queue of keys, symmetric loss."""

    name = "moco"
    Config = MoCoConfig
    config: MoCoConfig
    info = CARDS["moco"]

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: MoCoConfig, **kw: Any
    ) -> None:
        super().__init__(backbone, feature_dim, config, **kw)
        self.projection_head = MoCoProjectionHead(feature_dim, config.hidden_dim, config.output_dim)
        self.backbone_momentum = copy_frozen(self.backbone)
        self.projection_head_momentum = copy_frozen(self.projection_head)
        queue = config.queue_size
        if queue is None:
            queue = min(65536, max(256, (self.dataset_size // 4) // 64 * 64))
        self.queue_size = int(queue)
        # gather_distributed: every process's keys enter the queue (not only the local ones).
        self.criterion = NTXentLoss(
            config.temperature, memory_bank_size=self.queue_size, gather_distributed=True
        )
        self._momentum = config.momentum

    @torch.no_grad()
    def _key(self, x: torch.Tensor) -> torch.Tensor:
        """Keys (B, D) of one view, with shuffled BatchNorm [0].

        BatchNorm statistics over the same samples as the queries let the model find its
        positive through them (the paper's information leak). Under DDP the global batch is
        shuffled across the processes (shuffle-BN); in one process the shuffled batch runs
        through the key encoder in ``KEY_BN_SPLITS`` groups (split BN), so a key's statistics
        come from a random subset. The keys come back in the original order.
        """
        n, w = x.shape[0], wdist.world_size()
        if w > 1:
            xs = wdist.gather(x)  # (W*B, 3, H, W)
            perm = wdist.broadcast_(torch.randperm(xs.shape[0], device=x.device))
            mine = perm.view(w, n)[wdist.rank()]
            k_all = wdist.gather(self._encode_key(xs[mine]))  # (W*B, D), in perm's order
            keys = torch.empty_like(k_all)
            keys[perm] = k_all
            return keys[wdist.rank() * n : (wdist.rank() + 1) * n]
        perm = torch.randperm(n, device=x.device)
        splits = KEY_BN_SPLITS if n >= 2 * KEY_BN_SPLITS else 1
        k = torch.cat([self._encode_key(c) for c in x[perm].chunk(splits)])
        keys = torch.empty_like(k)
        keys[perm] = k
        return keys

    def _encode_key(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head_momentum(self.backbone_momentum(x).flatten(1))

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """Loss on two views."""
        x0, x1 = views[:2]
        h = self.forward(torch.cat([x0, x1]))
        q0, q1 = self.projection_head(h).chunk(2)
        k0, k1 = self._key(x0), self._key(x1)
        # Symmetric loss in one call (negatives come from the queue only, so this equals the mean
        # of the two directions); both key batches then enter the queue.
        loss = self.criterion(torch.cat([q0, q1]), torch.cat([k1, k0]))
        b = x0.shape[0]
        return StepOutput(loss, h[:b].detach(), q0.detach(), {"momentum": self._momentum})

    def after_optimizer_step(self, *, step: int, max_steps: int) -> None:
        """EMA update of the key encoder."""
        pairs = [(self.backbone, self.backbone_momentum),
                 (self.projection_head, self.projection_head_momentum)]  # fmt: skip
        self._momentum = self.ema_update(
            pairs, self.config.momentum, step=step, max_steps=max_steps
        )

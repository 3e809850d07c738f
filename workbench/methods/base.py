"""What every SSL method shares: a config dataclass, guidance for users, one training step."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from workbench.method_cards import MethodInfo
from workbench.nn.utils import cosine_schedule, update_momentum


@dataclass
class StepOutput:
    """What a method's training step hands back to the trainer."""

    loss: torch.Tensor  # scalar, differentiable
    features: torch.Tensor  # (B, D) backbone features of the first view, detached
    projections: torch.Tensor  # (B, P) head output of the first view, detached
    # Logged with the step: floats (momentum, teacher_temp) as they are; 0-dim tensors (a
    # method's own collapse signals) stay on the device until the monitor reads them back, and
    # the epoch record holds their mean over the epoch.
    extras: dict[str, float | torch.Tensor] = field(default_factory=dict)


@dataclass
class MethodConfig:
    """Fields shared by every method's config."""

    optimizer: str = "auto"  # "sgd" | "lars" | "adamw" | "auto" (the method's choice)
    weight_decay: float | None = None  # None: the method's default
    warmup_epochs: float = 1.0  # linear learning-rate warm-up, then cosine decay to 0
    grad_clip_norm: float | None = None  # clip the global gradient norm (None: no clipping)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (modules become their class name)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = type(v).__name__ if isinstance(v, nn.Module) else v
        return out


class Method(nn.Module):
    """Base class: a backbone, its heads and a loss. Pure torch; Lightning only calls it.

    Subclasses set ``name``, ``Config``, ``info``, ``base_lr`` (for batch 256) and ``n_views``
    semantics, and implement :meth:`training_step_loss`.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    info: ClassVar[MethodInfo]
    base_lr: ClassVar[dict[str, float]] = {"sgd": 0.12, "lars": 0.3, "adamw": 1e-3}  # batch 256
    default_weight_decay: ClassVar[dict[str, float]] = {"sgd": 5e-4, "lars": 1e-4, "adamw": 0.05}
    conv_optimizer: ClassVar[str] = "sgd"  # what "auto" picks for conv nets (ViTs: adamw)

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        config: MethodConfig,
        *,
        dataset_size: int = 0,
        max_epochs: int = 1,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.config = config
        self.dataset_size = dataset_size
        self.max_epochs = max_epochs

    @classmethod
    def make_config(cls, **kwargs: Any) -> MethodConfig:
        """The method's config with overrides; unknown keys are a ValueError listing valid ones."""
        valid = {f.name for f in fields(cls.Config)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise ValueError(
                f"Unknown method_args {unknown} for method {cls.name!r}. Valid: {sorted(valid)}"
            )
        return cls.Config(**kwargs)

    @classmethod
    def optimizer_for(cls, config: MethodConfig, backbone: nn.Module) -> str:
        """The optimizer name: "adamw" for ViTs, else the method's ``conv_optimizer``."""
        opt = config.optimizer
        if opt == "auto":
            return "adamw" if "ViT" in type(backbone).__name__ else cls.conv_optimizer
        if opt not in cls.base_lr:
            raise ValueError(f"Unknown optimizer {opt!r}. Valid: {['auto', *sorted(cls.base_lr)]}")
        return opt

    @classmethod
    def lr_for(cls, optimizer: str, batch_size: int) -> float:
        """Linear scaling rule: base_lr * batch_size / 256 (``batch_size``: the global batch)."""
        return cls.base_lr[optimizer] * batch_size / 256

    @classmethod
    def weight_decay_for(cls, config: MethodConfig, optimizer: str) -> float:
        """The configured weight decay or the method's default for its optimizer."""
        wd = config.weight_decay
        return cls.default_weight_decay[optimizer] if wd is None else wd

    @classmethod
    def weight_decay_end_for(cls, config: MethodConfig, optimizer: str) -> float | None:
        """Weight decay at the last step of a cosine schedule; None keeps it constant."""
        return None

    def resolved_optimizer(self) -> str:
        """The optimizer name for this instance's backbone (see :meth:`optimizer_for`)."""
        return self.optimizer_for(self.config, self.backbone)

    def default_lr(self, batch_size: int) -> float:
        """Linear scaling rule: base_lr * batch_size / 256."""
        return self.lr_for(self.resolved_optimizer(), batch_size)

    def weight_decay(self) -> float:
        """The configured weight decay or the method's default for its optimizer."""
        return self.weight_decay_for(self.config, self.resolved_optimizer())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, D) of images (B, 3, H, W)."""
        return self.backbone(x).flatten(1)

    def project(self, features: torch.Tensor) -> torch.Tensor | None:
        """The projector's output for backbone features (the collapse monitor's second view).

        Returns:
            ``projection_head(features)`` flattened, or None for a method without one.
        """
        head = getattr(self, "projection_head", None)
        return None if head is None else head(features).flatten(1)

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """Loss on one batch of views (each (B, 3, H, W))."""
        raise NotImplementedError

    def after_optimizer_step(self, *, step: int, max_steps: int) -> None:
        """Hook for EMA updates of momentum encoders (default: nothing)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for per-epoch state (default: nothing)."""

    def before_optimizer_step(self, *, epoch: int) -> None:
        """Hook to edit gradients (e.g. DINO freezes its last layer in the first epoch)."""

    def ema_update(
        self, pairs: list[tuple[nn.Module, nn.Module]], start: float, *, step: int, max_steps: int
    ) -> float:
        """EMA of online -> momentum modules; momentum rises from ``start`` to 1 (cosine).

        Returns:
            The momentum used (logged as ``momentum``).
        """
        m = cosine_schedule(step, max_steps, start, 1.0)
        for online, target in pairs:
            update_momentum(online, target, m)
        return m

"""Knowledge distillation from a frozen teacher into a (smaller) student.

``distillation`` regresses the teacher's features (MSE), as LightlyTrain's default method does;
``distillationv1`` matches the teacher's similarity distribution over a queue of teacher
embeddings (KL divergence), the earlier variant.

- [0]: LightlyTrain distillation, https://docs.lightly.ai/train/stable/methods/distillation.html
- [1]: DINOv2, 2023, https://arxiv.org/abs/2304.07193 (the default teacher family)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.method_cards import CARDS
from workbench.methods.base import Method, MethodConfig, StepOutput
from workbench.nn.losses import queue_kl_loss
from workbench.nn.precision import full_precision


@dataclass
class DistillationConfig(MethodConfig):
    """Distillation settings. ``teacher`` is an nn.Module, or a spec for workbench.nn.teachers."""

    teacher: Any = None  # frozen nn.Module, or a spec ("run:<folder>", "dinov2/vitb14", ...)
    teacher_dim: int | None = None  # teacher feature size (measured when None)
    teacher_weights: str | None = None  # local weights file for a named teacher
    hidden_dim: int = 2048  # student head hidden width
    teacher_input_size: int | None = None  # None: the student's size, rounded to the patch size
    grad_clip_norm: float | None = 1.0  # global gradient-norm clipping (LightlyTrain: 1.0)


@dataclass
class DistillationV1Config(DistillationConfig):
    """Queue-based variant settings."""

    temperature: float = 0.07  # softmax temperature over queue similarities (LightlyTrain: 0.07)
    queue_size: int | None = None  # None: from the dataset size (small data, small queue)


class DistillationHead(nn.Sequential):
    """Student head: Linear -> BatchNorm -> GELU -> Linear to the teacher's feature size.

    It runs in float32 under autocast, as every head here: its output is compared with the
    teacher's float32 features (MSE) or divided by a 0.07 temperature (v1).
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__(
            nn.Linear(input_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, output_dim),
        )

    @full_precision
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, input_dim) student features -> (B, output_dim) predicted teacher features."""
        out: torch.Tensor = super().forward(x)
        return out


def _resolve_teacher(cfg: DistillationConfig, input_size: int) -> tuple[nn.Module, int]:
    teacher = cfg.teacher
    if teacher is None:
        raise ValueError(
            "Distillation needs a teacher: pass method_args={'teacher': ...} with a frozen "
            "nn.Module, 'run:<run folder>' (a backbone you pretrained here), or "
            "'dinov2/vitb14' (with teacher_weights=<file> when offline)."
        )
    from workbench.nn.teachers import load_teacher

    spec = teacher if isinstance(teacher, nn.Module) else str(teacher)
    return load_teacher(
        spec, weights=cfg.teacher_weights, feature_dim=cfg.teacher_dim, input_size=input_size
    )


class Distillation(Method):
    """Student features -> MLP head -> teacher features, MSE on the same augmented view [0]."""

    name = "distillation"
    Config = DistillationConfig
    config: DistillationConfig
    info = CARDS["distillation"]

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: DistillationConfig, **kw: Any
    ) -> None:
        input_size = int(kw.pop("input_size", 224))
        super().__init__(backbone, feature_dim, config, **kw)
        teacher, self.teacher_dim = _resolve_teacher(config, input_size)
        # Not registered as a submodule: no optimizer state, not in checkpoints, never trained.
        object.__setattr__(self, "teacher", teacher)
        self.projection_head = DistillationHead(feature_dim, config.hidden_dim, self.teacher_dim)
        patch = getattr(teacher, "patch_size", None)
        size = config.teacher_input_size or input_size
        if isinstance(patch, int) and patch > 1:
            if config.teacher_input_size is None and patch >= 14:
                size = max(size, 8 * patch)  # DINOv2 needs a token grid, not one 14 px patch
            size = max(patch, round(size / patch) * patch)
        self.teacher_input_size = int(size)

    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher features (B, Dt) of the student's view, resized to the teacher's input."""
        teacher: nn.Module = self.teacher  # type: ignore[assignment]
        if next(teacher.parameters(), torch.empty(0)).device != x.device:
            teacher.to(x.device)
        teacher.eval()
        if x.shape[-1] != self.teacher_input_size:
            size = (self.teacher_input_size, self.teacher_input_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        with torch.no_grad():
            return teacher(x).flatten(1).float()

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """MSE between the projected student features and the teacher's, on one view."""
        x = views[0]
        t = self.teacher_features(x)
        h = self.forward(x)
        z = self.projection_head(h)
        loss = F.mse_loss(z.float(), t)
        return StepOutput(loss, h.detach(), z.detach())


class DistillationV1(Distillation):
    """Queue-based distillation: KL between teacher and student similarities to a queue [0]."""

    name = "distillationv1"
    Config = DistillationV1Config
    config: DistillationV1Config
    queue: torch.Tensor
    queue_ptr: torch.Tensor
    info = CARDS["distillationv1"]

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: DistillationV1Config, **kw: Any
    ) -> None:
        super().__init__(backbone, feature_dim, config, **kw)
        q = config.queue_size
        if q is None:  # small datasets get small queues, so entries are not stale repeats
            q = int(min(8192, max(128, self.dataset_size // 2)))
        self.register_buffer("queue", F.normalize(torch.randn(q, self.teacher_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _enqueue(self, t: torch.Tensor) -> None:
        q = self.queue.shape[0]
        t = F.normalize(t, dim=1)[:q]
        ptr = int(self.queue_ptr)
        idx = (torch.arange(t.shape[0], device=t.device) + ptr) % q
        self.queue[idx] = t.to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + t.shape[0]) % q)

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """KL(teacher || student) over softmax similarities to the queue, then enqueue."""
        x = views[0]
        t = self.teacher_features(x)
        h = self.forward(x)
        z = self.projection_head(h)
        loss = queue_kl_loss(z.float(), t, self.queue.clone(), temperature=self.config.temperature)
        self._enqueue(t)
        return StepOutput(loss, h.detach(), z.detach())

"""Knowledge distillation from a frozen teacher into a (smaller) student, as LightlyTrain does.

``distillation`` regresses the teacher's *spatial* features (MSE at every location of the
teacher's token grid), LightlyTrain's distillationv2 [0]; ``distillationv1`` matches the
teacher's similarity distribution over a queue of teacher embeddings (KL divergence), its
distillation v1 [0]. Both feed one view, mixed with a shuffled copy of the batch, to teacher and
student alike, and clip the gradient norm at 1.0.

Read from lightly-ai/lightly-train (src/lightly_train/_methods/distillationv2/distillationv2.py
and distillation/distillation.py, commit 8f5a75c4); quoted where followed.

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
from workbench.nn.backbones import feature_map
from workbench.nn.losses import queue_kl_loss
from workbench.nn.precision import full_precision
from workbench.nn.utils import module_device


@dataclass
class TeacherConfig(MethodConfig):
    """Settings both distillation methods share. ``teacher``: an nn.Module, or a spec."""

    teacher: Any = None  # frozen nn.Module, or a spec ("run:<folder>", "dinov2/vitb14", ...)
    teacher_dim: int | None = None  # teacher's pooled feature size (measured when None)
    teacher_weights: str | None = None  # local weights file for a named teacher
    teacher_input_size: int | None = None  # None: the student's size, rounded to the patch size
    projection_layers: int = 1  # student head: 1 Linear (LightlyTrain); more: MLP w/ LayerNorm
    hidden_dim: int = 2048  # hidden width of a head with projection_layers > 1
    grad_clip_norm: float | None = 1.0  # global gradient-norm clipping (LightlyTrain: 1.0)


@dataclass
class DistillationConfig(TeacherConfig):
    """Spatial (v2) distillation settings."""

    spatial: bool = True  # MSE at every location of the feature maps; False: on pooled features
    teacher_blocks: int = 2  # ViT teachers: patch tokens of the last n blocks, concatenated


@dataclass
class DistillationV1Config(TeacherConfig):
    """Queue-based variant settings."""

    temperature: float = 0.07  # softmax temperature, teacher and student (LightlyTrain: 0.07)
    queue_size: int | None = None  # None: LightlyTrain's bucket for the dataset size


# LightlyTrain's "auto" queue size: (datasets below this many images, queue size), about 25-50 %
# of the bucket's sizes, so a small dataset's queue does not hold stale repeats.
QUEUE_BUCKETS = (
    (50, 16), (100, 32), (250, 64), (500, 128), (1_000, 256), (2_000, 512), (4_000, 1024),
    (10_000, 2048), (20_000, 4096),
)  # fmt: skip


def auto_queue_size(dataset_size: int) -> int:
    """LightlyTrain's queue size for a dataset of ``dataset_size`` images (8192 from 20,000)."""
    return next((q for limit, q in QUEUE_BUCKETS if dataset_size < limit), 8192)


class DistillationHead(nn.Module):
    """LightlyTrain's ``DistillationV2Head``: a Linear (or an MLP with LayerNorm), last dim.

    It acts on the last dimension, so the same head maps pooled features (B, C) and every
    location of a channels-last feature map (B, h, w, C) (a 1x1 convolution). Weights are
    trunc-normal (std 0.02), biases zero, as there. It runs in float32 under autocast: its
    output is compared with the teacher's float32 features (MSE) or divided by 0.07 (v1).
    """

    def __init__(self, input_dim: int, output_dim: int, layers: int = 1, hidden: int = 2048):
        super().__init__()
        if layers <= 1:
            self.mlp: nn.Module = nn.Linear(input_dim, output_dim)
        else:
            dims = [input_dim] + [hidden] * (layers - 1)
            blocks: list[nn.Module] = []
            for a, b in zip(dims[:-1], dims[1:]):
                blocks += [nn.Linear(a, b), nn.LayerNorm(b), nn.GELU()]
            self.mlp = nn.Sequential(*blocks, nn.Linear(hidden, output_dim))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @full_precision
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., input_dim) student features -> (..., output_dim) predicted teacher features."""
        out: torch.Tensor = self.mlp(x)
        return out


def batch_mixup(x: torch.Tensor) -> torch.Tensor:
    """Mix each image with another of the batch: ``lam * x + (1 - lam) * x[perm]``.

    LightlyTrain's ``_mixup_data``: "Sample lambda from a uniform distribution U(0, 1)", one
    lambda per batch, and "a random permutation of the image indices". The result goes to
    teacher and student alike. Lambda is drawn on the CPU, so no device sync.
    """
    lam = float(torch.rand(()))
    perm = torch.randperm(x.shape[0], device=x.device)
    return lam * x + (1.0 - lam) * x[perm]


def _resolve_teacher(cfg: TeacherConfig, input_size: int) -> tuple[nn.Module, int]:
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


class TeacherStudent(Method):
    """What both methods share: the frozen teacher, its input, the student head.

    Keyword arguments beyond the base ones: ``input_size`` (the student's image side) and
    ``input_mean``/``input_std`` (the normalisation of the student's views; default ImageNet's,
    the recipes' default).
    """

    config: TeacherConfig
    teacher_scale: torch.Tensor
    teacher_shift: torch.Tensor
    # LightlyTrain trains both methods with LARS. Measured here (SimCLR ResNet-18 teacher at
    # 0.869, mobilenet_v3_small student, digits at 32 px, 20 epochs, seed 0): distillation
    # reached 0.802 with SGD and 0.861 with LARS; distillationv1 0.925 and 0.905
    # (benchmarks/results/distillation_optimizer.md).
    conv_optimizer = "lars"

    def __init__(self, backbone: nn.Module, feature_dim: int, config: TeacherConfig, **kw: Any):
        from workbench.augment.recipes import IMAGENET_MEAN, IMAGENET_STD
        from workbench.nn.teachers import teacher_normalization

        input_size = int(kw.pop("input_size", 224))
        mean = kw.pop("input_mean", None) or IMAGENET_MEAN
        std = kw.pop("input_std", None) or IMAGENET_STD
        super().__init__(backbone, feature_dim, config, **kw)
        self.spatial = bool(getattr(config, "spatial", False))  # v1 has no spatial variant
        teacher, self.teacher_dim = _resolve_teacher(config, input_size)
        # Not registered as a submodule: no optimizer state, not in checkpoints, never trained.
        object.__setattr__(self, "teacher", teacher)
        patch = getattr(teacher, "patch_size", None)
        size = config.teacher_input_size or input_size
        if isinstance(patch, int) and patch > 1:
            if config.teacher_input_size is None and patch >= 14:
                size = max(size, 8 * patch)  # DINOv2 needs a token grid, not one 14 px patch
            size = max(patch, round(size / patch) * patch)
        self.teacher_input_size = int(size)
        # The teacher sees images normalised as it was trained: undo the student's
        # normalisation, apply the teacher's: x_t = x * (s_std / t_std) + (s_mean - t_mean) / t_std.
        norm = teacher_normalization(config.teacher)
        t_mean, t_std = norm if norm is not None else (mean, std)
        s_mean, s_std, t_mean_, t_std_ = (
            torch.tensor([float(v) for v in a]).view(1, -1, 1, 1)
            for a in (mean, std, t_mean, t_std)
        )
        self.register_buffer("teacher_scale", s_std / t_std_, persistent=False)
        self.register_buffer("teacher_shift", (s_mean - t_mean_) / t_std_, persistent=False)
        if self.spatial:  # the map's channels: n_blocks * D for ViTs
            side = self.teacher_input_size
            probe = torch.zeros(1, 3, side, side, device=module_device(teacher))
            with torch.no_grad():
                self.teacher_dim = int(self._teacher_out(probe).shape[1])
        self.projection_head = DistillationHead(
            feature_dim, self.teacher_dim, config.projection_layers, config.hidden_dim
        )

    def _teacher_out(self, x: torch.Tensor) -> torch.Tensor:
        teacher: nn.Module = self.teacher  # type: ignore[assignment]
        if self.spatial:
            return feature_map(teacher, x, getattr(self.config, "teacher_blocks", 1))[1]
        return teacher(x).flatten(1)

    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher features of the student's view: (B, Dt), or maps (B, Dt, H, W) if spatial.

        The view is re-normalised for the teacher and resized to its input size first.
        """
        teacher: nn.Module = self.teacher  # type: ignore[assignment]
        if next(teacher.parameters(), torch.empty(0)).device != x.device:
            teacher.to(x.device)
        teacher.eval()
        with torch.no_grad():
            x = x * self.teacher_scale + self.teacher_shift  # (B, 3, H, W)
            if x.shape[-1] != self.teacher_input_size:
                size = (self.teacher_input_size, self.teacher_input_size)
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            return self._teacher_out(x).float()


class Distillation(TeacherStudent):
    """Student feature map -> per-location Linear -> teacher's grid, MSE (LightlyTrain v2) [0]."""

    name = "distillation"
    Config = DistillationConfig
    config: DistillationConfig
    info = CARDS["distillation"]

    @full_precision
    def student_on_grid(self, fmap: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Student map (B, C, h, w) -> head at each location -> (B, Dt, *grid), bilinear.

        LightlyTrain's ``_forward_student``: "Resize the student spatial features to have the
        same resolution as the teacher spatial features." Antialiased: where the student's
        grid is the finer one (a 4x4 mobilenet map against a ResNet-18's 1x1 at 32 px), plain
        bilinear would sample the central 2x2 only and leave the other locations untrained;
        antialiasing weights them all in. Upsampling (LightlyTrain's usual case) is unchanged.
        """
        z = self.projection_head(fmap.permute(0, 2, 3, 1))  # (B, h, w, Dt)
        z = z.permute(0, 3, 1, 2)  # (B, Dt, h, w)
        return F.interpolate(z, size=grid, mode="bilinear", align_corners=False, antialias=True)

    def training_step_loss(
        self, views: list[torch.Tensor], *, epoch: int, step: int, max_steps: int
    ) -> StepOutput:
        """MSE between the student's and the teacher's features on one mixed-up view."""
        x = batch_mixup(views[0])
        t = self.teacher_features(x)
        if self.spatial:
            h, fmap = feature_map(self.backbone, x)
            z = self.student_on_grid(fmap, (t.shape[-2], t.shape[-1]))  # (B, Dt, H, W)
            loss = F.mse_loss(z, t)
            return StepOutput(loss, h.detach(), z.detach().mean(dim=(2, 3)))
        h = self.forward(x)
        z = self.projection_head(h)
        return StepOutput(F.mse_loss(z, t), h.detach(), z.detach())


class DistillationV1(TeacherStudent):
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
        if q is None:
            q = auto_queue_size(self.dataset_size)
        # LightlyTrain starts the queue at torch.zeros: empty slots have similarity 0 to all.
        self.register_buffer("queue", torch.zeros(q, self.teacher_dim))
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
        """Enqueue the teacher batch, then KL(teacher || student) over queue similarities.

        LightlyTrain updates the queue before the loss ("Update the queue", then "Compute the
        loss"), so each image's own teacher embedding is among the pseudo-classes.
        """
        x = batch_mixup(views[0])
        t = self.teacher_features(x)
        h = self.forward(x)
        z = self.projection_head(h)
        self._enqueue(t)
        # queue_kl_loss L2-normalises student, teacher and queue; one temperature for both.
        loss = queue_kl_loss(z, t, self.queue, temperature=self.config.temperature)
        return StepOutput(loss, h.detach(), z.detach())

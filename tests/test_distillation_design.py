"""LightlyTrain's distillation design, point by point (issue #18, item 3), on tiny inputs.

Teacher and student are tiny CNNs (and a tiny ViT) built here; images are 16 px, batch 4.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.augment.recipes import IMAGENET_MEAN, IMAGENET_STD
from workbench.methods import distillation as dist
from workbench.methods.distillation import Distillation, DistillationV1
from workbench.nn.backbones import ViTBackbone, feature_map
from workbench.nn.losses import queue_kl_loss
from workbench.nn.teachers import teacher_normalization

B, SIZE = 4, 16


def _cnn(channels: int, stride: int, seed: int) -> nn.Sequential:
    """(B, 3, 16, 16) -> map (B, channels, 16/stride, 16/stride) -> global pool -> (B, channels)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, stride=stride, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def _teacher() -> nn.Sequential:
    return _cnn(12, 4, seed=1)  # 4x4 grid, 12 channels


def _student() -> nn.Sequential:
    return _cnn(6, 8, seed=2)  # 2x2 map, 6 channels: coarser than the teacher's grid


def _vit(seed: int = 0) -> ViTBackbone:
    torch.manual_seed(seed)
    return ViTBackbone(SIZE, 4, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32)


def _images(seed: int = 0) -> torch.Tensor:
    return torch.rand(B, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _no_mixup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "batch_mixup", lambda x: x)


def _record_inputs(module: nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    module.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach().clone()))
    return seen


# --- distillation (v2): spatial features ------------------------------------------------------


def test_a_cnn_feature_map_is_the_input_of_its_global_pool() -> None:
    net, x = _teacher(), _images()
    pooled, fmap = feature_map(net, x)
    assert fmap.shape == (B, 12, 4, 4)
    assert torch.allclose(pooled, net(x)) and torch.allclose(pooled, fmap.mean(dim=(2, 3)))


def test_student_map_goes_through_a_per_location_head_to_the_teacher_grid(monkeypatch) -> None:
    _no_mixup(monkeypatch)
    student, teacher = _student(), _teacher()
    m = Distillation(student, 6, Distillation.make_config(teacher=teacher), input_size=SIZE)
    assert m.config.spatial and m.teacher_dim == 12
    x = _images()
    t = m.teacher_features(x)
    assert t.shape == (B, 12, 4, 4)  # the teacher's final map
    _, fmap = feature_map(student, x)
    assert fmap.shape == (B, 6, 2, 2)
    # The head runs at each location (a 1x1 conv): same grid, one Linear per location vector.
    same = m.student_on_grid(fmap, (2, 2))
    assert same.shape == (B, 12, 2, 2)
    for i in range(2):
        for j in range(2):
            assert torch.allclose(same[:, :, i, j], m.projection_head(fmap[:, :, i, j]), atol=1e-6)
    # ...then is interpolated to the teacher's 4x4 grid, and the loss is MSE there.
    z = m.student_on_grid(fmap, (4, 4))
    ref = F.interpolate(same, size=(4, 4), mode="bilinear", align_corners=False)
    assert z.shape == t.shape and torch.allclose(z, ref, atol=1e-6)
    out = m.training_step_loss([x], epoch=0, step=0, max_steps=1)
    assert out.loss.item() == pytest.approx(F.mse_loss(z, t).item(), rel=1e-5)
    assert out.features.shape == (B, 6) and out.projections.shape == (B, 12)


def test_a_finer_student_map_is_averaged_onto_a_coarser_teacher_grid() -> None:
    # A mobilenet student keeps a 4x4 map at 32 px, a ResNet-18 teacher a 1x1: every student
    # location must reach the loss (plain bilinear would read the central 2x2 only).
    m = Distillation(_student(), 6, Distillation.make_config(teacher=_teacher()), input_size=SIZE)
    fmap = torch.randn(B, 6, 4, 4, requires_grad=True)
    m.student_on_grid(fmap, (1, 1)).sum().backward()
    assert fmap.grad is not None and (fmap.grad.abs().sum(dim=(0, 1)) > 0).all()
    # The contrast: without antialiasing the border of the 4x4 map gets no gradient.
    fmap.grad = None
    z = m.projection_head(fmap.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    F.interpolate(z, size=(1, 1), mode="bilinear", align_corners=False).sum().backward()
    assert (fmap.grad.abs().sum(dim=(0, 1)) == 0).sum() == 12


def test_a_vit_teacher_gives_its_last_two_blocks_patch_tokens_concatenated() -> None:
    vit, x = _vit(), _images()
    with torch.no_grad():
        blocks = vit.get_intermediate_layers(x, n=2, reshape=True)
        pooled, fmap = feature_map(vit, x, n_blocks=2)
        assert len(blocks) == 2 and blocks[0].shape == (B, 16, 4, 4)
        assert fmap.shape == (B, 32, 4, 4)
        assert torch.equal(fmap, torch.cat(blocks, dim=1))
        assert not torch.allclose(blocks[0], blocks[1])  # two different blocks
        assert torch.allclose(pooled, vit(x), atol=1e-6)  # the class token, as forward gives
    m = Distillation(_student(), 6, Distillation.make_config(teacher=vit), input_size=SIZE)
    assert m.teacher_dim == 32 and m.projection_head(torch.zeros(1, 6)).shape == (1, 32)
    assert m.teacher_features(x).shape == (B, 32, 4, 4)
    cfg = Distillation.make_config(teacher=_vit(), teacher_blocks=1)
    assert Distillation(_student(), 6, cfg, input_size=SIZE).teacher_dim == 16


def test_the_global_variant_regresses_pooled_features(monkeypatch) -> None:
    _no_mixup(monkeypatch)
    cfg = Distillation.make_config(teacher=_teacher(), spatial=False)
    m = Distillation(_student(), 6, cfg, input_size=SIZE)
    x = _images()
    t = m.teacher_features(x)
    assert t.shape == (B, 12)
    out = m.training_step_loss([x], epoch=0, step=0, max_steps=1)
    ref = F.mse_loss(m.projection_head(m.forward(x)), t)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_a_teacher_without_a_feature_map_is_told_to_use_pooled_features() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 8))
    with pytest.raises(ValueError, match=r"'spatial': False"):
        Distillation(_student(), 6, Distillation.make_config(teacher=flat), input_size=SIZE)


def test_the_spatial_head_runs_in_float32_under_autocast() -> None:
    m = Distillation(_student(), 6, Distillation.make_config(teacher=_teacher()), input_size=SIZE)
    fmap = torch.randn(B, 6, 2, 2, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m.student_on_grid(fmap, (4, 4)).dtype == torch.float32


# --- distillationv1: the queue ------------------------------------------------------------------


def test_v1_queue_starts_at_zeros_and_holds_the_batch_when_the_loss_runs(monkeypatch) -> None:
    _no_mixup(monkeypatch)
    cfg = DistillationV1.make_config(teacher=_teacher(), queue_size=16)
    m = DistillationV1(_student(), 6, cfg, input_size=SIZE)
    assert cfg.temperature == 0.07
    assert m.queue.shape == (16, 12) and torch.count_nonzero(m.queue) == 0
    seen: dict[str, Any] = {}

    def spy(s: torch.Tensor, t: torch.Tensor, queue: torch.Tensor, temperature: float) -> Any:
        seen.update(t=t.detach().clone(), queue=queue.clone(), temperature=temperature)
        return queue_kl_loss(s, t, queue, temperature)

    monkeypatch.setattr(dist, "queue_kl_loss", spy)
    x = _images()
    m.training_step_loss([x], epoch=0, step=0, max_steps=1)
    t = F.normalize(m.teacher_features(x), dim=1)
    assert torch.allclose(seen["queue"][:B], t, atol=1e-6)  # the batch, L2-normalised
    assert torch.count_nonzero(seen["queue"][B:]) == 0  # the rest still zeros
    assert seen["temperature"] == 0.07
    # The next batch goes in after it; each loss sees its own batch.
    m.training_step_loss([_images(1)], epoch=0, step=1, max_steps=2)
    t1 = F.normalize(m.teacher_features(_images(1)), dim=1)
    assert torch.allclose(seen["queue"][:B], t, atol=1e-6)
    assert torch.allclose(seen["queue"][B : 2 * B], t1, atol=1e-6)


def test_v1_normalises_student_and_teacher() -> None:
    s, t, q = torch.randn(B, 5), torch.randn(B, 5), torch.randn(7, 5)
    loss = queue_kl_loss(s, t, q)
    scaled = queue_kl_loss(3 * s, 0.5 * t, 2 * q)
    assert loss.item() == pytest.approx(scaled.item(), rel=1e-5)


# --- both methods: mixup, clipping, normalisation, cards -------------------------------------


def test_batch_mixup_mixes_pairs_with_one_lambda_in_0_1() -> None:
    # Image i is 1 at pixel i and 0 elsewhere, so a mixed image shows its two weights.
    x = torch.zeros(B, 1, 1, B)
    for i in range(B):
        x[i, 0, 0, i] = 1.0
    lambdas = set()
    torch.manual_seed(0)
    for _ in range(20):
        mixed = dist.batch_mixup(x)
        assert mixed.shape == x.shape
        w = mixed[:, 0, 0, :]  # (B, B): row j = weights of the images mixed into j
        assert torch.all(w >= 0) and torch.allclose(w.sum(1), torch.ones(B))
        assert all(int((row > 1e-7).sum()) <= 2 for row in w)  # itself and one other
        own = w.diagonal()  # lam, or 1 for an image paired with itself
        paired = own < 1 - 1e-6
        if paired.any():
            lam = float(own[paired][0])
            assert 0.0 <= lam <= 1.0
            assert torch.allclose(own[paired], torch.full_like(own[paired], lam))  # one lambda
            lambdas.add(round(lam, 4))
    assert len(lambdas) > 10  # a new lambda every batch


@pytest.mark.parametrize("cls", [Distillation, DistillationV1])
def test_teacher_and_student_see_the_same_mixed_batch(cls: Any) -> None:
    teacher, student = _teacher(), _student()
    seen_t, seen_s = _record_inputs(teacher), _record_inputs(student)
    m = cls(student, 6, cls.make_config(teacher=teacher), input_size=SIZE, dataset_size=64)
    seen_t.clear()  # the spatial probe at construction
    x = _images()
    torch.manual_seed(3)
    m.training_step_loss([x], epoch=0, step=0, max_steps=1)
    # A module teacher gets the student's normalisation: no change, so inputs compare directly.
    assert torch.allclose(seen_t[-1], seen_s[-1], atol=1e-6)
    assert not torch.allclose(seen_s[-1], x)  # mixed, not the raw view
    assert seen_s[-1].shape == x.shape


@pytest.mark.parametrize("method", ["distillation", "distillationv1"])
def test_the_trainer_clips_at_one_once(method: str, tmp_path: Path) -> None:
    """The method default reaches the Trainer (test_engine runs the whole resolve path)."""
    import lightning as L

    from workbench.methods import get_method
    from workbench.training.api import build_trainer
    from workbench.training.module import SSLModule

    clip = get_method(method).make_config().grad_clip_norm
    assert clip == 1.0 == wb.describe_method(method)["defaults"]["grad_clip_norm"]
    config = dict(
        grad_clip_norm=clip, epochs=1, max_steps=1, steps_per_epoch=1, accelerator="cpu",
        devices=1, precision="32-true", strategy="auto", num_nodes=1, sync_batchnorm=False,
    )  # fmt: skip
    trainer = build_trainer(SimpleNamespace(config=config), [], tmp_path)  # type: ignore[arg-type]
    assert trainer.gradient_clip_val == 1.0 and trainer.gradient_clip_algorithm == "norm"
    # The trainer is the one place: neither the module nor the method clips again.
    assert SSLModule.configure_gradient_clipping is L.LightningModule.configure_gradient_clipping


@pytest.mark.parametrize("cls", [Distillation, DistillationV1])
def test_conv_students_train_with_lars_and_vits_with_adamw(cls: Any) -> None:
    # LightlyTrain's optimizer for both; SGD left a mobilenet student 6.7 kNN points below its
    # teacher (benchmarks/results/distillation_optimizer.md).
    conv = cls(_student(), 6, cls.make_config(teacher=_teacher()), input_size=SIZE)
    assert conv.resolved_optimizer() == "lars"
    vit = cls(_vit(), 16, cls.make_config(teacher=_teacher()), input_size=SIZE)
    assert vit.resolved_optimizer() == "adamw"


def test_named_teachers_expect_imagenet_statistics() -> None:
    imagenet = (list(IMAGENET_MEAN), list(IMAGENET_STD))
    assert teacher_normalization("dinov2/vitb14") == imagenet
    assert teacher_normalization("torchvision:resnet18") == imagenet
    assert teacher_normalization(_teacher()) is None  # a module: the student's own


def _teacher_input(spec: Any, mean: list[float], std: list[float], x: torch.Tensor) -> Any:
    """What the teacher receives for the student's view ``x`` normalised with (mean, std)."""
    m = Distillation(
        _student(), 6, Distillation.make_config(teacher=spec, spatial=False),
        input_size=SIZE, input_mean=mean, input_std=std,
    )  # fmt: skip
    seen = _record_inputs(m.teacher)  # type: ignore[arg-type]
    m.teacher_features(x)
    return seen[-1]


def _normalize(img: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    return (img - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_a_run_teacher_gets_its_own_normalisation(digits_small: Any, tmp_path: Path) -> None:
    mean, std = [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]
    run = wb.train(
        digits_small, method="simclr", model="resnet18", out=tmp_path / "t", epochs=1,
        max_steps=1, batch_size=16, input_size=SIZE, val_fraction=0,
        transform_args={"mean": mean, "std": std},
    )  # fmt: skip
    assert run.config["mean"] == pytest.approx(mean) and run.config["std"] == pytest.approx(std)
    assert teacher_normalization(f"run:{run.out}") == (run.config["mean"], run.config["std"])
    img = _images()  # in [0, 1]
    student_view = _normalize(img, IMAGENET_MEAN, IMAGENET_STD)
    got = _teacher_input(f"run:{run.out}", list(IMAGENET_MEAN), list(IMAGENET_STD), student_view)
    assert torch.allclose(got, _normalize(img, mean, std), atol=1e-5)


def test_a_torchvision_teacher_gets_imagenet_normalisation(tmp_path: Path) -> None:
    import torchvision

    weights = tmp_path / "mnv3.pt"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), weights)
    img = _images()
    half = [0.5, 0.5, 0.5]
    spec = "torchvision:mobilenet_v3_small"
    m = Distillation(
        _student(), 6, Distillation.make_config(teacher=spec, teacher_weights=str(weights)),
        input_size=SIZE, input_mean=half, input_std=half,
    )  # fmt: skip
    seen = _record_inputs(m.teacher)  # type: ignore[arg-type]
    assert m.teacher_features(_normalize(img, half, half)).shape[:2] == (B, 576)  # spatial map
    assert torch.allclose(seen[-1], _normalize(img, IMAGENET_MEAN, IMAGENET_STD), atol=1e-5)


@pytest.mark.parametrize("method", ["distillation", "distillationv1"])
def test_cards_state_defaults_recommendations_and_the_flat_loss(method: str) -> None:
    d = wb.describe_method(method)
    assert d["batch_size"] == 128 and d["epochs"] == 100  # LightlyTrain's low ends
    assert "128-2048" in d["note"] and "100-3000" in d["note"]
    assert "barely move" in d["note"] and "normal" in d["note"]
    assert "clipping at norm 1.0" in d["note"] and "mixup" in d["note"]
    if method == "distillation":
        assert d["defaults"]["spatial"] is True and d["defaults"]["teacher_blocks"] == 2
    else:
        assert d["defaults"]["temperature"] == 0.07 and "zeros" in d["note"]


def test_v1_auto_queue_size_is_lightlytrains_bucket() -> None:
    # LightlyTrain's buckets: about 25-50 % of the dataset, 8192 from 20,000 images on.
    sizes = {0: 16, 49: 16, 50: 32, 249: 64, 1_437: 512, 1_999: 512, 2_000: 1024}
    assert {n: dist.auto_queue_size(n) for n in sizes} == sizes
    assert dist.auto_queue_size(20_000) == dist.auto_queue_size(10**7) == 8192
    cfg = DistillationV1.make_config(teacher=_teacher())
    m = DistillationV1(_student(), 6, cfg, input_size=SIZE, dataset_size=1_437)
    assert m.queue.shape == (512, 12)

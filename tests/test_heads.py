"""Heads: shapes, layer structure of each paper, paper defaults, DINO's weight-normalised layer."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from torch import nn

from workbench.nn.heads import (
    BarlowTwinsProjectionHead,
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    MoCoProjectionHead,
    ProjectionHead,
    SimCLRProjectionHead,
    SimSiamPredictionHead,
    SimSiamProjectionHead,
    VICRegProjectionHead,
)
from workbench.nn.utils import copy_frozen, update_momentum


def _structure(head: nn.Module) -> list[str]:
    """Layer types in order, Linear with its dims and a '+b' when it has a bias."""
    out = []
    for m in head.modules():
        if isinstance(m, nn.Linear):
            out.append(f"L{m.in_features}-{m.out_features}{'+b' if m.bias is not None else ''}")
        elif isinstance(m, nn.BatchNorm1d):
            out.append("BN" if m.affine else "BN0")
        elif isinstance(m, (nn.ReLU, nn.GELU)):
            out.append(type(m).__name__)
    return out


@pytest.mark.parametrize(
    "head,expected",
    [
        (SimCLRProjectionHead(6, 5, 3), ["L6-5", "BN", "ReLU", "L5-3", "BN"]),
        (SimCLRProjectionHead(6, 5, 3, num_layers=3, batch_norm=False),
         ["L6-5+b", "ReLU", "L5-5+b", "ReLU", "L5-3+b"]),
        (SimCLRProjectionHead(6, 5, 3, num_layers=1), ["L6-3", "BN"]),
        (MoCoProjectionHead(6, 5, 3), ["L6-5+b", "ReLU", "L5-3+b"]),
        (MoCoProjectionHead(6, 5, 3, num_layers=3, batch_norm=True),
         ["L6-5", "BN", "ReLU", "L5-5", "BN", "ReLU", "L5-3", "BN"]),
        (BYOLProjectionHead(6, 5, 3), ["L6-5", "BN", "ReLU", "L5-3+b"]),
        (BYOLPredictionHead(3, 5, 3), ["L3-5", "BN", "ReLU", "L5-3+b"]),
        (SimSiamProjectionHead(6, 5, 3),
         ["L6-5", "BN", "ReLU", "L5-5", "BN", "ReLU", "L5-3", "BN0"]),
        (SimSiamPredictionHead(3, 2, 3), ["L3-2", "BN", "ReLU", "L2-3+b"]),
        (BarlowTwinsProjectionHead(6, 5, 3),
         ["L6-5", "BN", "ReLU", "L5-5", "BN", "ReLU", "L5-3+b"]),
        (VICRegProjectionHead(6, 5, 3), ["L6-5", "BN", "ReLU", "L5-5", "BN", "ReLU", "L5-3+b"]),
        (VICRegProjectionHead(6, 5, 3, num_layers=2), ["L6-5", "BN", "ReLU", "L5-3+b"]),
        (DINOProjectionHead(6, 5, 4, 7), ["L6-5+b", "GELU", "L5-5+b", "GELU", "L5-4+b", "L4-7"]),
        (DINOProjectionHead(6, 5, 4, 7, batch_norm=True),
         ["L6-5", "BN", "GELU", "L5-5", "BN", "GELU", "L5-4+b", "L4-7"]),
    ],
)  # fmt: skip
def test_head_structure_shape_and_gradient(head: ProjectionHead, expected: list[str]) -> None:
    assert _structure(head) == expected
    x = torch.randn(4, head.input_dim, requires_grad=True)
    y = head(x)
    assert y.shape == (4, head.output_dim)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "cls,defaults",
    [
        (SimCLRProjectionHead, dict(input_dim=2048, hidden_dim=2048, output_dim=128,
                                    num_layers=2, batch_norm=True)),
        (MoCoProjectionHead, dict(input_dim=2048, hidden_dim=2048, output_dim=128,
                                  num_layers=2, batch_norm=False)),
        (BYOLProjectionHead, dict(input_dim=2048, hidden_dim=4096, output_dim=256)),
        (BYOLPredictionHead, dict(input_dim=256, hidden_dim=4096, output_dim=256)),
        (SimSiamProjectionHead, dict(input_dim=2048, hidden_dim=2048, output_dim=2048)),
        (SimSiamPredictionHead, dict(input_dim=2048, hidden_dim=512, output_dim=2048)),
        (BarlowTwinsProjectionHead, dict(input_dim=2048, hidden_dim=8192, output_dim=8192)),
        (VICRegProjectionHead, dict(input_dim=2048, hidden_dim=8192, output_dim=8192,
                                    num_layers=3)),
        (DINOProjectionHead, dict(input_dim=2048, hidden_dim=2048, bottleneck_dim=256,
                                  output_dim=65536, batch_norm=False, freeze_last_layer=-1,
                                  norm_last_layer=True)),
    ],
)  # fmt: skip
def test_paper_defaults_in_signatures(cls: type[nn.Module], defaults: dict[str, object]) -> None:
    params = inspect.signature(cls.__init__).parameters
    assert {k: params[k].default for k in defaults} == defaults
    assert set(params) - {"self"} == set(defaults)


def test_default_head_builds_at_paper_size() -> None:
    head = SimCLRProjectionHead()
    assert head(torch.randn(2, 2048)).shape == (2, 128)


def test_projection_head_rejects_bad_blocks() -> None:
    with pytest.raises(ValueError, match="at least one block"):
        ProjectionHead([])
    with pytest.raises(ValueError, match="Block 1 input_dim 4 != previous block's output_dim 5"):
        ProjectionHead([(3, 5, None, nn.ReLU()), (4, 2, None, None)])
    with pytest.raises(ValueError, match="num_layers must be >= 1, got 0"):
        SimCLRProjectionHead(4, 4, 4, num_layers=0)


def test_dino_last_layer_is_weight_normalised_with_fixed_norm() -> None:
    head = DINOProjectionHead(6, 8, 4, 10)
    weight_g = head.last_layer.parametrizations.weight.original0
    assert not weight_g.requires_grad
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(10))
    # Unit bottleneck times unit prototypes: outputs are cosine similarities.
    out = head(torch.randn(5, 6))
    assert out.abs().max() <= 1.0 + 1e-6
    free = DINOProjectionHead(6, 8, 4, 10, norm_last_layer=False)
    assert free.last_layer.parametrizations.weight.original0.requires_grad


@pytest.mark.parametrize("freeze,epoch,cancelled", [(1, 0, True), (1, 1, False), (-1, 0, False)])
def test_dino_cancel_last_layer_gradients(freeze: int, epoch: int, cancelled: bool) -> None:
    head = DINOProjectionHead(6, 8, 4, 10, freeze_last_layer=freeze, norm_last_layer=False)
    head(torch.randn(3, 6)).sum().backward()
    head.cancel_last_layer_gradients(epoch)
    last = list(head.last_layer.parameters())
    assert all((p.grad is None) == cancelled for p in last)
    assert all(p.grad is not None for p in head.layers.parameters())


def test_dino_head_deepcopies_and_follows_ema() -> None:
    student = DINOProjectionHead(6, 8, 4, 10)
    teacher = copy_frozen(student)
    x = torch.randn(3, 6)
    assert torch.allclose(teacher(x), student(x))
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = copy.deepcopy(teacher)
    update_momentum(student, teacher, 0.5)
    for p_t, p_b, p_s in zip(teacher.parameters(), before.parameters(), student.parameters()):
        assert torch.allclose(p_t, 0.5 * p_b + 0.5 * p_s)


def test_projection_heads_run_in_float32_under_bf16_autocast() -> None:
    """The MLP heads are cheap and feed temperature-scaled losses: float32 even under autocast."""
    torch.manual_seed(0)
    head = SimCLRProjectionHead(32, 64, 16)
    x = torch.randn(8, 32).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x)
        plain = nn.Linear(32, 16)(x.float())  # autocast itself would give bf16
    assert out.dtype == torch.float32
    assert plain.dtype == torch.bfloat16
    torch.testing.assert_close(out, head(x.float()))

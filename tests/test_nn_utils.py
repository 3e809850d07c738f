"""EMA updates, schedules and the distributed helpers (one process, and 2 gloo processes)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from workbench.nn import distributed as wdist
from workbench.nn.losses import BarlowTwinsLoss, DINOLoss, NTXentLoss, VICRegLoss
from workbench.nn.utils import (
    copy_frozen,
    cosine_schedule,
    deactivate_requires_grad,
    linear_warmup_cosine,
    update_momentum,
)


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


# --- momentum encoders ------------------------------------------------------------------------


@pytest.mark.parametrize("m", [0.0, 0.5, 0.996, 1.0])
def test_update_momentum_is_ema_of_parameters_and_copies_buffers(m: float) -> None:
    torch.manual_seed(0)
    model, ema = _net(), _net()
    model(torch.randn(8, 3))  # changes model's BatchNorm running statistics
    before = [p.detach().clone() for p in ema.parameters()]
    update_momentum(model, ema, m)
    for p_ema, p_old, p in zip(ema.parameters(), before, model.parameters()):
        assert torch.allclose(p_ema, m * p_old + (1 - m) * p.detach(), atol=1e-7)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        assert torch.equal(b_ema, b)
    assert all(p.grad is None for p in ema.parameters())


def test_update_momentum_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="m must be in \\[0, 1\\], got 1.5"):
        update_momentum(_net(), _net(), 1.5)
    with pytest.raises(ValueError, match="parameters"):
        update_momentum(_net(), nn.Linear(3, 4), 0.9)
    with pytest.raises(ValueError, match="Parameter 0 has shape \\(4, 3\\) in model"):
        update_momentum(nn.Linear(3, 4), nn.Linear(4, 4), 0.9)


def test_copy_frozen_and_deactivate_requires_grad() -> None:
    model = _net()
    frozen = copy_frozen(model)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in frozen.parameters())
    with torch.no_grad():
        next(frozen.parameters()).zero_()
    assert next(model.parameters()).abs().sum() > 0  # a copy, not shared storage
    deactivate_requires_grad(model)
    assert not any(p.requires_grad for p in model.parameters())


# --- schedules --------------------------------------------------------------------------------


def test_cosine_schedule_endpoints_midpoint_and_clamp() -> None:
    assert cosine_schedule(0, 10, 0.996, 1.0) == pytest.approx(0.996)
    assert cosine_schedule(5, 10, 0.996, 1.0) == pytest.approx(0.998)
    assert cosine_schedule(10, 10, 0.996, 1.0) == pytest.approx(1.0)
    assert cosine_schedule(25, 10, 0.996, 1.0) == pytest.approx(1.0)
    step = 3
    expected = 1.0 - (1.0 - 0.996) * (math.cos(math.pi * step / 10) + 1) / 2
    assert cosine_schedule(step, 10, 0.996, 1.0) == pytest.approx(expected)
    values = [cosine_schedule(s, 10, 1.0, 0.0) for s in range(11)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_cosine_schedule_with_period_oscillates() -> None:
    assert cosine_schedule(0, 100, 1.0, 0.0, period=4) == pytest.approx(1.0)
    assert cosine_schedule(2, 100, 1.0, 0.0, period=4) == pytest.approx(0.0)
    assert cosine_schedule(4, 100, 1.0, 0.0, period=4) == pytest.approx(1.0)
    assert cosine_schedule(1, 100, 1.0, 0.0, period=4) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "args,match",
    [((-1, 10), "step must be >= 0, got -1"), ((0, 0), "max_steps must be >= 1, got 0")],
)
def test_cosine_schedule_rejects_bad_arguments(args: tuple[int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cosine_schedule(*args, 1.0, 0.0)
    with pytest.raises(ValueError, match="period must be >= 1 or None, got 0"):
        cosine_schedule(0, 10, 1.0, 0.0, period=0)


def test_linear_warmup_cosine() -> None:
    base, final = 0.1, 0.001
    lrs = [linear_warmup_cosine(s, 4, 20, base, final) for s in range(25)]
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4] == pytest.approx(base)
    assert lrs[12] == pytest.approx(final + (base - final) / 2)  # half-way through the decay
    assert lrs[20:] == pytest.approx([final] * 5)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert linear_warmup_cosine(0, 0, 10, base) == pytest.approx(base)
    assert linear_warmup_cosine(3, 3, 3, base, final) == pytest.approx(final)
    with pytest.raises(ValueError, match="warmup_steps must be in \\[0, max_steps=10\\], got 11"):
        linear_warmup_cosine(0, 11, 10, base)


# --- distributed ------------------------------------------------------------------------------


def test_single_process_helpers_are_identities() -> None:
    assert not wdist.is_distributed()
    assert wdist.world_size() == 1 and wdist.rank() == 0
    x = torch.randn(3, 2, requires_grad=True)
    assert wdist.gather(x) is x
    assert wdist.all_reduce_sum(x) is x
    y = torch.ones(2)
    assert torch.equal(wdist.all_reduce_mean_(y), torch.ones(2))
    assert torch.equal(wdist.broadcast_(y), torch.ones(2))


def _losses() -> dict[str, nn.Module]:
    return {
        "ntxent": NTXentLoss(0.3, gather_distributed=True),
        "barlow": BarlowTwinsLoss(0.01, gather_distributed=True),
        "vicreg": VICRegLoss(gather_distributed=True),
    }


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str, z0: torch.Tensor,
                z1: torch.Tensor) -> None:  # fmt: skip
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)  # fmt: skip
    try:
        torch.manual_seed(rank)  # different random states: the shared queue must be broadcast
        b = z0.shape[0] // world
        mine = slice(rank * b, (rank + 1) * b)
        results: dict[str, object] = {"gathered": wdist.gather(z0[mine])}
        for name, crit in _losses().items():
            a, c = z0[mine].clone().requires_grad_(True), z1[mine].clone().requires_grad_(True)
            loss = crit(a, c)
            loss.backward()
            results[name] = (loss.detach(), a.grad, c.grad)
        moco = NTXentLoss(memory_bank_size=4 * world * b, gather_distributed=True)
        moco(z0[mine], z1[mine])
        dino = DINOLoss(z0.shape[1])
        dino([z0[mine]], [z1[mine], z0[mine]], epoch=0)
        results["bank"], results["center"] = moco.bank, dino.center
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_on_the_concatenated_batch(tmp_path: Path) -> None:
    world, b, d = 2, 4, 5
    z0 = torch.randn(world * b, d, dtype=torch.float64)
    z1 = z0 + 0.5 * torch.randn(world * b, d, dtype=torch.float64)
    mp.spawn(_ddp_worker, args=(world, str(tmp_path / "init"), str(tmp_path), z0, z1),
             nprocs=world, join=True)  # fmt: skip
    res = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]
    for r in res:
        assert torch.equal(r["gathered"], z0)
    for name, crit in _losses().items():
        a, c = z0.clone().requires_grad_(True), z1.clone().requires_grad_(True)
        loss = crit(a, c)
        loss.backward()
        assert a.grad is not None and c.grad is not None
        # The mean of the per-process losses is the loss of the whole batch (for Barlow Twins and
        # VICReg every process computes that same global loss).
        mean = sum(r[name][0] for r in res) / world
        assert mean.item() == pytest.approx(loss.item(), abs=1e-10), name
        # Each process holds world * dL/dx for its rows; DDP's averaging then gives dL/dtheta.
        grad_a = torch.cat([r[name][1] for r in res])
        grad_c = torch.cat([r[name][2] for r in res])
        assert torch.allclose(grad_a, world * a.grad, atol=1e-10), name
        assert torch.allclose(grad_c, world * c.grad, atol=1e-10), name
    # MoCo enqueues every process's keys; DINO's center averages every process's teacher outputs.
    keys = torch.nn.functional.normalize(z1, dim=1).float()
    center = 0.1 * z0.mean(dim=0, keepdim=True)
    assert torch.equal(res[0]["bank"], res[1]["bank"])  # one shared queue, same random start
    for r in res:
        assert torch.allclose(r["bank"][: world * b], keys, atol=1e-6)
        assert torch.allclose(r["center"], center.float(), atol=1e-6)


# ----------------------------------------------------------------------------- LARS


def test_lars_step_matches_the_formula_and_ignores_the_loss_scale() -> None:
    """Adapted tensors step by lr * eta * ||w|| / ||g + wd w|| along g + wd w, whatever g's scale;
    groups with lars_adapt=False take plain SGD steps."""
    from workbench.nn.optim import LARS

    torch.manual_seed(0)
    w0, b0, g, gb = torch.randn(4, 3), torch.randn(3), torch.randn(4, 3), torch.randn(3)
    lr, eta, wd = 0.5, 0.02, 1e-3
    for scale in (1.0, 1000.0):
        w, b = nn.Parameter(w0.clone()), nn.Parameter(b0.clone())
        opt = LARS([{"params": [w]}, {"params": [b], "lars_adapt": False, "weight_decay": 0.0}],
                   lr=lr, eta=eta, weight_decay=wd)  # fmt: skip
        w.grad, b.grad = g * scale, gb.clone()
        opt.step()
        d = g * scale + wd * w0
        expected = w0 - lr * eta * w0.norm() / d.norm() * d
        torch.testing.assert_close(w.detach(), expected)
        torch.testing.assert_close(b.detach(), b0 - lr * gb)
    # momentum: the second step adds momentum * first update
    w = nn.Parameter(w0.clone())
    opt = LARS([w], lr=lr, eta=eta, momentum=0.9)
    w.grad = g.clone()
    opt.step()
    first = (w0 - w.detach()) / lr
    w1 = w.detach().clone()
    w.grad = g.clone()
    opt.step()
    second = eta * w1.norm() / g.norm() * g
    torch.testing.assert_close(w.detach(), w1 - lr * (0.9 * first + second))
    with pytest.raises(ValueError, match="eta"):
        LARS([w], lr=0.1, eta=0.0)

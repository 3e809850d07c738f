"""Each loss against a direct re-derivation of its paper's formula (loops, no shared code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.nn.losses import (
    BarlowTwinsLoss,
    DINOLoss,
    NTXentLoss,
    VICRegLoss,
    negative_cosine_similarity,
    queue_kl_loss,
)

ATOL = 1e-5


def _randn(*shape: int, seed: int = 0, grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(grad)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / math.sqrt(float((v * v).sum()))


def _ref_ntxent(z0: torch.Tensor, z1: torch.Tensor, t: float) -> float:
    """SimCLR eq. 1: l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t), mean over 2N."""
    z = [_unit(v) for v in torch.cat([z0, z1]).detach()]
    n, b = len(z), len(z) // 2
    total = 0.0
    for i in range(n):
        pos = math.exp(float(z[i] @ z[(i + b) % n]) / t)
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total += -math.log(pos / denom)
    return total / n


def _ref_infonce(q: torch.Tensor, k: torch.Tensor, bank: torch.Tensor, t: float) -> float:
    """MoCo eq. 1: -log exp(q.k+ / t) / (exp(q.k+ / t) + sum_queue exp(q.k- / t))."""
    total = 0.0
    for qi, ki in zip(q.detach(), k.detach()):
        qi, ki = _unit(qi), _unit(ki)
        pos = math.exp(float(qi @ ki) / t)
        neg = sum(math.exp(float(qi @ kn) / t) for kn in bank.double())
        total += -math.log(pos / (pos + neg))
    return total / len(q)


@pytest.mark.parametrize("batch,dim", [(1, 3), (4, 8), (9, 5)])
@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
def test_ntxent_matches_simclr_formula(batch: int, dim: int, temperature: float) -> None:
    z0, z1 = _randn(batch, dim, seed=1), _randn(batch, dim, seed=2)
    loss = NTXentLoss(temperature=temperature)(z0, z1)
    assert loss.item() == pytest.approx(_ref_ntxent(z0, z1, temperature), abs=ATOL)


def test_ntxent_is_scale_invariant_and_gradients_reach_both_views() -> None:
    z0, z1 = _randn(6, 4, seed=1, grad=True), _randn(6, 4, seed=2, grad=True)
    crit = NTXentLoss()
    loss = crit(z0, z1)
    assert crit(3.0 * z0, 0.5 * z1).item() == pytest.approx(loss.item(), abs=ATOL)
    loss.backward()
    assert z0.grad is not None and z0.grad.abs().sum() > 0
    assert z1.grad is not None and z1.grad.abs().sum() > 0


def test_ntxent_gather_is_identity_without_process_group() -> None:
    z0, z1 = _randn(5, 3, seed=1), _randn(5, 3, seed=2)
    a = NTXentLoss(0.2, gather_distributed=True)(z0, z1)
    assert a.item() == pytest.approx(NTXentLoss(0.2)(z0, z1).item(), abs=1e-12)


@pytest.mark.parametrize("batch,dim,bank_size", [(2, 3, 5), (4, 8, 16), (3, 4, 2)])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_memory_bank_matches_moco_infonce(
    batch: int, dim: int, bank_size: int, temperature: float
) -> None:
    crit = NTXentLoss(temperature=temperature, memory_bank_size=bank_size)
    assert crit.bank.numel() == 0  # dim unknown until the first call
    crit.eval()  # initialise the bank without updating it
    crit(_randn(batch, dim, seed=9), _randn(batch, dim, seed=10))
    assert crit.bank.shape == (bank_size, dim)
    assert torch.allclose(crit.bank.norm(dim=1), torch.ones(bank_size))
    bank = crit.bank.clone()
    q, k = _randn(batch, dim, seed=1, grad=True), _randn(batch, dim, seed=2)
    crit.train()
    loss = crit(q, k)
    assert loss.item() == pytest.approx(_ref_infonce(q, k, bank, temperature), abs=ATOL)
    loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert not crit.bank.requires_grad


def test_memory_bank_fifo_update() -> None:
    crit = NTXentLoss(memory_bank_size=5)
    k1, k2 = _randn(3, 4, seed=1), _randn(3, 4, seed=2)
    crit(_randn(3, 4, seed=3), k1)
    k1n = torch.nn.functional.normalize(k1, dim=1).float()
    assert torch.allclose(crit.bank[:3], k1n) and int(crit.bank_ptr) == 3
    old = crit.bank.clone()
    crit(_randn(3, 4, seed=4), k2)
    k2n = torch.nn.functional.normalize(k2, dim=1).float()
    # Slots 3, 4 then wrap around to slot 0; slots 1, 2 keep k1.
    assert torch.allclose(crit.bank[3:], k2n[:2]) and torch.allclose(crit.bank[0], k2n[2])
    assert torch.equal(crit.bank[1:3], old[1:3]) and int(crit.bank_ptr) == 1
    # Eval mode (validation) leaves the queue alone.
    crit.eval()
    before = crit.bank.clone()
    crit(_randn(3, 4, seed=5), _randn(3, 4, seed=6))
    assert torch.equal(crit.bank, before) and int(crit.bank_ptr) == 1


def test_memory_bank_backward_after_in_place_enqueue() -> None:
    # float32 as in training (no dtype copy); MoCo's symmetric loss enqueues twice before backward.
    crit = NTXentLoss(0.2, memory_bank_size=8)
    q0, q1 = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    k0, k1 = torch.randn(4, 3), torch.randn(4, 3)
    loss = 0.5 * (crit(q0, k1) + crit(q1, k0))
    loss.backward()
    assert q0.grad is not None and q1.grad is not None and int(crit.bank_ptr) == 0


def test_memory_bank_smaller_than_batch_keeps_newest_keys() -> None:
    crit = NTXentLoss(memory_bank_size=2)
    k = _randn(3, 4, seed=1)
    crit(_randn(3, 4, seed=3), k)
    assert torch.allclose(crit.bank, torch.nn.functional.normalize(k[1:], dim=1).float())


def test_memory_bank_state_dict_round_trip_and_dim_check() -> None:
    crit = NTXentLoss(memory_bank_size=4)
    crit(_randn(2, 3, seed=1), _randn(2, 3, seed=2))
    fresh = NTXentLoss(memory_bank_size=4)
    fresh.load_state_dict(crit.state_dict())
    assert torch.equal(fresh.bank, crit.bank) and int(fresh.bank_ptr) == 2
    with pytest.raises(ValueError, match="memory bank's dim 3"):
        crit(_randn(2, 5, seed=1), _randn(2, 5, seed=2))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"temperature": 0.0}, "temperature"), ({"memory_bank_size": -1}, "memory_bank_size")],
)
def test_ntxent_rejects_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NTXentLoss(**kwargs)  # type: ignore[arg-type]


def test_ntxent_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 3\) and \(4, 5\)"):
        NTXentLoss()(_randn(4, 3), _randn(4, 5))


# --- DINO -------------------------------------------------------------------------------------


def _ref_dino(
    teacher: list[torch.Tensor], student: list[torch.Tensor], center: np.ndarray,
    t_temp: float, s_temp: float,
) -> float:  # fmt: skip
    """DINO Algorithm 1: H(t, s) = -sum p_t log p_s over pairs of different views, averaged."""

    def softmax(v: np.ndarray) -> np.ndarray:
        e = np.exp(v - v.max())
        return e / e.sum()

    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        for j, s in enumerate(student):
            if i == j:
                continue
            rows = [
                -(softmax((tb - center) / t_temp) * np.log(softmax(sb / s_temp))).sum()
                for tb, sb in zip(t.detach().numpy(), s.detach().numpy())
            ]
            total += float(np.mean(rows))
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("n_teacher,n_student", [(1, 2), (2, 2), (2, 5)])
@pytest.mark.parametrize("teacher_temp,student_temp", [(0.04, 0.1), (0.07, 0.2)])
def test_dino_loss_matches_paper(
    n_teacher: int, n_student: int, teacher_temp: float, student_temp: float
) -> None:
    batch, k = 3, 6
    teacher = [_randn(batch, k, seed=i) for i in range(n_teacher)]
    student = [_randn(batch, k, seed=10 + j, grad=True) for j in range(n_student)]
    crit = DINOLoss(k, teacher_temp, teacher_temp, 0, student_temp, center_momentum=0.9)
    center = np.zeros(k)
    for step in range(2):  # the second step uses the center updated by the first
        loss = crit(teacher, student, epoch=step)
        ref = _ref_dino(teacher, student, center, teacher_temp, student_temp)
        assert loss.item() == pytest.approx(ref, abs=ATOL)
        rows = np.concatenate([t.numpy() for t in teacher])
        center = 0.9 * center + 0.1 * rows.mean(axis=0)
        assert np.allclose(crit.center.numpy()[0], center, atol=ATOL)


def test_dino_gradients_reach_student_only() -> None:
    teacher = [_randn(4, 5, seed=i, grad=True) for i in range(2)]
    student = [_randn(4, 5, seed=10 + j, grad=True) for j in range(4)]
    DINOLoss(5)(teacher, student, epoch=0).backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)


def test_dino_center_frozen_in_eval_mode() -> None:
    crit = DINOLoss(4).eval()
    crit([_randn(2, 4, seed=1)], [_randn(2, 4, seed=2), _randn(2, 4, seed=3)], epoch=0)
    assert torch.equal(crit.center, torch.zeros(1, 4))


def test_dino_teacher_temperature_schedule() -> None:
    crit = DINOLoss(8, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=30)
    expected = np.concatenate([np.linspace(0.04, 0.07, 30), np.full(20, 0.07)])  # DINO's code
    got = [crit.teacher_temperature(e) for e in range(50)]
    assert np.allclose(got, expected, atol=1e-12)
    assert DINOLoss(8, 0.04, 0.07, 0).teacher_temperature(0) == 0.07
    with pytest.raises(ValueError, match="epoch must be >= 0, got -1"):
        crit.teacher_temperature(-1)


def test_dino_temperature_enters_the_loss() -> None:
    teacher, student = [_randn(3, 6, seed=1)], [_randn(3, 6, seed=2), _randn(3, 6, seed=3)]
    crit = DINOLoss(6, 0.04, 0.07, 10).eval()
    ref = _ref_dino(teacher, student, np.zeros(6), crit.teacher_temperature(5), 0.1)
    assert crit(teacher, student, epoch=5).item() == pytest.approx(ref, abs=ATOL)


def test_dino_rejects_bad_inputs() -> None:
    crit = DINOLoss(4)
    with pytest.raises(ValueError, match="view 1 is \\(2, 5\\)"):
        crit([_randn(2, 4)], [_randn(2, 5), _randn(2, 4)], epoch=0)
    with pytest.raises(ValueError, match="at least 2 views"):
        crit([_randn(2, 4)], [_randn(2, 4)], epoch=0)
    with pytest.raises(ValueError, match="teacher_temp must be > 0, got 0"):
        DINOLoss(4, teacher_temp=0)
    with pytest.raises(ValueError, match="center_momentum"):
        DINOLoss(4, center_momentum=1.5)


# --- SimSiam / BYOL ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch,dim", [(1, 2), (5, 7)])
def test_negative_cosine_similarity_matches_formula_and_stops_gradient(
    batch: int, dim: int
) -> None:
    p, z = _randn(batch, dim, seed=1, grad=True), _randn(batch, dim, seed=2, grad=True)
    ref = -np.mean([float(_unit(a) @ _unit(b)) for a, b in zip(p.detach(), z.detach())])
    loss = negative_cosine_similarity(p, z)
    assert loss.item() == pytest.approx(ref, abs=ATOL)
    loss.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None
    assert negative_cosine_similarity(z, z).item() == pytest.approx(-1.0, abs=ATOL)


@pytest.mark.parametrize("method", ["simsiam", "byol"])
def test_predictor_sees_one_view_at_a_time(method: str) -> None:
    """The predictor's BatchNorm normalises each view's batch on its own (the papers' code)."""
    import workbench as wb
    from workbench.methods import get_method

    cls = get_method(method)
    backbone, dim = wb.get_backbone("resnet18", input_size=16)
    m = cls(backbone, dim, cls.make_config())
    batches: list[int] = []
    m.prediction_head.register_forward_hook(lambda mod, inp, out: batches.append(inp[0].shape[0]))
    views = [torch.rand(6, 3, 16, 16), torch.rand(6, 3, 16, 16)]
    m.training_step_loss(views, epoch=0, step=0, max_steps=1)
    assert batches == [6, 6]


# --- Barlow Twins -----------------------------------------------------------------------------


def _ref_barlow(za: torch.Tensor, zb: torch.Tensor, lam: float) -> float:
    """Barlow Twins eq. 1-2 with BatchNorm1d(affine=False) normalisation (biased var, eps 1e-5)."""
    a, b = za.detach().numpy(), zb.detach().numpy()
    n, d = a.shape

    def bn(x: np.ndarray) -> np.ndarray:
        return (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)

    a, b = bn(a), bn(b)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c_ij) ** 2 if i == j else lam * c_ij**2
    return loss


@pytest.mark.parametrize("batch,dim", [(2, 2), (8, 4), (5, 9)])
@pytest.mark.parametrize("lambda_param", [5e-3, 0.1])
def test_barlow_twins_matches_paper(batch: int, dim: int, lambda_param: float) -> None:
    za, zb = _randn(batch, dim, seed=1, grad=True), _randn(batch, dim, seed=2, grad=True)
    loss = BarlowTwinsLoss(lambda_param)(za, zb)
    assert loss.item() == pytest.approx(_ref_barlow(za, zb, lambda_param), abs=ATOL)
    loss.backward()
    assert za.grad is not None and zb.grad is not None and za.grad.abs().sum() > 0


def test_barlow_twins_near_zero_for_identical_decorrelated_views() -> None:
    z = torch.cat([torch.eye(4), -torch.eye(4)]).double()  # whitened columns, C = I
    assert BarlowTwinsLoss()(z, z).item() == pytest.approx(0.0, abs=1e-4)


def test_barlow_twins_rejects_batch_of_one() -> None:
    with pytest.raises(ValueError, match="batch of >= 2, got 1"):
        BarlowTwinsLoss()(_randn(1, 3), _randn(1, 3))


# --- VICReg -----------------------------------------------------------------------------------


def _ref_vicreg(
    za: torch.Tensor, zb: torch.Tensor, lam: float, mu: float, nu: float, eps: float
) -> float:
    """VICReg eq. 1-6: s (MSE), v (std hinge), c (off-diagonal covariance^2 / d)."""
    a, b = za.detach().numpy(), zb.detach().numpy()
    n, d = a.shape
    inv = sum((a[k, i] - b[k, i]) ** 2 for k in range(n) for i in range(d)) / (n * d)

    def var_term(x: np.ndarray) -> float:
        return sum(max(0.0, 1 - math.sqrt(np.var(x[:, i], ddof=1) + eps)) for i in range(d)) / d

    def cov_term(x: np.ndarray) -> float:
        xc = x - x.mean(0)
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    total += (sum(xc[k, i] * xc[k, j] for k in range(n)) / (n - 1)) ** 2
        return total / d

    return lam * inv + mu * (var_term(a) + var_term(b)) / 2 + nu * (cov_term(a) + cov_term(b))


@pytest.mark.parametrize("batch,dim", [(2, 3), (8, 4), (6, 10)])
@pytest.mark.parametrize("params", [(25.0, 25.0, 1.0, 1e-4), (1.0, 2.0, 3.0, 0.01)])
def test_vicreg_matches_paper(
    batch: int, dim: int, params: tuple[float, float, float, float]
) -> None:
    za = 0.3 * _randn(batch, dim, seed=1)  # std < 1 so the variance hinge is active
    zb = za + 0.1 * _randn(batch, dim, seed=2)
    za.requires_grad_(True)
    zb.requires_grad_(True)
    lam, mu, nu, eps = params
    loss = VICRegLoss(lam, mu, nu, eps=eps)(za, zb)
    assert loss.item() == pytest.approx(_ref_vicreg(za, zb, lam, mu, nu, eps), abs=ATOL)
    loss.backward()
    assert za.grad is not None and zb.grad is not None and zb.grad.abs().sum() > 0


def test_vicreg_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="batch of >= 2, got 1"):
        VICRegLoss()(_randn(1, 3), _randn(1, 3))
    with pytest.raises(ValueError, match="mu_param must be >= 0, got -1"):
        VICRegLoss(mu_param=-1)


# --- queue distillation -----------------------------------------------------------------------


def _ref_queue_kl(s: torch.Tensor, t: torch.Tensor, queue: torch.Tensor, temp: float) -> float:
    """SEED eq. 2-3: sum_j p_T(j) log(p_T(j) / p_S(j)) over the queue, averaged over the batch."""
    qs = [_unit(v) for v in queue.detach()]
    total = 0.0
    for sb, tb in zip(s.detach(), t.detach()):
        sb, tb = _unit(sb), _unit(tb)
        es = [math.exp(float(sb @ q) / temp) for q in qs]
        et = [math.exp(float(tb @ q) / temp) for q in qs]
        ps = [e / sum(es) for e in es]
        pt = [e / sum(et) for e in et]
        total += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    return total / len(s)


@pytest.mark.parametrize("batch,dim,qsize", [(1, 3, 4), (5, 8, 16)])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_queue_kl_matches_seed(batch: int, dim: int, qsize: int, temperature: float) -> None:
    s, t = _randn(batch, dim, seed=1, grad=True), _randn(batch, dim, seed=2, grad=True)
    queue = _randn(qsize, dim, seed=3, grad=True)
    loss = queue_kl_loss(s, t, queue, temperature)
    assert loss.item() == pytest.approx(_ref_queue_kl(s, t, queue, temperature), abs=ATOL)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None and queue.grad is None
    assert queue_kl_loss(t, t, queue).item() == pytest.approx(0.0, abs=ATOL)


def test_queue_kl_rejects_bad_queue() -> None:
    with pytest.raises(ValueError, match=r"queue must be \(Q, 3\) with Q >= 1, got \(4, 2\)"):
        queue_kl_loss(_randn(2, 3), _randn(2, 3), _randn(4, 2))


# ----------------------------------------------------------------------------- mixed precision

_PAIR_LOSSES = {
    "ntxent": lambda a, b: NTXentLoss(temperature=0.1)(a, b),
    "negcos": negative_cosine_similarity,
    "barlow": lambda a, b: BarlowTwinsLoss()(a, b),
    "vicreg": lambda a, b: VICRegLoss()(a, b),
    "queue_kl": lambda a, b: queue_kl_loss(a, b, b.detach()[:5].float()),
}


@pytest.mark.parametrize("name", list(_PAIR_LOSSES))
def test_losses_compute_in_float32_under_bf16_autocast(name: str) -> None:
    """Inputs from a bf16 head give the float32 loss of the same values, in float32."""
    fn = _PAIR_LOSSES[name]
    a = _randn(16, 32, seed=1).float().bfloat16().requires_grad_()
    b = _randn(16, 32, seed=2).float().bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fn(a, b)
    expected = fn(a.detach().float(), b.float())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-6, atol=1e-6)
    loss.backward()  # the gradient reaches the bf16 input, in its own dtype
    assert a.grad is not None and a.grad.dtype == torch.bfloat16


def test_dino_loss_in_float32_under_bf16_autocast() -> None:
    t = [_randn(8, 16, seed=s).float().bfloat16() for s in (1, 2)]
    s = [_randn(8, 16, seed=s).float().bfloat16() for s in (3, 4, 5)]
    crit = DINOLoss(16, warmup_teacher_temp_epochs=0).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = crit(t, s, epoch=0)
    assert loss.dtype == torch.float32
    expected = crit([x.float() for x in t], [x.float() for x in s], epoch=0)
    torch.testing.assert_close(loss, expected)

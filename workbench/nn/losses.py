"""SSL losses as plain ``nn.Module``s and functions (pure torch, no Lightning).

Each loss follows its paper's reference code; ``tests/test_losses.py`` re-derives every one with
explicit loops. Losses with state (the MoCo memory bank, the DINO center) keep it in buffers, so
it moves with ``.to(device)`` and is saved in checkpoints, and update it only in training mode,
like BatchNorm's running statistics.

- [0]: SimCLR, 2020, https://arxiv.org/abs/2002.05709
- [1]: MoCo, 2020, https://arxiv.org/abs/1911.05722
- [2]: DINO, 2021, https://arxiv.org/abs/2104.14294
- [3]: SimSiam, 2021, https://arxiv.org/abs/2011.10566
- [4]: BYOL, 2020, https://arxiv.org/abs/2006.07733
- [5]: Barlow Twins, 2021, https://arxiv.org/abs/2103.03230
- [6]: VICReg, 2022, https://arxiv.org/abs/2105.04906
- [7]: SEED, 2021, https://arxiv.org/abs/2101.04731
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.nn import distributed as wdist
from workbench.nn.precision import full_precision


def _check_pair(a: Tensor, b: Tensor, names: str = "out0, out1") -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f"{names} must both be (batch, dim) with the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross-entropy of SimCLR [0], or MoCo's InfoNCE [1].

    Without a memory bank, each of the 2B views in ``out0``/``out1`` is classified against the
    2B - 1 others: its positive is the other view of the same image, every other view is a
    negative. With ``memory_bank_size > 0`` (MoCo), ``out0`` are the queries and ``out1`` the
    keys: each query's positive is its key and the negatives are the memory bank of past keys.
    The bank is a (memory_bank_size, dim) buffer, filled with random unit vectors at the first
    call (dim taken from the inputs) and updated first-in-first-out with the L2-normalised keys
    *after* the loss is computed, in training mode only.

    - [0]: SimCLR, 2020, https://arxiv.org/abs/2002.05709
    - [1]: MoCo, 2020, https://arxiv.org/abs/1911.05722

    Args:
        temperature: Softmax temperature (SimCLR: 0.5 at batch 256..; MoCo v2: 0.2).
        memory_bank_size: Number of stored negatives (MoCo: 65536); 0 uses in-batch negatives.
        gather_distributed: Under ``torch.distributed``, use the other processes' views as
            negatives too (with gradient), and enqueue all processes' keys into the bank.
    """

    bank: Tensor
    bank_ptr: Tensor

    def __init__(
        self, temperature: float = 0.5, memory_bank_size: int = 0, gather_distributed: bool = False
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if memory_bank_size < 0:
            raise ValueError(f"memory_bank_size must be >= 0, got {memory_bank_size}")
        self.temperature = temperature
        self.memory_bank_size = memory_bank_size
        self.gather_distributed = gather_distributed
        # Empty until the first call tells us the embedding dim; see _load_from_state_dict.
        self.register_buffer("bank", torch.empty(0))
        self.register_buffer("bank_ptr", torch.zeros((), dtype=torch.long))

    @full_precision
    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """Loss averaged over the batch (both directions without a bank, queries with one).

        Args:
            out0: (B, D) projections of the first views (MoCo: queries, with gradient).
            out1: (B, D) projections of the second views (MoCo: keys, from the momentum encoder).

        Returns:
            Scalar loss.
        """
        _check_pair(out0, out1)
        out0 = F.normalize(out0, dim=1)
        out1 = F.normalize(out1, dim=1)
        if self.memory_bank_size > 0:
            return self._memory_bank_loss(out0, out1)

        batch_size = out0.shape[0]
        if self.gather_distributed and wdist.world_size() > 1:
            out0_all, out1_all = wdist.gather(out0), wdist.gather(out1)  # (W*B, D)
            offset = wdist.rank() * batch_size
        else:
            out0_all, out1_all, offset = out0, out1, 0
        idx = torch.arange(batch_size, device=out0.device)
        labels = idx + offset
        # The similarity of a view with itself is excluded (it would be a trivial positive).
        self_mask = torch.zeros(batch_size, out0_all.shape[0], dtype=torch.bool, device=out0.device)
        self_mask[idx, labels] = True
        logits_01 = out0 @ out1_all.T / self.temperature  # (B, W*B)
        logits_00 = (out0 @ out0_all.T / self.temperature).masked_fill(self_mask, float("-inf"))
        logits_10 = out1 @ out0_all.T / self.temperature
        logits_11 = (out1 @ out1_all.T / self.temperature).masked_fill(self_mask, float("-inf"))
        logits = torch.cat(
            [torch.cat([logits_01, logits_00], dim=1), torch.cat([logits_10, logits_11], dim=1)]
        )  # (2B, 2*W*B): positives at column `labels` (the cross-view block comes first)
        return F.cross_entropy(logits, labels.repeat(2))

    def _memory_bank_loss(self, query: Tensor, key: Tensor) -> Tensor:
        dim = query.shape[1]
        if self.bank.numel() == 0:
            bank = F.normalize(torch.randn(self.memory_bank_size, dim, device=key.device), dim=1)
            if self.gather_distributed:  # the processes share one queue: start from the same one
                wdist.broadcast_(bank)
            self.bank = bank
            self.bank_ptr.zero_()
        elif self.bank.shape[1] != dim:
            raise ValueError(
                f"Embedding dim {dim} does not match the memory bank's dim {self.bank.shape[1]}"
            )
        # A copy: the in-place enqueue below must not change what backward needs.
        negatives = self.bank.detach().clone().to(dtype=query.dtype)  # (Q, D)
        pos = (query * key).sum(dim=1, keepdim=True)  # (B, 1)
        neg = query @ negatives.T  # (B, Q)
        logits = torch.cat([pos, neg], dim=1) / self.temperature
        labels = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
        loss = F.cross_entropy(logits, labels)
        if self.training:
            keys = key.detach()
            if self.gather_distributed:
                keys = wdist.gather(keys)
            self._enqueue(keys)
        return loss

    @torch.no_grad()
    def _enqueue(self, keys: Tensor) -> None:
        size = self.memory_bank_size
        keys = keys[-size:]  # a batch larger than the bank keeps only its newest keys
        n = keys.shape[0]
        ptr = int(self.bank_ptr)
        idx = (ptr + torch.arange(n, device=self.bank.device)) % size
        self.bank[idx] = keys.to(self.bank.dtype)
        self.bank_ptr.fill_((ptr + n) % size)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # The bank's shape is only known after the first call; adopt the checkpoint's.
        saved = state_dict.get(prefix + "bank")
        if isinstance(saved, Tensor) and saved.shape != self.bank.shape:
            self.bank = torch.empty_like(saved, device=self.bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args)


class DINOLoss(nn.Module):
    """Self-distillation cross-entropy of DINO [2] with teacher centring and sharpening.

    The teacher's outputs are centred (a running mean subtracted, against collapse to one
    dimension) and sharpened with a low temperature (against collapse to the uniform
    distribution); the student matches them with cross-entropy over every (teacher view i,
    student view j) pair with i != j. The teacher temperature rises linearly from
    ``warmup_teacher_temp`` to ``teacher_temp`` over the first ``warmup_teacher_temp_epochs``
    epochs. The center is an EMA of the teacher's batch mean (averaged over processes under
    ``torch.distributed``), updated after the loss in training mode only.

    - [2]: DINO, 2021, https://arxiv.org/abs/2104.14294

    Args:
        output_dim: Dimension K of the head outputs (prototypes).
        warmup_teacher_temp: Teacher temperature at epoch 0.
        teacher_temp: Teacher temperature after the warm-up.
        warmup_teacher_temp_epochs: Length of the linear warm-up (0: no warm-up).
        student_temp: Student temperature.
        center_momentum: EMA momentum of the center.
    """

    center: Tensor

    def __init__(
        self,
        output_dim: int = 65536,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 30,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if output_dim < 1:
            raise ValueError(f"output_dim must be >= 1, got {output_dim}")
        for name, t in [
            ("warmup_teacher_temp", warmup_teacher_temp),
            ("teacher_temp", teacher_temp),
            ("student_temp", student_temp),
        ]:
            if t <= 0:
                raise ValueError(f"{name} must be > 0, got {t}")
        if warmup_teacher_temp_epochs < 0:
            raise ValueError(
                f"warmup_teacher_temp_epochs must be >= 0, got {warmup_teacher_temp_epochs}"
            )
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}")
        self.output_dim = output_dim
        self.warmup_teacher_temp = warmup_teacher_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, output_dim))
        self.last_signals: dict[str, Tensor] = {}  # collapse_signals() of the last forward

    def teacher_temperature(self, epoch: int) -> float:
        """Teacher temperature at ``epoch`` (DINO's schedule: linspace, then constant)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        n = self.warmup_teacher_temp_epochs
        if epoch >= n:
            return self.teacher_temp
        if n == 1:
            return self.warmup_teacher_temp
        frac = epoch / (n - 1)
        return self.warmup_teacher_temp + frac * (self.teacher_temp - self.warmup_teacher_temp)

    @full_precision
    def forward(self, teacher_out: list[Tensor], student_out: list[Tensor], epoch: int) -> Tensor:
        """Cross-entropy averaged over view pairs and the batch.

        Args:
            teacher_out: One (B, K) tensor per global view, from the teacher. No gradient flows
                into it.
            student_out: One (B, K) tensor per view, from the student; its first
                ``len(teacher_out)`` entries are the same global views as ``teacher_out``.
            epoch: Current epoch (sets the teacher temperature).

        Returns:
            Scalar loss.
        """
        if not teacher_out or not student_out:
            raise ValueError(
                f"teacher_out and student_out must be non-empty lists, got {len(teacher_out)} "
                f"and {len(student_out)} views"
            )
        if len(teacher_out) == 1 and len(student_out) == 1:
            raise ValueError("DINOLoss needs at least 2 views: no (i, j) pair with i != j")
        shape = teacher_out[0].shape
        for i, t in enumerate([*teacher_out, *student_out]):
            if t.dim() != 2 or t.shape != shape or t.shape[1] != self.output_dim:
                raise ValueError(
                    f"All views must be (batch, {self.output_dim}) with the same batch size; "
                    f"view {i} is {tuple(t.shape)}, view 0 is {tuple(shape)}"
                )
        temp = self.teacher_temperature(epoch)
        teacher = torch.stack(teacher_out).detach()  # (T, B, K)
        student = torch.stack(student_out)  # (S, B, K)
        t_prob = F.softmax((teacher - self.center) / temp, dim=-1)
        s_logp = F.log_softmax(student / self.student_temp, dim=-1)
        ce = -torch.einsum("tbk,sbk->ts", t_prob, s_logp)  # (T, S), summed over the batch
        pair = ~torch.eye(len(teacher_out), len(student_out), dtype=torch.bool, device=ce.device)
        loss = ce[pair].sum() / (int(pair.sum()) * shape[0])
        self.last_signals = self.collapse_signals(t_prob, s_logp[: len(teacher_out)])
        if self.training:
            self.update_center(teacher)
        return loss

    @staticmethod
    @torch.no_grad()
    def collapse_signals(t_prob: Tensor, s_logp: Tensor) -> dict[str, Tensor]:
        """DINO's own collapse signals [2, Sec. 5.3, Fig. 7], as 0-dim tensors (no host sync).

        - ``teacher_entropy``: mean per-image entropy of the teacher's centred, sharpened
          softmax, in nats. It reaches log K when the teacher output is uniform: the collapse
          that sharpening prevents.
        - ``teacher_batch_entropy``: entropy of the teacher's softmax averaged over the batch.
          It falls to 0 when every image lands on the same dimension: the collapse that
          centring prevents (a confident teacher has a low per-image entropy too, but spreads
          the images over many dimensions).
        - ``teacher_student_kl``: mean KL(teacher || student) on the same global views. It
          falls towards 0 in both collapses: the student then has nothing left to learn.

        Args:
            t_prob: (T, B, K) teacher probabilities.
            s_logp: (T, B, K) student log-probabilities of the same T global views.
        """
        t_logp = t_prob.clamp_min(1e-30).log()
        entropy = -(t_prob * t_logp).sum(-1).mean()
        mean = t_prob.flatten(0, -2).mean(0)
        batch_entropy = -(mean * mean.clamp_min(1e-30).log()).sum()
        kl = (t_prob * (t_logp - s_logp)).sum(-1).mean()
        return {"teacher_entropy": entropy, "teacher_batch_entropy": batch_entropy,
                "teacher_student_kl": kl}  # fmt: skip

    @torch.no_grad()
    def update_center(self, teacher: Tensor) -> None:
        """EMA update of the center with the teacher's mean output over views, batch, processes.

        Args:
            teacher: (T, B, K) or (N, K) teacher outputs (before centring).
        """
        batch_center = teacher.reshape(-1, self.output_dim).mean(dim=0, keepdim=True)  # (1, K)
        wdist.all_reduce_mean_(batch_center)
        self.center.mul_(self.center_momentum).add_(
            batch_center.to(self.center.dtype), alpha=1.0 - self.center_momentum
        )


@full_precision
def negative_cosine_similarity(p: Tensor, z: Tensor) -> Tensor:
    """Negative cosine similarity with stop-gradient on ``z``, of SimSiam [3] and BYOL [4].

    BYOL's loss ``2 - 2 cos`` differs from this only by an affine map. A symmetric loss is
    ``0.5 * (f(p0, z1) + f(p1, z0))``.

    - [3]: SimSiam, 2021, https://arxiv.org/abs/2011.10566
    - [4]: BYOL, 2020, https://arxiv.org/abs/2006.07733

    Args:
        p: (B, D) predictions (gradient flows).
        z: (B, D) targets (projections or momentum-encoder outputs; detached here).

    Returns:
        Scalar ``-mean_b cos(p_b, z_b)`` in [-1, 1].
    """
    _check_pair(p, z, "p, z")
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()


class BarlowTwinsLoss(nn.Module):
    """Redundancy-reduction loss of Barlow Twins [5].

    Each branch is batch-normalised per dimension (mean 0, biased variance 1, eps 1e-5, as the
    reference's ``BatchNorm1d(affine=False)``); the cross-correlation matrix
    ``C = z_a_norm^T z_b_norm / N`` should be the identity: the loss is
    ``sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2``.

    - [5]: Barlow Twins, 2021, https://arxiv.org/abs/2103.03230

    Args:
        lambda_param: Weight of the off-diagonal (redundancy) term.
        gather_distributed: Under ``torch.distributed``, use the global batch: normalisation
            statistics and C are summed over processes (like the reference's SyncBatchNorm and
            ``all_reduce(c)``), so every process computes the loss of the whole batch.
    """

    def __init__(self, lambda_param: float = 5e-3, gather_distributed: bool = False) -> None:
        super().__init__()
        if lambda_param < 0:
            raise ValueError(f"lambda_param must be >= 0, got {lambda_param}")
        self.lambda_param = lambda_param
        self.gather_distributed = gather_distributed
        self.eps = 1e-5

    @full_precision
    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """Loss on one batch of embedding pairs.

        Args:
            z_a: (B, D) embeddings of the first views, B >= 2.
            z_b: (B, D) embeddings of the second views.

        Returns:
            Scalar loss.
        """
        _check_pair(z_a, z_b, "z_a, z_b")
        if z_a.shape[0] < 2:
            raise ValueError(f"BarlowTwinsLoss needs a batch of >= 2, got {z_a.shape[0]}")
        reduce = wdist.all_reduce_sum if self.gather_distributed else (lambda x: x)
        n = reduce(torch.tensor(float(z_a.shape[0]), device=z_a.device))

        def batch_norm(z: Tensor) -> Tensor:
            mean = reduce(z.sum(dim=0)) / n  # (D,)
            var = reduce((z - mean).pow(2).sum(dim=0)) / n
            return (z - mean) / torch.sqrt(var + self.eps)

        c = reduce(batch_norm(z_a).T @ batch_norm(z_b)) / n  # (D, D)
        on_diag = (torch.diagonal(c) - 1).pow(2).sum()
        off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        return on_diag + self.lambda_param * off_diag


class VICRegLoss(nn.Module):
    """Variance-invariance-covariance loss of VICReg [6].

    ``lambda * MSE(z_a, z_b) + mu * (v(z_a) + v(z_b)) / 2 + nu * (c(z_a) + c(z_b))`` where
    ``v(z) = mean_d relu(1 - sqrt(Var(z_d) + eps))`` keeps every dimension's std near 1 and
    ``c(z) = sum_{i != j} Cov(z)_ij^2 / D`` decorrelates dimensions (unbiased (co)variances).

    - [6]: VICReg, 2022, https://arxiv.org/abs/2105.04906

    Args:
        lambda_param: Invariance weight.
        mu_param: Variance weight.
        nu_param: Covariance weight.
        gather_distributed: Under ``torch.distributed``, compute all three terms on the global
            batch gathered from all processes (with gradient), as the reference code does.
        eps: Added to the variance before the square root.
    """

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        for name, v in [("lambda_param", lambda_param), ("mu_param", mu_param),
                        ("nu_param", nu_param), ("eps", eps)]:  # fmt: skip
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        self.lambda_param = lambda_param
        self.mu_param = mu_param
        self.nu_param = nu_param
        self.gather_distributed = gather_distributed
        self.eps = eps

    @full_precision
    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """Loss on one batch of embedding pairs.

        Args:
            z_a: (B, D) embeddings of the first views, B >= 2.
            z_b: (B, D) embeddings of the second views.

        Returns:
            Scalar loss.
        """
        _check_pair(z_a, z_b, "z_a, z_b")
        if z_a.shape[0] < 2:
            raise ValueError(f"VICRegLoss needs a batch of >= 2, got {z_a.shape[0]}")
        if self.gather_distributed:
            z_a, z_b = wdist.gather(z_a), wdist.gather(z_b)
        invariance = F.mse_loss(z_a, z_b)
        variance = 0.5 * (self._variance(z_a) + self._variance(z_b))
        covariance = self._covariance(z_a) + self._covariance(z_b)
        return (
            self.lambda_param * invariance + self.mu_param * variance + self.nu_param * covariance
        )

    def _variance(self, z: Tensor) -> Tensor:
        std = torch.sqrt(z.var(dim=0) + self.eps)  # (D,)
        return F.relu(1.0 - std).mean()

    @staticmethod
    def _covariance(z: Tensor) -> Tensor:
        n, d = z.shape
        z = z - z.mean(dim=0)
        cov = z.T @ z / (n - 1)  # (D, D)
        return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


@full_precision
def queue_kl_loss(
    student_emb: Tensor, teacher_emb: Tensor, queue: Tensor, temperature: float = 0.07
) -> Tensor:
    """Distillation through similarities to a queue of teacher embeddings, as in SEED [7].

    Teacher and student embeddings are each compared with the same queue of (past) teacher
    embeddings; the student's softmax over these similarities is pulled towards the teacher's
    with ``KL(p_teacher || p_student)``. All vectors are L2-normalised here. SEED also appends
    the current teacher batch to the queue before the loss; do so in ``queue`` if wanted.

    - [7]: SEED, 2021, https://arxiv.org/abs/2101.04731

    Args:
        student_emb: (B, D) student embeddings (gradient flows).
        teacher_emb: (B, D) teacher embeddings (detached here).
        queue: (Q, D) teacher embeddings of earlier batches (detached here).
        temperature: Softmax temperature for both distributions (SEED: 0.07 for the student,
            1e-4 for the teacher; one shared value here).

    Returns:
        Scalar KL divergence averaged over the batch.
    """
    _check_pair(student_emb, teacher_emb, "student_emb, teacher_emb")
    if queue.dim() != 2 or queue.shape[1] != student_emb.shape[1] or queue.shape[0] == 0:
        raise ValueError(
            f"queue must be (Q, {student_emb.shape[1]}) with Q >= 1, got {tuple(queue.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    queue = F.normalize(queue.detach(), dim=1)
    s_logits = F.normalize(student_emb, dim=1) @ queue.T / temperature  # (B, Q)
    t_logits = F.normalize(teacher_emb.detach(), dim=1) @ queue.T / temperature
    return F.kl_div(
        F.log_softmax(s_logits, dim=1), F.log_softmax(t_logits, dim=1), reduction="batchmean",
        log_target=True,
    )  # fmt: skip

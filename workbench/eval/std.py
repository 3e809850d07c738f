"""Collapse signals: std of L2-normalised representations and their effective rank (RankMe)."""

from __future__ import annotations

import numpy as np
import torch


def std_of_l2_normalized(z: torch.Tensor | np.ndarray) -> float:
    """Mean over dimensions of the per-dimension std of L2-normalised rows.

    For rows spread uniformly on the unit sphere the value is about ``1 / sqrt(D)``; a collapsed
    representation (every row the same direction) gives about 0. This is the monitor used by
    SimSiam [0] and Lightly's ``std_of_l2_normalized``.

    - [0]: SimSiam, 2021, https://arxiv.org/abs/2011.10566

    Args:
        z: Representations, shape (N, D) with N >= 2 (extra trailing dims are flattened).

    Returns:
        The mean per-dimension standard deviation (unbiased) as a Python float.

    Raises:
        ValueError: Fewer than two rows, or not at least 2-D.
    """
    t = torch.as_tensor(z).detach()
    if t.ndim < 2:
        raise ValueError(f"std_of_l2_normalized needs (N, D) features, got shape {tuple(t.shape)}.")
    t = t.flatten(1).float()
    if t.shape[0] < 2:
        raise ValueError(f"std_of_l2_normalized needs at least 2 rows, got {t.shape[0]}.")
    return float(std_of_l2_normalized_tensor(t))


def std_of_l2_normalized_tensor(z: torch.Tensor) -> torch.Tensor:
    """:func:`std_of_l2_normalized` as a 0-dim tensor on ``z``'s device (no host sync).

    Args:
        z: Features (N, D, ...) with N >= 2; flattened to (N, D') and computed in float32.
    """
    t = torch.nn.functional.normalize(z.detach().flatten(1).float(), dim=1)
    return t.std(dim=0).mean()


def rankme(z: torch.Tensor | np.ndarray, eps: float = 1e-7) -> float:
    """Effective rank of a set of representations: RankMe of Garrido et al. [1].

    ``exp(entropy(p))`` with ``p = s / sum(s)`` over the singular values ``s`` of the (N, D)
    matrix (rows as given, not centred, as in the paper). It counts how many directions the
    representations really use: about 1 when every row points one way (collapse), up to
    ``min(N, D)`` when they fill the space evenly. It tracks downstream accuracy without labels.

    - [1]: RankMe, Garrido et al., ICML 2023, https://arxiv.org/abs/2210.02885

    Args:
        z: Representations, shape (N, D) with N >= 2 (extra trailing dims are flattened).
        eps: Added to ``p`` before the log (the paper's epsilon).

    Returns:
        The effective rank, in [1, min(N, D)], as a Python float (0.0 for an all-zero matrix).

    Raises:
        ValueError: Fewer than two rows, or not at least 2-D.
    """
    t = torch.as_tensor(z).detach()
    if t.ndim < 2 or t.shape[0] < 2:
        raise ValueError(f"rankme needs (N, D) features with N >= 2, got shape {tuple(t.shape)}.")
    s = torch.linalg.svdvals(t.flatten(1).double())
    total = s.sum()
    if not torch.isfinite(total) or total <= 0:
        return 0.0
    p = s / total + eps
    return float(torch.exp(-(p * p.log()).sum()))

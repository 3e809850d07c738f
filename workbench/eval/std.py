"""The collapse monitor: standard deviation of L2-normalised representations."""

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

"""Train/validation splits that keep class proportions."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray | None, n: int | None = None, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and validation, keeping each class's share.

    Args:
        labels: Integer labels (N,), or None for an unstratified random split of ``n`` items.
        n: Number of items when ``labels`` is None.
        val_fraction: Share of each class held out, in [0, 1).
        seed: Random seed; the split is a deterministic function of it.

    Returns:
        (train_indices, val_indices), both sorted int64 arrays.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1).")
    rng = np.random.default_rng(seed)
    if labels is None:
        if n is None:
            raise ValueError("stratified_split needs `labels` or `n`.")
        perm = rng.permutation(n)
        k = int(round(n * val_fraction))
        return np.sort(perm[k:]), np.sort(perm[:k])
    labels = np.asarray(labels)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * val_fraction))
        if val_fraction > 0 and len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))

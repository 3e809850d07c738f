"""k-nearest-neighbour evaluation and search on cosine similarity.

The weighted kNN classifier follows the InstDisc [0] convention used by Lightly and solo-learn:
features are L2-normalised, the ``k`` most similar training features vote for their label with
weight ``exp(sim / temperature)``. Lightly's benchmarks use k=200, t=0.1; solo-learn k=20, t=0.07.

- [0]: Unsupervised Feature Learning via Non-Parametric Instance Discrimination, 2018,
  https://arxiv.org/abs/1805.01978
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = torch.Tensor | np.ndarray

# Rows of the (chunk, N_train) similarity matrix computed at once: 512 x 10k floats is 20 MB.
_CHUNK = 512


def _as_features(x: ArrayLike | Sequence[Sequence[float]], name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(t.shape)}.")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 rows); embed some images first.")
    return t.float()


def _as_labels(y: ArrayLike | Sequence[int], n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).detach()
    t = t.reshape(-1).long()
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries but the features have {n} rows.")
    if t.numel() and int(t.min()) < 0:
        raise ValueError(
            f"{name} contains negative labels (e.g. -1 for unlabelled images); kNN accuracy "
            f"needs a class label for every image."
        )
    return t


def knn_predict(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Class scores of a similarity-weighted kNN vote (cosine similarity).

    Args:
        train_feats: Feature bank, shape (N_train, D); torch or numpy, any device.
        train_labels: Integer labels of the bank, shape (N_train,), values in [0, C).
        test_feats: Queries, shape (N_test, D).
        k: Neighbours per query; clipped to N_train.
        temperature: Softmax temperature of the vote weights ``exp(sim / t)``.
        num_classes: C; default ``max(train_labels) + 1``.

    Returns:
        Scores, shape (N_test, C), float32 on the device of ``train_feats``; the predicted class is
        ``scores.argmax(1)``.

    Raises:
        ValueError: Shapes that do not match, empty inputs, negative labels, k < 1 or
            temperature <= 0.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    bank = _as_features(train_feats, "train_feats")
    device = bank.device
    queries = _as_features(test_feats, "test_feats").to(device)
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(
            f"test_feats have {queries.shape[1]} dims but train_feats have {bank.shape[1]}."
        )
    labels = _as_labels(train_labels, bank.shape[0], "train_labels").to(device)
    c = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if c < int(labels.max()) + 1:
        raise ValueError(
            f"num_classes={num_classes} but train_labels go up to {int(labels.max())}."
        )
    return _vote(bank, labels, queries, min(int(k), bank.shape[0]), temperature, c, False)


def _vote(
    bank: torch.Tensor,
    labels: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    temperature: float,
    num_classes: int,
    exclude_self: bool,
) -> torch.Tensor:
    """Weighted kNN scores (N_test, C); ``exclude_self``: query i is bank row i (leave-one-out)."""
    bank_t = F.normalize(bank, dim=1).T.contiguous()  # (D, N_train)
    queries = F.normalize(queries, dim=1)
    scores = torch.zeros(queries.shape[0], num_classes, device=bank.device)
    for start in range(0, queries.shape[0], _CHUNK):
        sim = queries[start : start + _CHUNK] @ bank_t  # (B, N_train)
        if exclude_self:
            rows = torch.arange(sim.shape[0], device=sim.device)
            sim[rows, rows + start] = -float("inf")
        sim_w, sim_i = sim.topk(k, dim=1)  # (B, k)
        weights = (sim_w / temperature).exp()
        scores[start : start + _CHUNK].scatter_add_(1, labels[sim_i], weights)
    return scores


def _scores(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    test_labels: ArrayLike,
    k: int,
    temperature: float,
    num_classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Validated kNN class scores (N_test, C) on the CPU, the true labels and C."""
    queries = _as_features(test_feats, "test_feats")
    y = _as_labels(test_labels, queries.shape[0], "test_labels")
    ytr = _as_labels(
        train_labels, _as_features(train_feats, "train_feats").shape[0], "train_labels"
    )
    c = max(int(ytr.max()), int(y.max())) + 1 if num_classes is None else int(num_classes)
    scores = knn_predict(train_feats, ytr, queries, k, temperature, num_classes=c)
    return scores.cpu(), y.cpu(), c


def knn_accuracy(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    test_labels: ArrayLike,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    """Top-1 accuracy of the weighted kNN classifier (see ``knn_predict``).

    Args:
        train_feats: Feature bank, shape (N_train, D).
        train_labels: Labels of the bank, shape (N_train,).
        test_feats: Queries, shape (N_test, D).
        test_labels: True labels of the queries, shape (N_test,).
        k: Neighbours per query (clipped to N_train).
        temperature: Vote temperature.

    Returns:
        Fraction of queries whose highest-scoring class is their label, in [0, 1].
    """
    scores, y, _ = _scores(train_feats, train_labels, test_feats, test_labels, k, temperature)
    return float((scores.argmax(dim=1) == y).float().mean())


def knn_report(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    test_labels: ArrayLike,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Top-1 and top-5 accuracy, per-class accuracy and confusion matrix of the kNN classifier.

    Args:
        train_feats: Feature bank, shape (N_train, D).
        train_labels: Labels of the bank, shape (N_train,).
        test_feats: Queries, shape (N_test, D).
        test_labels: True labels of the queries, shape (N_test,).
        k: Neighbours per query (clipped to N_train).
        temperature: Vote temperature.
        num_classes: C; default the largest label of either set plus one.

    Returns:
        ``{"top1": float, "top5": float, "per_class": np.ndarray (C,) float (NaN for a class
        absent from the test set), "confusion": np.ndarray (C, C) int64 (rows: true,
        columns: predicted), "predictions": np.ndarray (N_test,) int64}``.
    """
    scores, y, c = _scores(
        train_feats, train_labels, test_feats, test_labels, k, temperature, num_classes
    )
    return _report(scores, y, c)


def knn_leave_one_out(
    features: ArrayLike,
    labels: ArrayLike,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Leave-one-out kNN report: every image is classified by all the others (no split needed).

    Args:
        features: Shape (N, D), N >= 2.
        labels: Shape (N,), integers >= 0.
        k: Neighbours per query, clipped to N - 1 (the image itself never votes).
        temperature: Vote temperature.
        num_classes: C; default ``max(labels) + 1``.

    Returns:
        The same dict as :func:`knn_report`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    feats = _as_features(features, "features")
    if feats.shape[0] < 2:
        raise ValueError(f"Leave-one-out kNN needs at least 2 images, got {feats.shape[0]}.")
    y = _as_labels(labels, feats.shape[0], "labels").to(feats.device)
    c = int(y.max()) + 1 if num_classes is None else int(num_classes)
    scores = _vote(feats, y, feats, min(int(k), feats.shape[0] - 1), temperature, c, True)
    return _report(scores.cpu(), y.cpu(), c)


def _report(scores: torch.Tensor, y: torch.Tensor, c: int) -> dict[str, Any]:
    top = scores.topk(min(5, c), dim=1).indices  # (N_test, <=5)
    pred = top[:, 0]
    from workbench.eval.probes import confusion_matrix, per_class_accuracy

    cm = confusion_matrix(y.numpy(), pred.numpy(), c)
    return {
        "top1": float((pred == y).float().mean()),
        "top5": float((top == y[:, None]).any(dim=1).float().mean()),
        "per_class": per_class_accuracy(cm),
        "confusion": cm,
        "predictions": pred.numpy().astype(np.int64),
    }


def nearest_neighbors(
    features: ArrayLike,
    query: int | Sequence[int] | np.ndarray | torch.Tensor,
    k: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """The k most cosine-similar rows of ``features`` to a query.

    Args:
        features: Shape (N, D).
        query: An int index into ``features``, a sequence/1-D integer array of indices, a feature
            vector (D,) or a matrix of feature vectors (M, D).
        k: Neighbours per query (clipped to N). For an indexed query the query itself is
            included and comes first, at distance 0.

    Returns:
        ``(indices, distances)``: int64 and float32 arrays of shape (k,) for a single query or
        (M, k) for several, sorted by increasing cosine distance ``1 - cos_sim``.

    Raises:
        ValueError: An index out of range, a vector of the wrong dimension or k < 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    feats = F.normalize(_as_features(features, "features"), dim=1)  # (N, D)
    n, d = feats.shape
    k = min(int(k), n)
    q = query if isinstance(query, torch.Tensor) else np.asarray(query)
    q_t = torch.as_tensor(q)
    if q_t.numel() == 0:
        raise ValueError("nearest_neighbors got an empty query (no index, no vector).")
    indexed = not q_t.is_floating_point()
    single = q_t.ndim == 0 if indexed else q_t.ndim == 1
    if indexed:
        idx = q_t.reshape(-1).long()
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.numel():
            raise ValueError(f"Query index {int(bad[0])} is out of range for {n} features.")
        idx = idx % n
        qf = feats[idx.to(feats.device)]
    else:
        qf = q_t.float().reshape(-1, q_t.shape[-1]).to(feats.device)
        if qf.shape[1] != d:
            raise ValueError(f"Query vectors have {qf.shape[1]} dims but the features have {d}.")
        qf = F.normalize(qf, dim=1)
    sim = qf @ feats.T  # (M, N)
    if indexed:
        # Force the query first even when exact duplicates exist elsewhere in the set.
        sim[torch.arange(len(idx)), idx] = float("inf")
    top_s, top_i = sim.topk(k, dim=1)
    dist = (1.0 - top_s).clamp_min(0.0)
    if indexed:
        dist[:, 0] = 0.0
    indices = top_i.cpu().numpy().astype(np.int64)
    distances = dist.cpu().numpy().astype(np.float32)
    if single:
        return indices[0], distances[0]
    return indices, distances

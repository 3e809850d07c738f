"""wb.project: PCA / UMAP / t-SNE maps that keep clusters apart, cached, with clear errors."""

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.eval.projection import clear_projection_cache, pca_reduce


def _clusters(n_per: int = 60, k: int = 4, d: int = 64, seed: int = 0):
    """k tight clusters around random directions (cosine geometry, like SSL features)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    labels = np.repeat(np.arange(k), n_per)
    x = centres[labels] + 0.15 * rng.normal(size=(k * n_per, d))
    return x.astype(np.float32), labels


def _nn_label_agreement(xy: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose nearest other point in the map has the same label."""
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_maps_keep_clusters_apart(method: str) -> None:
    x, y = _clusters()
    xy = wb.project(x, method=method)
    assert xy.shape == (len(x), 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    assert _nn_label_agreement(xy, y) > 0.95


def test_pca_is_the_top_principal_directions() -> None:
    x, _ = _clusters(d=16)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    xy = wb.project(x, method="pca")  # cosine: rows normalised first
    c = xn - xn.mean(0)
    top = np.linalg.svd(c, full_matrices=False)[2][:2]  # (2, D) right singular vectors
    np.testing.assert_allclose(np.abs(xy), np.abs(c @ top.T), rtol=1e-3, atol=1e-4)
    euclid = wb.project(x, method="pca", metric="euclidean")
    assert not np.allclose(np.abs(euclid), np.abs(xy))


def test_cached_deterministic_and_copies() -> None:
    clear_projection_cache()
    x, _ = _clusters()
    a = wb.project(torch.from_numpy(x), method="tsne", seed=3)
    a[:] = 0  # the caller's array, not the cache's
    b = wb.project(x, method="tsne", seed=3)
    assert np.abs(b).sum() > 0
    clear_projection_cache()
    np.testing.assert_array_equal(wb.project(x, method="tsne", seed=3), b)


def test_small_and_degenerate_inputs() -> None:
    assert wb.project(np.ones((10, 8)), method="umap").shape == (10, 2)  # constant: PCA zeros
    assert wb.project(np.eye(3, 5), method="umap").shape == (3, 2)  # < 4 points: PCA
    out = pca_reduce(np.random.default_rng(0).normal(size=(5, 1)), 2)
    assert out.shape == (5, 2) and np.all(out[:, 1] == 0)  # beyond min(N, D): zeros


@pytest.mark.parametrize(
    "features,kw,match",
    [
        (np.zeros((0, 4)), {}, "empty features"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), {}, "NaN or inf"),
        (np.zeros(5), {}, r"shape \(N, D\)"),
        (np.ones((6, 3)), {"method": "umapp"}, "Valid methods"),
        (np.ones((6, 3)), {"metric": "l1"}, "Valid metrics"),
        (np.ones((6, 3)), {"method": "pca", "n_neighbors": 5}, "PCA takes no extra"),
        (np.ones((6, 3)), {"n_components": 0}, "n_components must be >= 1"),
    ],
)
def test_bad_inputs_say_what_is_wrong(features, kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        wb.project(features, **kw)

"""2-D maps of features: UMAP, PCA and t-SNE, cached, with UMAP tuned for interactive use.

umap-learn costs >10 s to import and >10 s for its first fit on a small CPU (numba JIT), so it
is imported only here, inside functions, and :func:`warm_up_umap` pays both in a background
thread while the user looks at something else.

Why our UMAP is faster than ``umap.UMAP()`` with its defaults, at a similar map quality:

- rows are L2-normalised (``metric="cosine"``, the geometry SSL losses train) and reduced to at
  most 50 dimensions by randomized PCA first;
- the k-nearest-neighbour graph is computed exactly with one chunked matrix product in torch
  and handed to UMAP (``precomputed_knn``), skipping NN-descent and its JIT compilation;
- the layout is initialised from PCA instead of a spectral embedding of the graph;
- the number of optimisation epochs shrinks with N (UMAP's default is 500 below 10,000 points).

- [0]: UMAP, 2018, https://arxiv.org/abs/1802.03426
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

METHODS: dict[str, str] = {
    "umap": "UMAP (umap-learn): local neighbourhoods and clusters; seconds to fit",
    "pca": "PCA: linear, instant, global directions of largest variance",
    "tsne": "t-SNE (scikit-learn): local neighbourhoods; slow above a few thousand points",
}
METRICS = ("cosine", "euclidean")
MAX_PCA_DIMS = 50
_CACHE_SIZE = 32

_cache: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()
_warm_lock = threading.Lock()
_warm_thread: threading.Thread | None = None


def clear_projection_cache() -> None:
    """Forget every cached projection."""
    with _cache_lock:
        _cache.clear()


def _key(x: np.ndarray, method: str, params: dict[str, Any]) -> tuple[Any, ...]:
    digest = hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).hexdigest()
    return (digest, x.shape, method, tuple(sorted((k, repr(v)) for k, v in params.items())))


def _as_features(features: Any) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().float().cpu().numpy()
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"project needs features of shape (N, D), got {x.shape}.")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"project got empty features of shape {x.shape}; embed some images first.")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(
            f"{bad} of {x.shape[0]} feature rows contain NaN or inf (a diverged model?); "
            f"they cannot be projected."
        )
    return x


def pca_reduce(x: np.ndarray, n_components: int, seed: int = 0) -> np.ndarray:
    """Project rows onto their top principal components, with scikit-learn's choice of solver.

    Its ``"auto"`` solver takes the covariance eigendecomposition for tall data (N >= 10 D,
    D <= 1000: embeddings): 1.65x faster than randomized SVD on 10,000 x 512 here.

    Args:
        x: Features (N, D).
        n_components: Output dimension; when it exceeds min(N, D) the extra columns are zero.
        seed: Seed of the randomized solver.

    Returns:
        float32 array (N, n_components).
    """
    n, d = x.shape
    k = min(n_components, n, d)
    out = np.zeros((n, n_components), dtype=np.float32)
    if n < 2 or k < 1:
        return out
    from sklearn.decomposition import PCA

    out[:, :k] = PCA(n_components=k, random_state=seed).fit_transform(x)
    return out


def exact_knn(x: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k nearest neighbours of every row (itself included, first).

    Args:
        x: Points (N, D), D small (after PCA).
        k: Neighbours per row, including the row itself.
        chunk: Rows per block of the distance matrix.

    Returns:
        ``(indices int64 (N, k), distances float32 (N, k))``, sorted by distance.
    """
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    sq = (t * t).sum(1)  # (N,)
    idx_out, dist_out = [], []
    for s in range(0, t.shape[0], chunk):
        q = t[s : s + chunk]
        d2 = sq[s : s + chunk, None] - 2.0 * (q @ t.T) + sq[None, :]  # (B, N)
        d2[torch.arange(q.shape[0]), torch.arange(s, s + q.shape[0])] = -1.0  # self first
        v, i = d2.topk(k, dim=1, largest=False)
        idx_out.append(i)
        dist_out.append(v.clamp_min(0).sqrt())
    return torch.cat(idx_out).numpy().astype(np.int64), torch.cat(dist_out).numpy()


def umap_epochs(n: int) -> int:
    """Optimisation epochs for n points: fewer for larger maps (each epoch costs O(n))."""
    if n <= 2_000:
        return 200
    if n <= 10_000:
        return int(round(200 - 100 * (n - 2_000) / 8_000))
    return 100


def _umap(x: np.ndarray, n_components: int, seed: int | None, kw: dict[str, Any]) -> np.ndarray:
    import umap

    n = x.shape[0]
    n_neighbors = int(kw.pop("n_neighbors", 15))
    n_neighbors = max(2, min(n_neighbors, n - 1))
    params: dict[str, Any] = {
        "n_neighbors": n_neighbors,
        "n_components": n_components,
        "min_dist": 0.1,
        "n_epochs": umap_epochs(n),
        "init": "pca",
        "low_memory": False,
        # A seed makes umap-learn run single-threaded; no seed uses every core.
        "random_state": seed,
        "n_jobs": 1 if seed is not None else -1,
    }
    params.update(kw)
    if "precomputed_knn" not in params and params.get("metric", "euclidean") == "euclidean":
        idx, dist = exact_knn(x, n_neighbors)
        params["precomputed_knn"] = (idx, dist)
    try:
        reducer = umap.UMAP(**params)
    except TypeError as e:
        raise ValueError(f"Bad UMAP argument: {e}. See umap.UMAP's documentation.") from e
    with warnings.catch_warnings():
        # "precomputed_knn[2] is not an NNDescent object": we never call transform().
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*is not an NNDescent object.*")
        return np.asarray(reducer.fit_transform(x), dtype=np.float32)


def _tsne(x: np.ndarray, n_components: int, seed: int | None, kw: dict[str, Any]) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = x.shape[0]
    params: dict[str, Any] = {
        "n_components": n_components,
        "perplexity": float(min(30.0, max(1.0, (n - 1) / 3))),
        "init": "pca",
        "random_state": seed,
    }
    params.update(kw)
    try:
        tsne = TSNE(**params)
    except TypeError as e:
        raise ValueError(f"Bad t-SNE argument: {e}. See sklearn.manifold.TSNE.") from e
    return np.asarray(tsne.fit_transform(x), dtype=np.float32)


def project(
    features: np.ndarray | torch.Tensor,
    method: str = "umap",
    n_components: int = 2,
    seed: int | None = 0,
    metric: str = "cosine",
    **kw: Any,
) -> np.ndarray:
    """A low-dimensional map of features (cached per features, method and parameters).

    Args:
        features: Shape (N, D); numpy or torch.
        method: ``"umap"`` | ``"pca"`` | ``"tsne"``.
        n_components: Output dimension (2 for maps).
        seed: Random seed; ``None`` lets UMAP use every core (not bit-reproducible).
        metric: ``"cosine"`` (rows L2-normalised first; the geometry of SSL losses and of the
            kNN evaluation) or ``"euclidean"`` (features as they are).
        **kw: Passed to ``umap.UMAP`` (e.g. ``n_neighbors=30, min_dist=0.3, n_epochs=500``),
            ``sklearn.manifold.TSNE`` (``perplexity``) or ignored keys raise for PCA.

    Returns:
        float32 array (N, n_components). Fewer than 4 points, or constant features, fall back to
        PCA (zeros where there is no variance).

    Raises:
        ValueError: Unknown method or metric, empty or non-finite features, bad keyword arguments.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown projection method {method!r}. Valid methods: {sorted(METHODS)}")
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}. Valid metrics: {list(METRICS)}")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}.")
    if method == "pca" and kw:
        raise ValueError(f"PCA takes no extra arguments, got {sorted(kw)}.")
    x = _as_features(features)
    key = _key(x, method, dict(kw, n_components=n_components, seed=seed, metric=metric))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key].copy()
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    n, d = x.shape
    degenerate = n < 4 or float(x.std(axis=0).max()) == 0.0
    if method == "pca" or degenerate:
        out = pca_reduce(x, n_components, seed or 0)
    else:
        if d > MAX_PCA_DIMS:
            x = pca_reduce(x, MAX_PCA_DIMS, seed or 0)
        fit = _umap if method == "umap" else _tsne
        out = fit(x, n_components, seed, dict(kw))
    out = np.ascontiguousarray(out, dtype=np.float32)
    with _cache_lock:
        _cache[key] = out
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return out.copy()


def _warm_up() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    x[:32] += 4.0
    project(x, method="umap", seed=0)
    project(x, method="umap", seed=None)


def warm_up_umap(wait: bool = False) -> threading.Thread:
    """Import umap-learn and compile its numba code in a background thread.

    Safe to call any number of times: the work is started once and the same thread returned.

    Args:
        wait: Block until the warm-up has finished.

    Returns:
        The (daemon) warm-up thread.
    """
    global _warm_thread
    with _warm_lock:
        if _warm_thread is None:
            _warm_thread = threading.Thread(target=_warm_up, name="umap-warm-up", daemon=True)
            _warm_thread.start()
        thread = _warm_thread
    if wait:
        thread.join()
    return thread

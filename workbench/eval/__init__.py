"""Evaluation of representations: embed, kNN, representation std, projections, probes."""

from workbench._lazy import lazy_getattr

_EXPORTS = {
    "Embeddings": "embed",
    "embed": "embed",
    "knn_predict": "knn",
    "knn_accuracy": "knn",
    "nearest_neighbors": "knn",
    "std_of_l2_normalized": "std",
    "project": "projection",
    "linear_probe": "probes",
    "confusion_matrix": "probes",
    "invariance_probe": "probes",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)

"""Evaluation of representations: embed, kNN, collapse signals, projections, probes."""

from workbench._lazy import lazy_getattr

_EXPORTS = {
    "Embeddings": "embedding",
    "embed": "embedding",
    "eval_transform": "embedding",
    "random_init_like": "embedding",
    "knn_predict": "knn",
    "knn_accuracy": "knn",
    "knn_report": "knn",
    "knn_leave_one_out": "knn",
    "nearest_neighbors": "knn",
    "std_of_l2_normalized": "std",
    "rankme": "std",
    "project": "projection",
    "warm_up_umap": "projection",
    "clear_projection_cache": "projection",
    "linear_probe": "probes",
    "confusion_matrix": "probes",
    "per_class_accuracy": "probes",
    "invariance_probe": "probes",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)

"""Matplotlib figures: arrays or records in, Figure out; no fitting and no I/O here."""

from workbench._lazy import lazy_getattr

_EXPORTS = {
    "augmentation_grid": "augment",
    "augmentation_png": "augment",
    "training_curves": "training",
    "figure_line_data": "training",
    "embedding_map": "embeddings",
    "compared_maps": "embeddings",
    "neighbor_grid": "embeddings",
    "confusion_matrix_plot": "embeddings",
    "invariance_bars": "embeddings",
    "figure_to_png": "common",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)

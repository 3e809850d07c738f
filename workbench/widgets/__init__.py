"""ipywidgets views, thin wrappers over functions tested headless."""

from workbench._lazy import lazy_getattr

_EXPORTS = {
    "AugmentationExplorer": "augmentation",
    "TrainingLauncher": "training",
    "EmbeddingExplorer": "embeddings",
    "Workbench": "app",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)

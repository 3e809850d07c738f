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


def button_layout() -> object:
    """A button as wide as its label: ipywidgets' fixed 148 px cut "Open embeddings" short."""
    import ipywidgets

    return ipywidgets.Layout(width="auto", min_width="max-content")

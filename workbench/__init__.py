"""SSL Workbench: see and steer self-supervised learning on images.

The public API is re-exported lazily so that ``import workbench`` stays fast: torch, Lightning,
umap-learn, scikit-learn, matplotlib and ipywidgets are only imported by the function that needs
them.

Example:
    >>> import workbench as wb
    >>> ds = wb.load_dataset("digits")
    >>> run = wb.train(ds, method="simclr", epochs=5)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_getattr

__version__ = "0.1.0"

# name -> module that defines it. One table, so the public surface is readable in one place.
_EXPORTS: dict[str, str] = {
    # data
    "load_dataset": "workbench.data",
    "list_datasets": "workbench.data",
    "ImageDataset": "workbench.data",
    "stratified_split": "workbench.data",
    # augmentations
    "recipe": "workbench.augment",
    "make_transform": "workbench.augment",
    "MultiView": "workbench.augment",
    "Recipe": "workbench.augment",
    # backbones
    "get_backbone": "workbench.nn.backbones",
    "list_backbones": "workbench.nn.backbones",
    # methods
    "list_methods": "workbench.methods",
    "describe_method": "workbench.methods",
    # runs and training
    "load_run": "workbench.runs",
    "list_runs": "workbench.runs",
    "Run": "workbench.runs",
    "train": "workbench.training",
    # evaluation
    "embed": "workbench.eval",
    "Embeddings": "workbench.eval",
    "knn_accuracy": "workbench.eval",
    "knn_predict": "workbench.eval",
    "nearest_neighbors": "workbench.eval",
    "std_of_l2_normalized": "workbench.eval",
    "rankme": "workbench.eval",
    "project": "workbench.eval",
    "linear_probe": "workbench.eval",
    "invariance_probe": "workbench.eval",
    # widgets
    "AugmentationExplorer": "workbench.widgets",
    "TrainingLauncher": "workbench.widgets",
    "EmbeddingExplorer": "workbench.widgets",
    "Workbench": "workbench.widgets",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__ = lazy_getattr(__name__, {k: v.removeprefix("workbench.") for k, v in _EXPORTS.items()})


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from workbench.augment import MultiView, Recipe, make_transform, recipe
    from workbench.data import ImageDataset, list_datasets, load_dataset, stratified_split
    from workbench.eval import (
        Embeddings,
        embed,
        invariance_probe,
        knn_accuracy,
        knn_predict,
        linear_probe,
        nearest_neighbors,
        project,
        rankme,
        std_of_l2_normalized,
    )
    from workbench.methods import describe_method, list_methods
    from workbench.nn.backbones import get_backbone, list_backbones
    from workbench.runs import Run, list_runs, load_run
    from workbench.training import train
    from workbench.widgets import (
        AugmentationExplorer,
        EmbeddingExplorer,
        TrainingLauncher,
        Workbench,
    )

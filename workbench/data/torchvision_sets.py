"""torchvision datasets by name (``"cifar10:<root>"``), for users who have them on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from workbench.data.dataset import ImageDataset
from workbench.data.images import to_rgb

# name -> (torchvision class name, how the split argument is spelled)
TORCHVISION_SETS: dict[str, tuple[str, str]] = {
    "cifar10": ("CIFAR10", "train"),
    "cifar100": ("CIFAR100", "train"),
    "mnist": ("MNIST", "train"),
    "fashionmnist": ("FashionMNIST", "train"),
    "kmnist": ("KMNIST", "train"),
    "svhn": ("SVHN", "split"),
    "stl10": ("STL10", "split"),
    "flowers102": ("Flowers102", "split"),
    "food101": ("Food101", "split"),
}


def from_torchvision(
    name: str,
    root: str | Path,
    *,
    train: bool = True,
    split: str | None = None,
    download: bool = False,
    **kwargs: Any,
) -> ImageDataset:
    """Wrap a torchvision dataset stored under ``root``.

    Args:
        name: Key of TORCHVISION_SETS (e.g. ``"cifar10"``).
        root: Folder holding the data in torchvision's layout.
        train: Train split (for datasets with a boolean split).
        split: Split name for datasets that use one (``"train"``, ``"test"``, ``"unlabeled"``).
        download: Passed to torchvision (needs network access).
        **kwargs: Passed to the torchvision class.
    """
    import torchvision.datasets as tvd

    if name not in TORCHVISION_SETS:
        raise ValueError(f"Unknown torchvision dataset {name!r}. Valid: {sorted(TORCHVISION_SETS)}")
    cls_name, split_kind = TORCHVISION_SETS[name]
    cls = getattr(tvd, cls_name)
    split_kw: dict[str, Any] = (
        {"train": train}
        if split_kind == "train"
        else {"split": split or ("train" if train else "test")}
    )
    root = Path(root).expanduser()
    try:
        base = cls(root=str(root), download=download, **split_kw, **kwargs)
    except RuntimeError as e:  # torchvision's "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"{cls_name} was not found under {str(root)!r} ({e}). Put the dataset there in "
            f"torchvision's layout, or pass download=True on a machine with network access."
        ) from e
    targets = getattr(base, "targets", None)
    if targets is None:
        targets = getattr(base, "labels", None)
    if targets is None:
        targets = getattr(base, "_labels", None)
    labels = None if targets is None else np.asarray(targets, dtype=np.int64)
    if labels is not None and (labels < 0).all():
        labels = None  # e.g. STL10 "unlabeled"
    classes = list(getattr(base, "classes", []) or [])

    def load(i: int) -> Image.Image:
        img = base[i][0]
        return to_rgb(img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img)))

    return ImageDataset(
        f"{name}:{root}",
        loader=load,
        length=len(base),
        labels=labels,
        class_names=classes,
        meta={"torchvision": cls_name},
    )

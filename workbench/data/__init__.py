"""Datasets: built-ins (digits, shapes, photos), image folders, path lists, torchvision sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workbench.data.dataset import ImageDataset, SkippedFile, TransformedImages
from workbench.data.images import IMAGE_EXTENSIONS, ImageReadError, read_image, to_rgb
from workbench.data.split import stratified_split

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "ImageReadError",
    "SkippedFile",
    "TransformedImages",
    "list_datasets",
    "load_dataset",
    "read_image",
    "stratified_split",
    "to_rgb",
]


def _builtins() -> dict[str, tuple[Callable[..., ImageDataset], str]]:
    from workbench.data import builtin

    return {
        "digits": (builtin.digits, "1,797 real 8x8 handwritten digits (scikit-learn), 10 classes"),
        "shapes": (builtin.shapes, "procedural shapes; label_by='shape' or 'color'; seeded"),
        "photos": (builtin.photos, "scikit-learn's two sample photographs, unlabelled"),
    }


BUILTIN_NAMES = ("digits", "shapes", "photos")


def list_datasets() -> dict[str, str]:
    """Built-in dataset names with a one-line description, and torchvision ``name:root`` specs."""
    from workbench.data.torchvision_sets import TORCHVISION_SETS

    out = {name: desc for name, (_, desc) in _builtins().items()}
    for name, (cls, _) in TORCHVISION_SETS.items():
        out[f"{name}:<root>"] = f"torchvision.datasets.{cls} stored under <root>"
    return out


def load_dataset(
    spec: str | Path | Sequence[str | Path] | ImageDataset, **kwargs: Any
) -> ImageDataset:
    """Load images from a built-in name, a folder, a list of files or a torchvision dataset.

    Args:
        spec: ``"digits"`` | ``"shapes"`` | ``"photos"`` | a folder | a list of image paths |
            ``"cifar10:<root>"`` (any name of ``list_datasets()``) | an ImageDataset (returned).
        **kwargs: Passed to the loader, e.g. ``image_size=64`` for digits and shapes,
            ``label_by="color"`` and ``n=2000`` for shapes, ``max_side`` for folders,
            ``download=True`` / ``train=False`` for torchvision sets.

    Returns:
        ImageDataset; ``ds[i]`` is ``(PIL RGB image, label or -1)``.

    Raises:
        FileNotFoundError: A folder or file that does not exist.
        ValueError: An unknown name, or a folder without readable images.
    """
    from workbench.data import folder

    if isinstance(spec, ImageDataset):
        return spec
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError("load_dataset got an empty list of paths.")
        return folder.from_paths(list(spec), **kwargs)
    if not isinstance(spec, (str, Path)):
        raise ValueError(
            f"load_dataset cannot read a {type(spec).__name__}. Pass a dataset name, a folder, "
            f"a list of image paths or an ImageDataset."
        )
    text = str(spec)
    builtins = _builtins()
    if text in builtins:
        return builtins[text][0](**kwargs)
    if ":" in text and not Path(text).exists():
        from workbench.data.torchvision_sets import TORCHVISION_SETS, from_torchvision

        name, root = text.split(":", 1)
        if name.lower() in TORCHVISION_SETS:
            return from_torchvision(name.lower(), root, **kwargs)
    path = Path(text).expanduser()
    if path.is_dir():
        return folder.from_folder(path, **kwargs)
    if path.is_file():
        return folder.from_paths([path], name=str(path), **kwargs)
    looks_like_path = any(c in text for c in "/\\.") or text.startswith("~")
    valid = sorted(list_datasets())
    if looks_like_path:
        raise FileNotFoundError(
            f"{text!r} does not exist. Valid dataset names: {valid}, or a folder."
        )
    raise ValueError(f"Unknown dataset {text!r}. Valid names: {valid}, or a folder of images.")

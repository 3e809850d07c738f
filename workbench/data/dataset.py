"""The one dataset type every other layer consumes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class SkippedFile:
    """A file that could not be used, with the reason (shown to the user, never silently lost)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class TransformedImages:
    """An ImageDataset (or some of its items) seen through a per-image transform.

    ``item[i] = transform(image of ds[indices[i]])``. A module-level class holding indices rather
    than a subset (whose loader is a closure), so it unpickles in DataLoader workers under fork,
    spawn and forkserver alike.
    """

    def __init__(
        self, ds: ImageDataset, transform: Callable[[Image.Image], Any],
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> None:  # fmt: skip
        self.ds = ds
        self.transform = transform
        self.indices = None if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.ds) if self.indices is None else len(self.indices)

    def __getitem__(self, i: int) -> Any:
        j = i if self.indices is None else int(self.indices[i])
        return self.transform(self.ds[j][0])


class ImageDataset:
    """A labelled or unlabelled set of RGB images.

    ``ds[i]`` returns ``(PIL.Image in RGB, label)``, the label being ``-1`` for unlabelled data.
    Images are either held decoded in memory (built-ins, cached folders) or read on access through
    ``loader`` (large folders, torchvision datasets).

    Attributes:
        name: Human-readable name of the source (``"digits"``, a folder path, ...).
        labels: Integer labels, shape (N,), or None when unlabelled.
        class_names: Names of the label values, index = label.
        paths: One string per item: file path, or ``"<name>[i]"`` for generated data.
        skipped: Files that could not be read, with reasons.
    """

    def __init__(
        self,
        name: str,
        *,
        images: Sequence[Image.Image] | None = None,
        loader: Callable[[int], Image.Image] | None = None,
        length: int | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        class_names: Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
        skipped: Sequence[SkippedFile] = (),
        meta: dict[str, Any] | None = None,
    ) -> None:
        if (images is None) == (loader is None):
            raise ValueError("ImageDataset needs exactly one of `images` or `loader`.")
        self.name = name
        self._images = list(images) if images is not None else None
        self._loader = loader
        n = len(self._images) if self._images is not None else length
        if n is None:
            raise ValueError("ImageDataset with a `loader` needs `length`.")
        self._n = int(n)
        self.labels: np.ndarray | None = (
            None if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
        )
        if self.labels is not None and len(self.labels) != self._n:
            raise ValueError(f"{len(self.labels)} labels for {self._n} images in {name!r}.")
        self.class_names: list[str] = list(class_names or [])
        self.paths: list[str] = (
            list(paths) if paths is not None else [f"{name}[{i}]" for i in range(self._n)]
        )
        self.skipped: list[SkippedFile] = list(skipped)
        self.meta: dict[str, Any] = dict(meta or {})

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        if not -self._n <= i < self._n:
            raise IndexError(f"index {i} out of range for {self._n} images")
        i = i % self._n
        img = self._images[i] if self._images is not None else self._loader(i)  # type: ignore[misc]
        label = int(self.labels[i]) if self.labels is not None else -1
        return img, label

    @property
    def has_labels(self) -> bool:
        """True when every image has a class label."""
        return self.labels is not None

    @property
    def num_classes(self) -> int:
        """Number of classes (0 when unlabelled)."""
        return 0 if self.labels is None else max(len(self.class_names), int(self.labels.max()) + 1)

    def image(self, i: int) -> Image.Image:
        """The i-th image (RGB)."""
        return self[i][0]

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> ImageDataset:
        """A view on some items (same class names; skipped files carried along)."""
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        return ImageDataset(
            name or f"{self.name}[subset of {len(idx)}]",
            loader=lambda j: self[idx[j]][0],
            length=len(idx),
            labels=None if self.labels is None else self.labels[idx],
            class_names=self.class_names,
            paths=[self.paths[i] for i in idx],
            skipped=self.skipped,
            meta=self.meta,
        )

    def __repr__(self) -> str:
        lab = f"{self.num_classes} classes" if self.has_labels else "unlabelled"
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"ImageDataset({self.name!r}, {self._n} images, {lab}{skipped})"

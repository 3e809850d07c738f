"""Image folders and lists of paths: scanned, decoded once, bad files skipped and listed."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from workbench.data.dataset import ImageDataset, SkippedFile
from workbench.data.images import (
    IMAGE_EXTENSIONS,
    MAX_SIDE_DEFAULT,
    ImageReadError,
    is_image_path,
    read_image,
)

# Folders above this many files are read lazily (decoded on access) instead of cached in memory.
CACHE_LIMIT_FILES = 20_000


def _scan(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return files


def _decode_all(
    paths: Sequence[Path], max_side: int | None, keep: bool
) -> tuple[list[int], list[Image.Image | None], list[SkippedFile]]:
    """Decode every file once (threads: PIL releases the GIL), so bad files surface now."""

    def work(p: Path) -> Image.Image | str:
        try:
            img = read_image(p, max_side=max_side)
        except ImageReadError as e:
            return str(e)
        return img if keep else img.size  # type: ignore[return-value]

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = list(pool.map(work, paths))
    ok, images, skipped = [], [], []
    for i, (p, r) in enumerate(zip(paths, results)):
        if isinstance(r, str):
            skipped.append(SkippedFile(str(p), r))
        else:
            ok.append(i)
            images.append(r if keep else None)
    return ok, images, skipped


def _warn_skipped(source: str, skipped: Sequence[SkippedFile]) -> None:
    if skipped:
        lines = "\n".join(f"  - {s}" for s in skipped[:20])
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        warnings.warn(
            f"{len(skipped)} file(s) in {source} could not be read and were skipped "
            f"(see ds.skipped):\n{lines}{more}",
            stacklevel=3,
        )


def from_paths(
    paths: Sequence[str | Path],
    *,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
    max_side: int | None = MAX_SIDE_DEFAULT,
    cache: bool | None = None,
    non_images: Sequence[SkippedFile] = (),
) -> ImageDataset:
    """Build a dataset from image files; unreadable files are skipped and listed.

    Args:
        paths: Image files.
        labels: Optional label per path.
        class_names: Names of the labels.
        name: Display name.
        max_side: Images are decoded so their longer side is at most this (None: full size).
        cache: Keep decoded images in memory (default: when there are at most 20,000 files).
        non_images: Files already rejected by the caller (e.g. unknown extension), listed too.
    """
    files = [Path(p) for p in paths]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image path(s) do not exist, e.g. {missing[0]!r}. Check the paths."
        )
    keep = len(files) <= CACHE_LIMIT_FILES if cache is None else cache
    ok, images, skipped = _decode_all(files, max_side, keep)
    skipped = list(non_images) + skipped
    name = name or f"{len(files)} files"
    if not ok:
        reasons = "; ".join(str(s) for s in skipped[:5])
        raise ValueError(f"None of the {len(files)} files in {name} could be read: {reasons}")
    _warn_skipped(name, skipped)
    good = [files[i] for i in ok]
    good_labels = None if labels is None else [labels[i] for i in ok]
    common = dict(
        labels=good_labels,
        class_names=class_names,
        paths=[str(p) for p in good],
        skipped=skipped,
        meta={"max_side": max_side},
    )
    if keep:
        return ImageDataset(name, images=[im for im in images if im is not None], **common)  # type: ignore[arg-type]
    return ImageDataset(
        name,
        loader=lambda i: read_image(good[i], max_side=max_side),
        length=len(good),
        **common,  # type: ignore[arg-type]
    )


def from_folder(
    root: str | Path, *, max_side: int | None = MAX_SIDE_DEFAULT, cache: bool | None = None
) -> ImageDataset:
    """Load every image under ``root`` (recursively).

    Labels come from the first-level subfolder names when images live in subfolders; images
    directly in ``root`` are then unlabelled (-1). Without subfolders the dataset is unlabelled.
    Nothing is written into the folder.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"Folder {str(root)!r} does not exist. Check the path.")
    if not root.is_dir():
        raise ValueError(
            f"{str(root)!r} is a file, not a folder; pass a folder or a list of paths."
        )
    files = _scan(root)
    images = [p for p in files if is_image_path(p)]
    others = [
        SkippedFile(str(p), f"not an image extension ({p.suffix or 'none'})")
        for p in files
        if not is_image_path(p)
    ]
    if not images:
        raise ValueError(
            f"No images found in {str(root)!r} ({len(files)} other files). "
            f"Looked for extensions: {', '.join(IMAGE_EXTENSIONS)}"
        )
    subdirs = sorted(
        {p.relative_to(root).parts[0] for p in images if len(p.relative_to(root).parts) > 1}
    )
    labels = None
    if subdirs:
        index = {d: k for k, d in enumerate(subdirs)}
        labels = [
            index[p.relative_to(root).parts[0]] if len(p.relative_to(root).parts) > 1 else -1
            for p in images
        ]
    ds = from_paths(
        images,
        labels=labels,
        class_names=subdirs or None,
        name=str(root),
        max_side=max_side,
        cache=cache,
        non_images=others,
    )
    if ds.labels is not None and (ds.labels < 0).all():
        ds.labels = None
    return ds

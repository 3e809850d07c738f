"""Augmentation previews: each image next to the views a method would train on."""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from workbench.plots.common import new_figure

MAX_IMAGES = 32  # a preview of more rows is unreadable and slow; subsample first
_GAP = 6  # pixels between cells
_LABEL_H = 14  # pixels above each row for the view labels
_LINE_H = 10  # pixels per caption line
_HEADER_H = 18  # pixels for the title line


def _view_labels(names: Sequence[str]) -> list[str]:
    """Numbered labels ("view 1", "view 2") for repeated names; unique names stay as they are."""
    totals = {n: names.count(n) for n in names}
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(f"{n} {seen[n]}" if totals[n] > 1 else n)
    return out


def _summary(transform: Any) -> str:
    rec = getattr(transform, "recipe", None)
    if rec is None:
        return ""
    groups = ", ".join(
        f"{g.name}{f' x{g.count}' if g.count != 1 else ''} {g.size}px"
        for g in rec.groups
        if g.count
    )
    return f"{rec.method}: {groups}"


def augmentation_grid(
    images: Sequence[Any],
    transform: Any,
    n_views: int | None = None,
    seed: int | None = 0,
    show_params: bool = False,
    *,
    cell_px: int = 128,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Any:
    """A row per image: the original, then its views labelled by view name, un-normalised.

    Views keep their relative resolution (a DINO local crop of 96 px is drawn smaller than a
    224 px global one); the largest view is drawn ``cell_px`` pixels wide at dpi 100.

    Args:
        images: PIL images (or (H, W, 3) arrays, (3, H, W) tensors, or ``(image, label)``
            pairs as an ImageDataset yields); at most 32.
        transform: A MultiView (``make_transform(...)``), a Recipe or method name, or any
            callable mapping an image to a list of (3, H, W) tensors.
        n_views: Show the first ``n_views`` views (None: all).
        seed: Deterministic for a given seed (None: torch's global generator).
        show_params: Caption each view with the parameters actually sampled.
        cell_px: Display width in pixels of the largest view.
        row_labels: Text under each original (e.g. file names).
        title: Title line; default: the recipe's method and view sizes.

    Returns:
        matplotlib Figure (not registered with pyplot). ``figure_to_png`` renders it.

    Raises:
        ValueError: No images, more than 32, or an unusable transform.
    """
    canvas, texts = _prepare(
        images, transform, n_views, seed, show_params, cell_px, row_labels, title
    )
    h, w = canvas.shape[:2]
    fig = new_figure(w / 100, h / 100)
    fig.set_layout_engine("none")  # one full-figure axes: nothing to lay out
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # pixel coordinates; one image: fast to draw
    ax.imshow(canvas, interpolation="none", extent=(0, w, h, 0))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    for x, y, s, size, va in texts:
        ax.text(x, y, s, fontsize=size, va=va, ha="left", linespacing=1.0)
    return fig


def augmentation_png(
    images: Sequence[Any],
    transform: Any,
    n_views: int | None = None,
    seed: int | None = 0,
    show_params: bool = False,
    *,
    cell_px: int = 128,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    compress_level: int = 1,
) -> bytes:
    """The :func:`augmentation_grid` preview as PNG bytes, drawn with PIL (for live widgets).

    Same layout, labels and captions as the Figure, with the text rasterised by PIL instead of
    matplotlib: about 3x faster (see benchmarks/preview_latency.py), which keeps a widget's
    redraw within its latency budget. Arguments as for :func:`augmentation_grid`.

    Returns:
        PNG bytes (dpi-100 pixel layout: the largest view is ``cell_px`` wide).
    """
    import io

    from PIL import ImageDraw

    canvas, texts = _prepare(
        images, transform, n_views, seed, show_params, cell_px, row_labels, title
    )
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    for x, y, s, size, va in texts:
        # points at dpi 100 -> pixels, as matplotlib would draw them
        font = _font(round(size * 100 / 72))
        anchor = "ld" if va == "bottom" else ("lm" if va == "center" else "la")
        if "\n" in s:
            draw.multiline_text((x, y), s, fill=(0, 0, 0), font=font, anchor=anchor, spacing=1)
        else:
            draw.text((x, y), s, fill=(0, 0, 0), font=font, anchor=anchor)
    buf = io.BytesIO()
    im.save(buf, format="png", compress_level=compress_level)
    return buf.getvalue()


@functools.lru_cache(maxsize=8)
def _font(px: int) -> Any:
    from PIL import ImageFont

    # matplotlib's DejaVu Sans, found without importing matplotlib: the PNG then looks like the
    # Figure and has every glyph the captions use (sigma, degree sign).
    spec = importlib.util.find_spec("matplotlib")
    for root in spec.submodule_search_locations or [] if spec else []:
        path = Path(root) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), px)
    try:
        return ImageFont.load_default(size=px)  # scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, AttributeError, OSError):
        return ImageFont.load_default()


def _prepare(
    images: Sequence[Any],
    transform: Any,
    n_views: int | None,
    seed: int | None,
    show_params: bool,
    cell_px: int,
    row_labels: Sequence[str] | None,
    title: str | None,
) -> tuple[np.ndarray, list[tuple[float, float, str, float, str]]]:
    """Sample the views and lay them out: the canvas and the texts to draw on it."""
    from workbench.augment.preview import describe_params, sample_views

    items = [im[0] if isinstance(im, tuple) else im for im in images]
    if not items:
        raise ValueError("augmentation_grid got no images.")
    if len(items) > MAX_IMAGES:
        raise ValueError(
            f"augmentation_grid got {len(items)} images; pass at most {MAX_IMAGES}, e.g. "
            f"[ds.image(i) for i in range(6)]."
        )
    if cell_px < 16:
        raise ValueError(f"Invalid cell_px={cell_px}: need >= 16.")
    if row_labels is not None and len(row_labels) != len(items):
        raise ValueError(f"{len(row_labels)} row_labels for {len(items)} images.")
    rows = sample_views(items, transform, n_views=n_views, seed=seed)
    canvas, texts = _layout(rows, cell_px, show_params, row_labels, describe_params)
    heading = _summary(transform) if title is None else title
    if heading and seed is not None:
        heading += f"  (seed {seed})"
    if heading:
        pad = np.full((_HEADER_H, canvas.shape[1], 3), 255, np.uint8)
        canvas = np.concatenate([pad, canvas], axis=0)
        texts = [(x, y + _HEADER_H, s, size, va) for x, y, s, size, va in texts]
        texts.append((_GAP, _HEADER_H // 2, heading, 8.0, "center"))
    return canvas, texts


def _layout(
    rows: list[Any],
    cell_px: int,
    show_params: bool,
    row_labels: Sequence[str] | None,
    describe: Callable[[dict[str, Any]], list[str]],
) -> tuple[np.ndarray, list[tuple[float, float, str, float, str]]]:
    """Paste every image into one white canvas; return it with the texts to draw on it."""
    max_side = max((v.shape[0] for r in rows for v in r.views), default=cell_px)
    scale = cell_px / max_side
    if scale >= 1:  # enlarge by a whole factor so every source pixel stays a crisp square
        scale = float(math.floor(scale))
    cell_px = round(max_side * scale)
    captions = [[describe(p) for p in r.params] if show_params else [] for r in rows]
    n_lines = max((len(c) for cs in captions for c in cs), default=0)
    if row_labels is not None:
        n_lines = max(n_lines, 1)
    min_col = 84 if show_params else 0  # room for a caption line such as "cj s1.11 h-0.07"

    # Column widths: the original (aspect kept, at most 2 cells wide), then each view column.
    orig_w = max(
        min(2 * cell_px, round(cell_px * r.original.shape[1] / r.original.shape[0])) for r in rows
    )
    n_cols = max(len(r.views) for r in rows)
    col_w = [orig_w] + [
        max([min_col] + [round(r.views[c].shape[1] * scale) for r in rows if c < len(r.views)])
        for c in range(n_cols)
    ]
    xs = np.cumsum([_GAP] + [cw + _GAP for cw in col_w])[:-1]
    row_h = _LABEL_H + cell_px + (n_lines * _LINE_H + 4 if n_lines else 0) + _GAP
    width = int(xs[-1] + col_w[-1] + _GAP)
    canvas = np.full((row_h * len(rows), width, 3), 255, np.uint8)
    texts: list[tuple[float, float, str, float, str]] = []
    # Enlarged views show their real pixels; reduced ones are filtered against aliasing.
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
    for r, row in enumerate(rows):
        top = r * row_h + _LABEL_H
        orig = Image.fromarray(row.original)
        ow = min(orig_w, round(cell_px * orig.width / orig.height))
        oh = min(cell_px, round(ow * orig.height / orig.width))
        # reducing_gap: box-reduce first, then filter; ~5x faster on photos, same look
        thumb = np.asarray(orig.resize((ow, oh), Image.Resampling.BILINEAR, reducing_gap=2.0))
        canvas[top : top + oh, xs[0] : xs[0] + ow] = thumb
        texts.append((xs[0], top - 3, "original", 7.0, "bottom"))
        if row_labels is not None:
            texts.append((xs[0], top + cell_px + 2, str(row_labels[r]), 6.0, "top"))
        for c, (view, label) in enumerate(zip(row.views, _view_labels(row.names))):
            vw = round(view.shape[1] * scale)
            vh = round(view.shape[0] * scale)
            big = Image.fromarray(view).resize((vw, vh), resample)
            x = xs[c + 1]
            canvas[top : top + vh, x : x + vw] = np.asarray(big)
            texts.append((x, top - 3, label, 7.0, "bottom"))
            if show_params and c < len(captions[r]) and captions[r][c]:
                texts.append((x, top + vh + 2, "\n".join(captions[r][c]), 6.0, "top"))
    return canvas, texts

"""Figures for embeddings: 2-D maps, neighbour grids, confusion matrices, invariance bars.

Arrays in, ``matplotlib.figure.Figure`` out: no fitting and no I/O here (the maps are computed by
``workbench.eval.project``, the neighbours by ``workbench.eval.nearest_neighbors``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workbench.plots.common import new_figure

UNLABELLED_COLOR = "#3b6ea8"
MISSING_LABEL_COLOR = "#b0b0b0"
SELECTED_COLOR = "#e4002b"
# Legend entries beyond this many classes would hide the map; a note replaces them.
MAX_LEGEND = 30


def class_colors(num_classes: int) -> list[Any]:
    """Distinct colours for ``num_classes`` classes (tab10, tab20, then a sampled colormap)."""
    from matplotlib import colormaps

    if num_classes <= 10:
        return [colormaps["tab10"](i) for i in range(num_classes)]
    if num_classes <= 20:
        return [colormaps["tab20"](i) for i in range(num_classes)]
    cmap = colormaps["turbo"]
    return [cmap(i / max(1, num_classes - 1)) for i in range(num_classes)]


def _to_array(img: Any) -> np.ndarray:
    """PIL image, (H, W), (H, W, C) or torch (C, H, W) -> displayable (H, W[, C]) array."""
    if hasattr(img, "convert"):  # PIL
        return np.asarray(img.convert("RGB"))
    if hasattr(img, "detach"):  # torch tensor (C, H, W)
        img = img.detach().cpu().numpy()
        if img.ndim == 3 and img.shape[0] in (1, 3):
            img = img.transpose(1, 2, 0)
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype.kind == "f":
        a = np.clip(a, 0.0, 1.0)
    return a


def _check_xy(xy: Any) -> np.ndarray:
    a = np.asarray(xy, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"embedding_map needs points of shape (N, 2), got {a.shape}.")
    return a[:, :2]


def embedding_map(
    xy: np.ndarray,
    labels: Sequence[int] | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    highlight: int | Sequence[int] | np.ndarray | None = None,
    point_size: float = 6,
    title: str | None = None,
    ax: Any = None,
    thumbnails: Mapping[int, Any] | None = None,
    thumbnail_zoom: float = 0.6,
    legend: bool = True,
) -> Any:
    """Scatter of a 2-D projection, coloured by class, with an optional selection.

    Args:
        xy: Points (N, 2) from ``workbench.eval.project``.
        labels: Integer labels (N,); None (or all -1) draws every point in one colour without a
            legend. Points labelled -1 among labelled ones are grey.
        class_names: Legend names, index = label (default: the label numbers).
        highlight: Index of the selected point, or a sequence whose first entry is the selected
            point and the rest its neighbours (drawn ringed).
        point_size: Marker area in points^2.
        title: Axes title.
        ax: Draw into this Axes instead of a new Figure (for side-by-side maps).
        thumbnails: ``{index: image}`` drawn on the map at those points (PIL or arrays).
        thumbnail_zoom: Scale of the thumbnails (1 = one image pixel per screen pixel at 100 dpi).
        legend: Draw the class legend (side-by-side maps draw it once, beside the last).

    Returns:
        The Figure drawn into.

    Raises:
        ValueError: Points not (N, 2), labels of another length, a highlight index out of range.
    """
    pts = _check_xy(xy)
    n = len(pts)
    lab = None if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    if lab is not None and len(lab) != n:
        raise ValueError(f"embedding_map got {n} points but {len(lab)} labels; they must match.")
    if lab is not None and (lab < 0).all():
        lab = None
    hl = [] if highlight is None else [int(i) for i in np.atleast_1d(np.asarray(highlight))]
    for i in hl:
        if not -n <= i < n:
            raise ValueError(f"highlight index {i} is out of range for {n} points.")
    if ax is None:
        fig = new_figure(7.0 if lab is not None else 5.6, 5.2)
        ax = fig.add_subplot(1, 1, 1)
    fig = ax.figure
    if lab is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=point_size, c=UNLABELLED_COLOR, alpha=0.7, lw=0)
    else:
        num = max(len(class_names or []), int(lab.max()) + 1)
        names = list(class_names or []) + [str(i) for i in range(len(class_names or []), num)]
        colors = class_colors(num)
        missing = lab < 0
        if missing.any():
            ax.scatter(*pts[missing].T, s=point_size, c=MISSING_LABEL_COLOR, lw=0, label="?")
        for c in np.unique(lab[~missing]):
            sel = lab == c
            ax.scatter(*pts[sel].T, s=point_size, color=colors[c], alpha=0.8, lw=0, label=names[c])
        if legend and num <= MAX_LEGEND:
            ax.legend(
                loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=
                max(1.0, 4.0 / max(point_size, 1e-3) ** 0.5), fontsize="small",
            )  # fmt: skip
        elif legend:
            ax.text(0.01, 0.01, f"{num} classes (legend hidden)", transform=ax.transAxes,
                    fontsize="small", color="0.4")  # fmt: skip
    if thumbnails:
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage

        for i, img in thumbnails.items():
            box = OffsetImage(_to_array(img), zoom=thumbnail_zoom, cmap="gray")
            ab = AnnotationBbox(box, (pts[i, 0], pts[i, 1]), frameon=True, pad=0.1,
                                bboxprops={"lw": 0.5, "ec": "0.5"})  # fmt: skip
            ax.add_artist(ab)
    if hl:
        if len(hl) > 1:
            nb = pts[hl[1:]]
            ax.scatter(nb[:, 0], nb[:, 1], s=max(40, 6 * point_size), facecolors="none",
                       edgecolors="black", lw=1.2, label="_neighbours", zorder=4)  # fmt: skip
        ax.scatter([pts[hl[0], 0]], [pts[hl[0], 1]], s=max(160, 20 * point_size), marker="*",
                   c=SELECTED_COLOR, edgecolors="black", lw=0.8, zorder=5)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


def compared_maps(
    xys: Sequence[np.ndarray],
    titles: Sequence[str],
    labels: Sequence[int] | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    highlight: int | Sequence[int] | np.ndarray | None = None,
    suptitle: str | None = None,
) -> Any:
    """Maps of the same images side by side (trained vs random init, two runs), one legend.

    Args:
        xys: One (N, 2) projection per map, the same N images in the same order.
        titles: One title per map.
        labels: Integer labels (N,), shared by every map (as for :func:`embedding_map`).
        class_names: Legend names, index = label.
        highlight: A selected point (and its neighbours), ringed on every map.
        suptitle: A line above the maps.

    Returns:
        The Figure.
    """
    if len(xys) != len(titles) or not xys:
        raise ValueError(f"compared_maps needs one title per map, got {len(xys)} maps and "
                         f"{len(titles)} titles.")  # fmt: skip
    fig = new_figure(5.6 * len(xys) + 1.4, 5.6 if suptitle else 5.2)
    axes = np.atleast_1d(fig.subplots(1, len(xys)))
    for i, (ax, xy, title) in enumerate(zip(axes, xys, titles)):
        embedding_map(xy, labels, class_names, highlight=highlight, ax=ax, title=title,
                      legend=i == len(xys) - 1)  # fmt: skip
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def neighbor_grid(
    images: Sequence[Any],
    distances: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    query_image: Any = None,
    query_label: int | None = None,
    ncols: int = 8,
) -> Any:
    """A grid of neighbour images titled with their cosine distance and class.

    Args:
        images: The k neighbours (PIL images or arrays), nearest first.
        distances: Their distances (k,).
        labels: Their labels (k,), or None.
        class_names: Names of the labels.
        query_image: Drawn first with a red frame, titled "query".
        query_label: The query's label, shown in its title.
        ncols: Images per row (the query comes on top of these).

    Returns:
        A Figure.

    Raises:
        ValueError: ``distances`` or ``labels`` of another length than ``images``.
    """
    k = len(images)
    dist = np.asarray(distances, dtype=np.float64).reshape(-1)
    if len(dist) != k:
        raise ValueError(f"neighbor_grid got {k} images but {len(dist)} distances.")
    lab = None if labels is None else np.asarray(labels).reshape(-1)
    if lab is not None and len(lab) != k:
        raise ValueError(f"neighbor_grid got {k} images but {len(lab)} labels.")
    names = list(class_names or [])

    def name(y: Any) -> str:
        y = int(y)
        if y < 0:
            return ""
        return names[y] if y < len(names) else str(y)

    panels: list[tuple[Any, str, bool]] = []
    if query_image is not None:
        q = "query" + (f"\n{name(query_label)}" if query_label is not None else "")
        panels.append((query_image, q, True))
    for j in range(k):
        t = f"d={dist[j]:.3g}" + (f"\n{name(lab[j])}" if lab is not None else "")
        panels.append((images[j], t, False))
    cols = max(1, min(ncols + (query_image is not None), len(panels)))
    rows = max(1, -(-len(panels) // cols))
    fig = new_figure(1.35 * cols, 1.55 * rows + 0.1)
    if not panels:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no neighbours", ha="center", va="center")
        ax.set_axis_off()
        return fig
    for p, (img, text, is_query) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, p + 1)
        ax.imshow(_to_array(img), cmap="gray", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(text, fontsize=8, color=SELECTED_COLOR if is_query else "black")
        for spine in ax.spines.values():
            spine.set_color(SELECTED_COLOR if is_query else "0.7")
            spine.set_linewidth(2.5 if is_query else 0.5)
    return fig


def confusion_matrix_plot(
    cm: np.ndarray, class_names: Sequence[str] | None = None, title: str | None = None
) -> Any:
    """A confusion matrix, coloured by row-normalised rate and annotated with counts.

    Args:
        cm: Counts (C, C); rows = true class, columns = predicted.
        class_names: Axis tick labels (default: 0..C-1).
        title: Axes title.

    Returns:
        A Figure.
    """
    m = np.asarray(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"confusion_matrix_plot needs a square (C, C) matrix, got {m.shape}.")
    c = m.shape[0]
    names = list(class_names or [])[:c] + [str(i) for i in range(len(class_names or []), c)]
    rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    side = min(9.0, 2.0 + 0.42 * c)
    fig = new_figure(side + 0.8, side)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    if c <= 20:
        for i in range(c):
            for j in range(c):
                if m[i, j]:
                    color = "white" if rates[i, j] > 0.6 else "black"
                    ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=7,
                            color=color)  # fmt: skip
    ticks = np.arange(c) if c <= 40 else np.arange(0, c, max(1, c // 20))
    ax.set_xticks(ticks, [names[t] for t in ticks], rotation=90 if c > 6 else 0, fontsize=8)
    ax.set_yticks(ticks, [names[t] for t in ticks], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix")
    return fig


def invariance_bars(results: Mapping[str, Mapping[str, float]], title: str | None = None) -> Any:
    """Grouped bars of the invariance probe: one group per augmentation family, one bar per run.

    Args:
        results: ``{run name: {family: mean cosine similarity}}`` from
            ``workbench.eval.invariance_probe``; families missing for a run are left blank.
        title: Axes title.

    Returns:
        A Figure; 1.0 means the embedding ignores that augmentation entirely.

    Raises:
        ValueError: No results.
    """
    if not results or not any(results.values()):
        raise ValueError("invariance_bars got no results; run workbench.eval.invariance_probe.")
    families: list[str] = []
    for fams in results.values():
        families += [f for f in fams if f not in families]
    runs = list(results)
    width = 0.8 / len(runs)
    fig = new_figure(max(5.0, 0.9 * len(families) + 2.0) + (1.6 if len(results) > 1 else 0), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    colors = class_colors(len(runs))
    x = np.arange(len(families))
    lo = 0.0
    for r, run in enumerate(runs):
        vals = np.array([results[run].get(f, np.nan) for f in families], dtype=np.float64)
        lo = min(lo, float(np.nanmin(vals)) if np.isfinite(vals).any() else 0.0)
        ax.bar(x - 0.4 + width * (r + 0.5), vals, width, label=run, color=colors[r])
    for j, f in enumerate(families):  # NaN: the family leaves these images unchanged
        if all(np.isnan(results[run].get(f, np.nan)) for run in runs):
            ax.text(j, 0.5, "not measured:\nno change\non these images", ha="center",
                    va="center", fontsize=7, color="0.4")  # fmt: skip
    ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
    ax.set_xticks(x, families, rotation=20)
    ax.set_ylim(lo - 0.05 if lo < 0 else 0.0, 1.05)
    ax.set_ylabel("cosine sim. (1 = invariant)")
    if len(runs) > 1:  # outside the axes, right of the bars: it never covers them
        ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or "What the embedding ignores: similarity to the augmented image")
    return fig

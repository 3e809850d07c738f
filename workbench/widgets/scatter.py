"""The interactive embedding map: jupyter-scatter (WebGL, anywidget) views over plain data.

The map is drawn in the browser by `jupyter-scatter <https://jupyter-scatter.dev>`_, whose
front end ships in its wheel (no CDN). Its widget has a synced ``selection`` trait (point
indices; a click or a lasso sets it in the browser, Python can set it too) and a ``hovering``
trait. This module keeps the parts that need no browser in plain functions:

- :func:`map_frame` builds the table the map shows (coordinates, label, kNN prediction,
  outcome) and :func:`color_spec` says how a colouring mode maps onto it;
- :func:`make_map` and :func:`link_maps` build and link the widgets (selection and hover
  shared, so a lasso in one map shows the same images in the other);
- :func:`serve_previews` makes the hover thumbnail of a point when the browser asks for it
  (nothing is rendered for points nobody hovers);
- :func:`image_grid_html` and :func:`label_makeup_html` are the neighbour / selection grids as
  HTML (thumbnails as data URLs), quick enough to follow every click.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Colouring modes of the map: label, the kNN prediction, or whether that prediction is right.
COLOR_MODES = ("label", "kNN prediction", "kNN correct/wrong")
PENDING = "(computing)"
OUTCOME_COLORS = {"wrong": "#e4002b", "correct": "#c9c9c9", PENDING: "#dddddd"}
UNLABELLED = "unlabelled"
MAP_HEIGHT = 380  # px: tall enough to lasso in, short enough to see the grid below
PREVIEW_SIZE = 96  # px: the hover thumbnail's longer side


def _hex(rgba: Sequence[float]) -> str:
    return "#" + "".join(f"{round(255 * float(c)):02x}" for c in rgba[:3])


def _names(labels: np.ndarray, class_names: Sequence[str]) -> list[str]:
    num = max(len(class_names), int(labels.max()) + 1 if len(labels) else 0)
    return list(class_names) + [str(i) for i in range(len(class_names), num)]


def label_names(labels: np.ndarray | None, class_names: Sequence[str]) -> list[str]:
    """The class name of every point ("?" for label -1, ``UNLABELLED`` without labels)."""
    if labels is None:
        return []
    names = _names(labels, class_names)
    return [names[int(y)] if y >= 0 else "?" for y in labels]


def map_frame(
    xy: np.ndarray,
    labels: np.ndarray | None,
    class_names: Sequence[str],
    predictions: np.ndarray | None = None,
) -> Any:
    """The table one map shows: one row per image, row number = image index.

    Args:
        xy: The 2-D projection (N, 2).
        labels: Integer labels (N,) or None.
        class_names: Names of the labels.
        predictions: Leave-one-out kNN predictions (N,); None while they are computed.

    Returns:
        A pandas DataFrame with columns ``x``, ``y``, ``index``, ``label``, ``prediction``,
        ``outcome`` (categorical: ``"correct"``/``"wrong"``, or ``PENDING``) and ``preview``
        (filled on demand by :func:`serve_previews`).

    Raises:
        ValueError: ``xy`` not (N, 2), or labels/predictions of another length.
    """
    import pandas as pd

    pts = np.asarray(xy, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"The map needs points of shape (N, 2), got {pts.shape}.")
    n = len(pts)
    for name, a in (("labels", labels), ("predictions", predictions)):
        if a is not None and len(a) != n:
            raise ValueError(f"The map got {n} points but {len(a)} {name}; they must match.")
    if labels is None or (np.asarray(labels) < 0).all():
        label = [UNLABELLED] * n
        categories = [UNLABELLED]
    else:
        lab = np.asarray(labels, dtype=np.int64)
        label = label_names(lab, class_names)
        categories = _names(lab, class_names) + (["?"] if (lab < 0).any() else [])
    if predictions is None or labels is None:
        pred, outcome = [PENDING] * n, [PENDING] * n
        pred_categories = [PENDING]
    else:
        p = np.asarray(predictions, dtype=np.int64)
        pred = label_names(p, class_names)
        pred_categories = categories
        outcome = ["correct" if a == b else "wrong" for a, b in zip(p, labels)]
    return pd.DataFrame(
        {
            "x": pts[:, 0],
            "y": pts[:, 1],
            "index": np.arange(n),
            "label": pd.Categorical(label, categories=categories),
            "prediction": pd.Categorical(pred, categories=sorted(set(pred_categories))
                                         if PENDING in pred_categories else pred_categories),
            "outcome": pd.Categorical(outcome, categories=["correct", "wrong", PENDING]),
            "preview": [""] * n,
        }
    )  # fmt: skip


def color_spec(mode: str, frame: Any) -> tuple[str, dict[str, str]]:
    """The column and the colour of each category for a colouring mode.

    Args:
        mode: One of ``COLOR_MODES``.
        frame: A :func:`map_frame` table.

    Returns:
        ``(column, {category: "#rrggbb"})``: label colours match the PNG figures
        (``workbench.plots.embeddings.class_colors``); wrong kNN predictions are red, correct
        ones light grey, so that errors stand out.

    Raises:
        ValueError: An unknown mode.
    """
    from workbench.plots.embeddings import MISSING_LABEL_COLOR, UNLABELLED_COLOR, class_colors

    if mode not in COLOR_MODES:
        raise ValueError(f"Unknown colouring {mode!r}. Valid: {list(COLOR_MODES)}")
    if mode == COLOR_MODES[2]:
        return "outcome", dict(OUTCOME_COLORS)
    column = "label" if mode == COLOR_MODES[0] else "prediction"
    cats = [str(c) for c in frame[column].cat.categories]
    classes = [c for c in cats if c not in ("?", PENDING, UNLABELLED)]
    colors = {c: _hex(rgba) for c, rgba in zip(classes, class_colors(len(classes)))}
    colors.update({"?": MISSING_LABEL_COLOR, PENDING: "#dddddd", UNLABELLED: UNLABELLED_COLOR})
    return column, {c: colors[c] for c in cats}


def make_map(frame: Any, color: str = COLOR_MODES[0], point_size: float = 4.0) -> Any:
    """A jupyter-scatter map of a :func:`map_frame` table.

    Args:
        frame: The table.
        color: A colouring mode (``COLOR_MODES``).
        point_size: Point size in pixels.

    Returns:
        A ``jscatter.Scatter``; its ``.widget`` has the ``selection`` and ``hovering`` traits.
    """
    import jscatter

    sc = jscatter.Scatter(x="x", y="y", data=frame, height=MAP_HEIGHT, size=point_size,
                          axes=False, legend=True, legend_position="top-right")  # fmt: skip
    _color(sc, color, frame)
    sc.tooltip(enable=True, properties=["label", "prediction", "index"], preview="preview",
               preview_type="image", preview_image_height=PREVIEW_SIZE)  # fmt: skip
    return sc


def _color(sc: Any, mode: str, frame: Any) -> None:
    column, cmap = color_spec(mode, frame)
    # A list in the column's category order (the points hold the category codes), not a dict: a
    # dict makes jupyter-scatter 1.0.1 keep an order of codes that its data() then looks up as
    # category names (KeyError).
    # The legend's title is the colouring's name (jupyter-scatter's default title is "Color").
    sc.color(by=column, map=list(cmap.values()), labeling={"variable": mode})


def recolor_map(sc: Any, mode: str, frame: Any = None) -> None:
    """Colour a map by another mode, and give it a new table (e.g. the kNN predictions) if any.

    The widget stays: its view in the browser keeps its zoom, pan and selection, and only the
    points' values travel (one message).

    Args:
        sc: A :func:`make_map` map.
        mode: A colouring mode (``COLOR_MODES``).
        frame: A new :func:`map_frame` table of the same points, or None to keep the current one.
    """
    with sc.widget.hold_sync():
        if frame is not None:
            sc.data(frame)
        _color(sc, mode, sc.widget.data if frame is None else frame)


def link_maps(maps: Sequence[tuple[Any, str]]) -> Any:
    """Side-by-side maps with shared selection and hover (a GridBox widget)."""
    import jscatter

    grid = jscatter.compose(list(maps), sync_selection=True, sync_hover=True,
                            row_height=MAP_HEIGHT)  # fmt: skip
    grid.layout.width = "100%"  # else the grid shrinks to its toolbars inside a flex box
    return grid


def thumbnail_data_url(img: Any, size: int = PREVIEW_SIZE) -> str:
    """A PNG data URL of an image scaled so its longer side is ``size`` px (small ones grow)."""
    from PIL import Image

    from workbench.plots.embeddings import _to_array

    a = _to_array(img)
    if a.dtype.kind == "f":
        a = (np.clip(a, 0, 1) * 255).astype(np.uint8)
    im = Image.fromarray(np.asarray(a, dtype=np.uint8)).convert("RGB")
    scale = size / max(im.size)
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), resample)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def serve_previews(sc: Any, preview: Callable[[int], str]) -> None:
    """Answer the browser's tooltip requests of a map with ``preview(index)``, made on demand.

    jupyter-scatter asks the kernel for a hovered point's ``preview`` column; instead of a
    column of N images made up front (seconds for 20,000 points), the answer is rendered when a
    point is hovered (and cached by ``preview``).
    """
    w = sc.widget
    default = w._handle_tooltip  # the library's handler: the row's columns from the frame

    def handle(event: dict[str, Any]) -> None:
        frame = w.data  # what the library's handler reads the row from
        if frame is not None and "preview" in frame.columns:
            i = int(event["index"])
            frame.iat[i, frame.columns.get_loc("preview")] = preview(i)
        default(event)

    w._handle_tooltip = handle


@dataclass
class GridItem:
    """One image of an HTML grid."""

    index: int
    image: Any
    caption: str  # one or two lines under the image
    highlight: bool = False  # the query image: framed in red


def image_grid_html(items: Sequence[GridItem], title: str = "", size: int = 72,
                    css_class: str = "wb-grid") -> str:  # fmt: skip
    """A wrapping grid of thumbnails with captions; each tile carries ``data-index``.

    Args:
        items: The images, in order.
        title: A line above the grid.
        size: Thumbnail side in px.
        css_class: Class of the grid element (the browser test finds grids by it).

    Returns:
        HTML for an ``ipywidgets.HTML``.
    """
    tiles = []
    for it in items:
        border = "3px solid #e4002b" if it.highlight else "1px solid #bbb"
        cap = "<br>".join(html.escape(line) for line in it.caption.split("\n"))
        tiles.append(
            f"<div class='wb-tile' data-index='{int(it.index)}' style='width:{size + 8}px;"
            f"text-align:center;font-size:11px;line-height:1.25'>"
            f"<img src='{thumbnail_data_url(it.image, size)}' width='{size}' height='{size}' "
            f"style='object-fit:contain;border:{border};image-rendering:pixelated;"
            f"background:#fff'><div>{cap}</div></div>"
        )
    head = f"<div style='font-weight:bold;margin:4px 0'>{html.escape(title)}</div>" if title else ""
    return (
        f"{head}<div class='{css_class}' style='display:flex;flex-wrap:wrap;gap:6px'>"
        f"{''.join(tiles)}</div>"
    )


def label_makeup(labels: np.ndarray, class_names: Sequence[str]) -> list[tuple[str, int]]:
    """Counts of each class among the selected images, most frequent first."""
    if len(labels) == 0:
        return []
    names = label_names(np.asarray(labels, dtype=np.int64), class_names)
    uniq, counts = np.unique(np.asarray(names, dtype=object), return_counts=True)
    order = np.lexsort((uniq.astype(str), -counts))
    return [(str(uniq[j]), int(counts[j])) for j in order]


def label_makeup_html(labels: np.ndarray, class_names: Sequence[str]) -> str:
    """The label make-up of a selection as a small table of bars (count and share)."""
    rows = label_makeup(labels, class_names)
    total = max(1, sum(c for _, c in rows))
    body = "".join(
        f"<tr><td style='padding:0 8px 0 0'>{html.escape(name)}</td>"
        f"<td style='text-align:right;padding:0 6px;font-variant-numeric:tabular-nums'>{c}</td>"
        f"<td><div style='background:#3b6ea8;height:10px;width:{round(160 * c / total)}px'>"
        f"</div></td><td style='padding:0 6px;color:#555'>{100 * c / total:.0f}%</td></tr>"
        for name, c in rows
    )
    return (
        "<table class='wb-makeup' style='border-collapse:collapse;font-size:12px'>"
        "<tr><th style='text-align:left;padding:0 8px 0 0'>label</th>"
        "<th style='text-align:right;padding:0 6px'>images</th>"
        f"<th></th><th></th></tr>{body}</table>"
    )
